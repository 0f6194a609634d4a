"""The report's plots, drawn from the stages' outputs (results/plots/*.png).

    plot_curves      loss and the student-teacher gaps against steps
    plot_stability   each block's gradient norm against steps
    plot_accuracy    student kNN by momentum variant, mean and 95% interval over seeds
    plot_claims      the claims as a forest plot
    plot_knn         the kNN monitor's student and teacher scores against steps
    plot_health      the health statistics against steps (health.py)
    plot_sweeps      each sweep's student kNN against the swept value, 95% interval over seeds
    plot_epochs      the kept checkpoints' student kNN against epochs, 95% interval over seeds

Each writes one PNG atomically, without the matplotlib version in its metadata, so the same
results draw the same bytes.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Params
from ..plumbing.artifacts import commit, partial_path
from ..plumbing.paths import cell, run_dir
from .claims import Verdict
from .stats import summarize
from .summaries import (claim_interval, in_points, live_summary, read_history, summaries,
                        variant)


def _save(fig, path: Path) -> None:
    tmp = partial_path(path)
    try:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def plot_curves(params: Params, root: Path, path: Path) -> None:
    """Loss and gaps over steps: one colour per run, one line per seed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for i, run in enumerate(params.grid):
        for j, seed in enumerate(params.seeds):
            live = run_dir(cell(run.name, seed), root) / "dvclive"
            for ax, metric in zip(axes, ("train/loss", "train/gap_backbone",
                                         "train/gap_projector")):
                steps, values = read_history(live, metric)
                if steps:
                    ax.plot(steps, values, color=f"C{i % 10}", linewidth=0.9,
                            label=run.name if j == 0 else None)
    for ax, title in zip(axes, ("loss", "student-teacher gap, backbone (1 - cos)",
                                "student-teacher gap, projector (1 - cos)")):
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_stability(params: Params, root: Path, path: Path, blocks: list[str]) -> None:
    import matplotlib.pyplot as plt

    cols = 3
    rows = (len(blocks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.5 * rows), squeeze=False)
    for ax, block in zip(axes.flat, blocks):
        for i, run in enumerate(params.grid):
            steps, values = read_history(run_dir(cell(run.name, params.seeds[0]), root)
                                         / "dvclive", f"grad_norm/{block}")
            if steps:
                ax.plot(steps, values, label=run.name, linewidth=0.8, color=f"C{i % 10}")
        ax.set_title(f"||dL/d {block} output|| (seed {params.seeds[0]})")
        ax.set_xlabel("step")
        ax.set_yscale("log")
    for ax in list(axes.flat)[len(blocks):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_accuracy(collected: dict, path: Path) -> None:
    """Student kNN by momentum variant per method: the mean over seeds, with its 95% interval
    as an error bar; the baselines as lines."""
    import matplotlib.pyplot as plt

    runs = {n: e for n, e in collected.items() if e["run"] is not None}
    means = {n: summaries(e)["knn_student"] for n, e in collected.items()}
    methods = list(dict.fromkeys(e["run"].method for e in runs.values()))
    variants = list(dict.fromkeys(variant(e["run"]) for e in runs.values()))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(variants)), 4))
    for i, method in enumerate(methods):
        xs, ys, errs = [], [], []
        for j, v in enumerate(variants):
            match = [n for n, e in runs.items() if e["run"].method == method
                     and variant(e["run"]) == v]
            if match:
                s = means[match[0]]
                xs.append(j + (i - (len(methods) - 1) / 2) * width)
                ys.append(100 * s.mean)
                errs.append(100 * (s.half_width or 0.0))
        ax.bar(xs, ys, width, yerr=errs, capsize=3, label=method)
    for name, style in zip([n for n, e in collected.items() if e["run"] is None], ("--", ":")):
        ax.axhline(100 * means[name].mean, color="grey", linestyle=style,
                   label=collected[name]["label"])
    values = [100 * s.mean for s in means.values()]
    ax.set_ylim(max(0, min(values) - 5), min(100, max(values) + 3))
    ax.set_xticks(range(len(variants)), variants)
    ax.set_xlabel("momentum variant")
    ax.set_ylabel("kNN top-1 (%), student: mean and 95% CI over seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_knn(params: Params, root: Path, path: Path) -> None:
    """The kNN monitor's scores against steps, one colour per run and one line per seed:
    student solid, teacher dashed; and student minus teacher."""
    import matplotlib.pyplot as plt

    fig, (ax, gap_ax) = plt.subplots(1, 2, figsize=(12, 4))
    for i, run in enumerate(params.grid):
        colour = f"C{i % 10}"
        for j, seed in enumerate(params.seeds):
            live = run_dir(cell(run.name, seed), root) / "dvclive"
            steps, student = read_history(live, "monitor/knn_student")
            t_steps, teacher = read_history(live, "monitor/knn_teacher")
            if steps:
                ax.plot(steps, [100 * v for v in student], color=colour, marker=".",
                        linewidth=0.9, label=run.name if j == 0 else None)
            if t_steps:
                ax.plot(t_steps, [100 * v for v in teacher], color=colour, linestyle="--",
                        marker=".", linewidth=0.9,
                        label=f"{run.name} (teacher)" if j == 0 else None)
                gap_ax.plot(t_steps, [100 * (s - t) for s, t in zip(student, teacher)],
                            color=colour, marker=".", linewidth=0.9,
                            label=run.name if j == 0 else None)
    ax.set_title("kNN monitor, top-1 (%): student solid, teacher dashed")
    gap_ax.set_title("kNN monitor, student - teacher (points)")
    gap_ax.axhline(0, color="grey", linewidth=0.5)
    for a in (ax, gap_ax):
        a.set_xlabel("step")
        if a.get_legend_handles_labels()[0]:
            a.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_health(params: Params, root: Path, path: Path) -> None:
    """z_std (with each run's collapse threshold, dotted) and the effective ranks, one colour
    per run and one line per seed."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    titles = {"z_std": "std of the L2-normalised projector output (dotted: collapse)",
              "erank_y": "effective rank, backbone (y)", "erank_z": "effective rank, projector (z)"}
    for i, run in enumerate(params.grid):
        for j, seed in enumerate(params.seeds):
            live = run_dir(cell(run.name, seed), root) / "dvclive"
            for ax, name in zip(axes, titles):
                steps, values = read_history(live, f"health/{name}")
                if steps:
                    ax.plot(steps, values, color=f"C{i % 10}", linewidth=0.8,
                            label=run.name if j == 0 else None)
            threshold = live_summary(live, run.name, seed).get("health", {}).get(
                "collapse_threshold")
            if threshold is not None and j == 0:
                axes[0].axhline(threshold, color=f"C{i % 10}", linestyle=":", linewidth=0.8)
    for ax, title in zip(axes, titles.values()):
        ax.set_title(title)
        ax.set_xlabel("step")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_claims(verdicts: list[Verdict], path: Path) -> None:
    """The claims as a forest plot, one row per tested claim row on its own scale: the mean
    paired difference (a - b) with the interval its verdict is read on (95%), the zero line
    and the margins, coloured by verdict."""
    import matplotlib.pyplot as plt

    tested = [v for v in verdicts if v.effect is not None and claim_interval(v) is not None]
    fig, axes = plt.subplots(max(1, len(tested)), 1, figsize=(9, 0.5 + 1.1 * max(1, len(tested))),
                             squeeze=False)
    colours = {"supported": "C2", "contradicted": "C3", "inconclusive": "C7"}
    for ax, v in zip(axes[:, 0], tested):
        s, scale = v.effect.summary, 100.0 if in_points(v) else 1.0
        low, high, level = claim_interval(v)
        ax.errorbar([scale * s.mean], [0], xerr=[[scale * (s.mean - low)], [scale * (high - s.mean)]],
                    fmt="o", color=colours.get(v.status, "C7"), capsize=4)
        ax.axvline(0, color="black", linewidth=0.8)
        if v.claim.margin is not None:
            margins = ((-v.claim.margin,) if v.claim.kind == "noninferior"
                       else (-v.claim.margin, v.claim.margin))
            for m in margins:
                ax.axvline(scale * m, color="C1", linestyle="--", linewidth=1)
        unit = "points" if in_points(v) else v.claim.metric
        ax.set_title(f"{v.claim.name}: {v.label}, {v.claim.metric} ({unit}, {100 * level:g}% "
                     f"CI): {v.status}", fontsize=8, loc="left")
        ax.set_yticks([])
    if not tested:
        axes[0, 0].text(0.5, 0.5, "no claim tested: the grid lacks their runs",
                        ha="center", va="center")
        axes[0, 0].axis("off")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_sweeps(params: Params, collected: dict, path: Path) -> None:
    """One panel per ``sweep`` of the grid: the student's kNN against the swept value, the mean
    over seeds with its 95% interval as an error bar, the random-init backbone as a line."""
    import matplotlib.pyplot as plt

    from ..config import sweeps

    groups = sweeps(params)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.6), squeeze=False)
    random = summaries(collected["random"])["knn_student"] if "random" in collected else None
    for ax, (entry, (key, points)) in zip(axes[0], groups.items()):
        numeric = all(isinstance(v, (int, float)) for v, _ in points)
        xs = [v if numeric else i for i, (v, _) in enumerate(points)]
        stats = [summaries(collected[name])["knn_student"] for _, name in points]
        ax.errorbar(xs, [100 * s.mean for s in stats],
                    yerr=[100 * (s.half_width or 0.0) for s in stats], marker="o", capsize=3,
                    label=entry)
        if random is not None:
            ax.axhline(100 * random.mean, color="grey", linestyle=":",
                       label=collected["random"]["label"])
        if not numeric:
            ax.set_xticks(xs, [str(v) for v, _ in points])
        ax.set_xlabel(key)
        ax.set_ylabel("kNN top-1 (%), student")
        ax.set_title(f"{entry}: sweep of {key}", fontsize=9)
        ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_epochs(kept: dict[str, dict[int, dict[int, float]]], path: Path) -> None:
    """The kept checkpoints' student kNN against epochs (``pretrain.keep_every``), a line per
    run: the mean over seeds, its 95% Student-t interval shaded (none with one seed)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (run, per_epoch) in enumerate(kept.items()):
        epochs = sorted(per_epoch)
        stats = [summarize(list(per_epoch[e].values())) for e in epochs]
        ax.plot(epochs, [100 * s.mean for s in stats], color=f"C{i % 10}", marker=".",
                linewidth=1.2, label=run)
        if all(s.low is not None for s in stats):
            ax.fill_between(epochs, [100 * s.low for s in stats], [100 * s.high for s in stats],
                            color=f"C{i % 10}", alpha=0.2, linewidth=0)
    ax.set_xlabel("epoch")
    ax.set_ylabel("kNN top-1 (%), student: mean and 95% CI over seeds")
    ax.set_title("kept checkpoints")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
