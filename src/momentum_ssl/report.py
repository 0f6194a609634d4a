"""The comparison report: the ``report`` stage.

    report(params)   # results/report.md and results/plots/{curves,stability,accuracy}.png

One table of every grid run and both baselines (kNN of the student and of the teacher, their gap,
logistic regression, transfer, pretraining time), a table of gradient stability per block, and
three plots: loss and student-teacher gap curves per run, each block's gradient norm per run,
and kNN accuracy by momentum variant for each method. Everything is read from the stages'
outputs (probe and transfer JSON, each run's DVCLive folder); nothing is recomputed.
"""

from __future__ import annotations

import csv
from pathlib import Path

from .artifacts import atomic_write_text, commit, corrupt, partial_path, read_json
from .config import Params, RunSpec
from .paths import BASELINES, RESULTS, probe_file, run_dir, transfer_file
from .telemetry import block_names
from .transfer import transfer_summary

BASELINE_LABELS = {"raw": "baseline: raw pixels", "random": "baseline: random-init backbone"}


def variant(run: RunSpec) -> str:
    if run.scope == "last_k":
        return f"last{run.k}" + ("+res" if run.residual else "")
    return run.scope + ("+res" if run.residual else "")


def read_history(live_dir: Path, metric: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one DVCLive metric, e.g. ``train/loss``."""
    path = live_dir / "plots" / "metrics" / f"{metric}.tsv"
    if not path.is_file():
        return [], []
    name = metric.rsplit("/", 1)[-1]
    try:
        with path.open() as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        return [int(r["step"]) for r in rows], [float(r[name]) for r in rows]
    except (KeyError, TypeError, ValueError) as err:  # a cut row reads as None or ''
        raise corrupt(path, f"is not a complete DVCLive table ({err!r})",
                      f"python -m momentum_ssl pretrain --run {live_dir.parent.name}") from None


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def collect(params: Params, root: Path = RESULTS) -> list[dict]:
    """One row per grid run, then the baselines: the numbers of the report's table."""
    rows = []
    names = [(run.name, run) for run in params.grid] + [(b, None) for b in BASELINES]
    for name, run in names:
        probes = read_json(probe_file(name, root), f"python -m momentum_ssl probe --run {name}",
                           ("knn_headline",))
        key = probes["knn_headline"]
        main = "student" if "student" in probes else "raw"
        row = {"name": name, "label": BASELINE_LABELS.get(name, name),
               "method": run.method if run else None, "variant": variant(run) if run else None,
               "knn_student": probes[main]["knn"][key],
               "knn_teacher": probes["teacher"]["knn"][key] if "teacher" in probes else None,
               "logistic": probes[main]["logistic"]["top1"],
               # False only where the probe says its final fit stopped short of its tolerance
               "logistic_converged": probes[main]["logistic"].get("converged", True) is not False}
        row["gap"] = (row["knn_student"] - row["knn_teacher"]
                      if row["knn_teacher"] is not None else None)
        row["transfer"] = transfer_summary(transfer_file(name, root))
        row["pretrain_s"], row["stability"] = None, {}
        if run is not None:
            summary = read_json(run_dir(name, root) / "dvclive" / "metrics.json",
                                f"python -m momentum_ssl pretrain --run {name}")
            row["pretrain_s"] = summary.get("time", {}).get("pretrain_s")
            row["stability"] = summary.get("stability", {})
        rows.append(row)
    return rows


def _save(fig, path: Path) -> None:
    tmp = partial_path(path)
    try:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None})
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def plot_curves(params: Params, root: Path, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for i, run in enumerate(params.grid):  # one colour per run in every panel
        live = run_dir(run.name, root) / "dvclive"
        for ax, metric in zip(axes, ("train/loss", "train/gap_backbone", "train/gap_projector")):
            steps, values = read_history(live, metric)
            if steps:
                ax.plot(steps, values, label=run.name, color=f"C{i % 10}")
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
            steps, values = read_history(run_dir(run.name, root) / "dvclive",
                                         f"grad_norm/{block}")
            if steps:
                ax.plot(steps, values, label=run.name, linewidth=0.8, color=f"C{i % 10}")
        ax.set_title(f"||dL/d {block} output||")
        ax.set_xlabel("step")
        ax.set_yscale("log")
    for ax in list(axes.flat)[len(blocks):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_accuracy(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    runs = [r for r in rows if r["method"] is not None]
    methods = list(dict.fromkeys(r["method"] for r in runs))
    variants = list(dict.fromkeys(r["variant"] for r in runs))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(variants)), 4))
    for i, method in enumerate(methods):
        xs, ys = [], []
        for j, v in enumerate(variants):
            match = [r for r in runs if r["method"] == method and r["variant"] == v]
            if match:
                xs.append(j + (i - (len(methods) - 1) / 2) * width)
                ys.append(100 * match[0]["knn_student"])
        ax.bar(xs, ys, width, label=method)
    for r, style in zip([r for r in rows if r["method"] is None], ("--", ":")):
        ax.axhline(100 * r["knn_student"], color="grey", linestyle=style, label=r["label"])
    low = min(100 * r["knn_student"] for r in rows)
    ax.set_ylim(max(0, low - 5), min(100, max(100 * r["knn_student"] for r in rows) + 3))
    ax.set_xticks(range(len(variants)), variants)
    ax.set_xlabel("momentum variant")
    ax.set_ylabel("kNN top-1 (%), student")
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def render(params: Params, rows: list[dict], blocks: list[str]) -> str:
    key = f"k{params.probe.knn_k[0]} weighted (T={params.probe.temperature})"
    targets = list(rows[0]["transfer"])
    head = (["run", "kNN student", "kNN teacher", "gap", "logistic"]
            + [f"transfer {t} (kNN)" for t in targets] + ["pretraining (s)"])
    lines = [
        "# momentum-ssl report", "",
        f"Dataset {params.data.dataset}, backbone {params.model.backbone}"
        + (f" (width {params.model.width})" if params.model.backbone == "resnet_tiny" else "")
        + f", {params.pretrain.epochs} epoch{'s' * (params.pretrain.epochs != 1)} at batch "
        f"{params.loader.batch_size}. Top-1 (%) on "
        f"the test split: kNN is {key} over cosine similarity, logistic is a standardised "
        "multinomial logistic regression with C chosen on a validation split of train. "
        "Gap = kNN student - kNN teacher (points); teacher features exist when the teacher "
        "owns backbone blocks (scopes full and last_k).", "",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r["label"], _pct(r["knn_student"]), _pct(r["knn_teacher"]),
                 "—" if r["gap"] is None else f"{100 * r['gap']:+.2f}",
                 _pct(r["logistic"]) + ("" if r["logistic_converged"] else " †")]
        cells += [_pct(r["transfer"].get(t)) for t in targets]
        cells.append("—" if r["pretrain_s"] is None else f"{r['pretrain_s']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    unconverged = [r["name"] for r in rows if not r["logistic_converged"]]
    if unconverged:
        lines += ["", f"† The logistic fit stopped before converging (max_iter reached with "
                  f"the gradient above tol; iterations and gradient norm in "
                  f"results/probes/<run>.json): {', '.join(unconverged)}. Raise "
                  "probe.max_iter."]
    runs = [r for r in rows if r["method"] is not None]
    best = max(runs, key=lambda r: r["knn_student"])
    base = {r["name"]: r for r in rows}
    lines += ["", f"Best run: **{best['name']}**, kNN {_pct(best['knn_student'])}: "
              f"{100 * (best['knn_student'] - base['random']['knn_student']):+.2f} points over "
              f"the random-init backbone, "
              f"{100 * (best['knn_student'] - base['raw']['knn_student']):+.2f} over raw pixels.",
              "", "## Gradient stability per block", "",
              "Coefficient of variation of ||dL/d(block output)|| over all steps / mean relative "
              "change from one step to the next (lower is steadier).", "",
              "| run | " + " | ".join(blocks) + " |", "|" + "---|" * (len(blocks) + 1)]
    for r in runs:
        cells = [f"{r['stability'][b]['cv']:.3f} / {r['stability'][b]['rel_change']:.3f}"
                 if b in r["stability"] else "—" for b in blocks]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    lines += ["", "## Plots", "", "![loss and gap](plots/curves.png)", "",
              "![gradient stability](plots/stability.png)", "",
              "![accuracy by momentum variant](plots/accuracy.png)", ""]
    return "\n".join(lines)


def report(params: Params, root: Path = RESULTS) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    rows = collect(params, root)
    blocks = block_names(4)
    for r in rows:
        if r["stability"]:
            blocks = list(r["stability"])
            break
    plots = root / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    plot_curves(params, root, plots / "curves.png")
    plot_stability(params, root, plots / "stability.png", blocks)
    plot_accuracy(rows, plots / "accuracy.png")
    out = root / "report.md"
    atomic_write_text(out, render(params, rows, blocks))
    return out
