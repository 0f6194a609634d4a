"""The comparison report: the ``report`` stage.

    report(params)   # results/report.md, results/summary.json, results/plots/*.png

Every grid run and both baselines, over the training seeds (``seeds``): a table of means with
their 95% interval (kNN of the student and of the teacher, their gap, logistic regression,
transfer, pretraining time), the per-seed values behind it, the claims and their verdicts
(analysis/claims.py, analysis/stats.py), a table of gradient stability per block, and the plots
(analysis/plots.py): loss and student-teacher gap curves, each block's gradient norm, kNN by
momentum variant with error bars, the claims as a forest plot, the kNN monitor's student and
teacher scores against steps (monitor.py) and the health statistics against steps (health.py),
with the Findings: each run
and seed whose projector output collapsed for a whole epoch. results/summary.json holds the same summaries for
``dvc metrics show/diff``. Everything is read from the stages' outputs (probe and transfer
JSON, each run's DVCLive folder); the statistics are stats.py's.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..analysis.claims import NOT_TESTED, Verdict, judge
from ..analysis.health import collapsed_epochs
from ..analysis.plots import (plot_accuracy, plot_claims, plot_curves, plot_health, plot_knn,
                              plot_stability)
from ..analysis.stats import Summary
from ..analysis.summaries import in_points, live_summary, read_history, summaries
from ..analysis.telemetry import block_names
from ..config import Params, RunSpec
from ..plumbing.artifacts import atomic_write_text, read_json
from ..plumbing.paths import (BASELINES, RESULTS, SEEDLESS, cell, probe_file, run_dir, seed_flag,
                              transfer_file)
from ..plumbing.results import transfer_summary

BASELINE_LABELS = {"raw": "baseline: raw pixels", "random": "baseline: random-init backbone"}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def cell_metrics(params: Params, name: str, run: RunSpec | None, seed: int | None,
                 root: Path = RESULTS) -> dict:
    """The numbers of one grid run (or baseline) at one seed: probes, transfer, training."""
    label, flag = cell(name, seed), seed_flag(seed)
    probes = read_json(probe_file(label, root), f"python -m momentum_ssl probe --run {name}{flag}",
                       ("knn_headline",))
    key = probes["knn_headline"]
    main = "student" if "student" in probes else "raw"
    out: dict = {"knn_student": probes[main]["knn"][key],
                 "logistic_student": probes[main]["logistic"]["top1"],
                 # False only where the probe says its final fit stopped short of its tolerance
                 "logistic_converged": probes[main]["logistic"].get("converged", True)
                 is not False}
    if "teacher" in probes:
        out["knn_teacher"] = probes["teacher"]["knn"][key]
        out["logistic_teacher"] = probes["teacher"]["logistic"]["top1"]
        out["knn_gap"] = out["knn_student"] - out["knn_teacher"]
    transfer = transfer_summary(transfer_file(label, root),
                                f"python -m momentum_ssl transfer --run {name}{flag}")
    out.update({f"transfer_{target}": score for target, score in transfer.items()})
    if run is not None:
        summary = read_json(run_dir(label, root) / "dvclive" / "metrics.json",
                            f"python -m momentum_ssl pretrain --run {name}{flag}")
        time = summary.get("time", {})
        if "pretrain_s" in time:
            out["pretrain_s"] = time["pretrain_s"]
            if time.get("steps"):
                out["step_s"] = time["pretrain_s"] / time["steps"]
        for level in ("backbone", "projector"):
            if f"gap_{level}" in summary.get("train", {}):
                out[f"gap_{level}"] = summary["train"][f"gap_{level}"]
        stability = summary.get("stability", {})
        out["stability"] = stability
        out["cv"] = {block: stats["cv"] for block, stats in stability.items()}
    return out


def collect(params: Params, root: Path = RESULTS) -> dict[str, dict]:
    """{name: {"run", "label", "seeds": {seed: metrics}}} for every grid run, then the
    baselines (raw pixels under seed None)."""
    out = {}
    entries = [(run.name, run) for run in params.grid] + [(b, None) for b in BASELINES]
    for name, run in entries:
        seeds = [None] if name in SEEDLESS else list(params.seeds)
        out[name] = {"run": run, "label": BASELINE_LABELS.get(name, name),
                     "seeds": {s: cell_metrics(params, name, run, s, root) for s in seeds}}
    return out


def _summary_json(collected: dict, verdicts: list[Verdict]) -> dict:
    """results/summary.json: per run and metric the mean, std and interval over seeds, with
    the per-seed values; then every claim's verdict. Absent values (std of one seed) are left
    out, so ``dvc metrics diff`` compares numbers only."""
    runs = {}
    for name, entry in collected.items():
        runs[name] = {}
        for metric, s in summaries(entry).items():
            values = {str("raw" if seed is None else seed): m[metric]
                      for seed, m in entry["seeds"].items()}
            runs[name][metric] = {k: v for k, v in s.as_dict().items() if v is not None}
            runs[name][metric]["seeds"] = values
    claims = []
    for v in verdicts:
        item = {"claim": v.claim.name, "source": v.claim.source, "a": v.a, "b": v.b,
                "metric": v.claim.metric, "kind": v.claim.kind, "status": v.status,
                "note": v.note}
        if v.claim.margin is not None:
            item["margin"] = v.claim.margin
        if v.effect is not None:
            item["difference"] = {k: x for k, x in v.effect.summary.as_dict().items()
                                  if x is not None}
            item["difference"]["seeds"] = {str(s): d for s, d in zip(v.effect.seeds,
                                                                      v.effect.differences)}
        claims.append({k: x for k, x in item.items() if x is not None})
    return {"runs": runs, "claims": claims}


def collapse_findings(params: Params, root: Path = RESULTS) -> list[str]:
    """One line per grid run and seed with an epoch whose ``health/z_std`` stayed below the
    run's ``health/collapse_threshold`` at every logged step (:func:`~momentum_ssl.analysis.health.
    collapsed_epochs`); steps per epoch from ``time/steps`` and ``pretrain.epochs``."""
    lines = []
    for run in params.grid:
        for seed in params.seeds:
            live = run_dir(cell(run.name, seed), root) / "dvclive"
            summary = live_summary(live, run.name, seed)
            threshold = summary.get("health", {}).get("collapse_threshold")
            total = summary.get("time", {}).get("steps")
            steps, values = read_history(live, "health/z_std")
            if threshold is None or not total or not steps:
                continue
            epochs = collapsed_epochs(steps, values, max(1, total // params.pretrain.epochs),
                                      threshold)
            if epochs:
                listed = ", ".join(map(str, epochs))
                lines.append(f"- **{run.name}** (seed {seed}) collapsed: the std of its "
                             f"L2-normalised projector output stayed below {threshold:.4g} at "
                             f"every logged step of epoch{'s' * (len(epochs) > 1)} {listed} of "
                             f"{params.pretrain.epochs} (last logged value {values[-1]:.3g}).")
    return lines


def _mean_ci(s: Summary | None, points: bool = True, digits: int = 2) -> str:
    """``mean ± half-width`` (in points for accuracies), or the mean alone for one seed."""
    if s is None:
        return "—"
    scale = 100 if points else 1
    text = f"{scale * s.mean:.{digits}f}"
    return text if s.half_width is None else f"{text} ± {scale * s.half_width:.{digits}f}"


def _difference(v: Verdict) -> str:
    if v.effect is None:
        return "—"
    s = v.effect.summary
    scale, fmt = (100, "{:+.2f}") if in_points(v) else (1, "{:+.3g}")
    text = fmt.format(scale * s.mean)
    if s.low is not None:
        text += f" [{fmt.format(scale * s.low)}, {fmt.format(scale * s.high)}]"
    return text


def render(params: Params, collected: dict, verdicts: list[Verdict], blocks: list[str],
           findings: list[str] | None = None) -> str:
    key = f"k{params.probe.knn_k[0]} weighted (T={params.probe.temperature})"
    stats = {name: summaries(e) for name, e in collected.items()}
    first = next(iter(collected.values()))
    targets = sorted(m.removeprefix("transfer_") for m in next(iter(first["seeds"].values()))
                     if m.startswith("transfer_"))
    seeds = list(params.seeds)
    head = (["run", "kNN student", "kNN teacher", "gap", "logistic"]
            + [f"transfer {t} (kNN)" for t in targets] + ["pretraining (s)"])
    lines = [
        "# momentum-ssl report", "",
        f"Dataset {params.data.dataset}, backbone {params.model.backbone}"
        + (f" (width {params.model.width})" if params.model.backbone == "resnet_tiny" else "")
        + f", {params.pretrain.epochs} epoch{'s' * (params.pretrain.epochs != 1)} at batch "
        f"{params.loader.batch_size}, {len(seeds)} seed{'s' * (len(seeds) != 1)} "
        f"({', '.join(map(str, seeds))}). Top-1 (%) on "
        f"the test split: kNN is {key} over cosine similarity, logistic is a standardised "
        "multinomial logistic regression with C chosen on a validation split of train. "
        "Gap = kNN student - kNN teacher (points); teacher features exist when the teacher "
        "owns backbone blocks (scopes full and last_k). Each cell is the mean over seeds ± the "
        "half-width of its 95% Student-t interval (no interval with one seed); raw pixels draw "
        "nothing and have one value.", "",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in collected.items():
        s = stats[name]
        converged = all(m["logistic_converged"] for m in entry["seeds"].values())
        cells = [entry["label"], _mean_ci(s.get("knn_student")), _mean_ci(s.get("knn_teacher")),
                 _mean_ci(s.get("knn_gap")),
                 _mean_ci(s.get("logistic_student")) + ("" if converged else " †")]
        cells += [_mean_ci(s.get(f"transfer_{t}")) for t in targets]
        cells.append(_mean_ci(s.get("pretrain_s"), points=False, digits=0))
        lines.append("| " + " | ".join(cells) + " |")
    unconverged = [cell(name, seed) for name, entry in collected.items()
                   for seed, m in entry["seeds"].items() if not m["logistic_converged"]]
    if unconverged:
        lines += ["", "† The logistic fit stopped before converging (max_iter reached with the "
                  "gradient above tol; iterations and gradient norm in "
                  f"results/probes/<run>/s<seed>.json): {', '.join(unconverged)}. Raise "
                  "probe.max_iter."]
    runs = [n for n, e in collected.items() if e["run"] is not None]
    best = max(runs, key=lambda n: stats[n]["knn_student"].mean)
    top = stats[best]["knn_student"].mean
    lines += ["", f"Best run: **{best}**, kNN {_pct(top)}: "
              f"{100 * (top - stats['random']['knn_student'].mean):+.2f} points over "
              f"the random-init backbone, "
              f"{100 * (top - stats['raw']['knn_student'].mean):+.2f} over raw pixels "
              "(means over seeds).", ""]

    lines += ["## Claims", "",
              "Each claim is judged from paired differences over seeds (a - b, the same seed for "
              "both runs: the same initialisation draws and data order), with the mean and its "
              "95% Student-t interval: **supported** when the interval excludes zero on the "
              "claimed side (an equivalence: both one-sided tests reject at 0.05 against the "
              "margin), **contradicted** when it excludes zero on the other side (or lies "
              "outside the margin), **inconclusive** otherwise, and with one seed always. "
              "Differences of accuracies are in points.", "",
              "| claim | source | runs (a vs b) | metric | a - b [95% CI] | verdict | note |",
              "|---|---|---|---|---|---|---|"]
    for v in verdicts:
        margin = f" (margin ±{_margin(v)})" if v.claim.margin is not None else ""
        lines.append(f"| {v.claim.name}{margin} | {v.claim.source} | {v.label} | "
                     f"{v.claim.metric} | {_difference(v)} | **{v.status}** | {v.note or ''} |")
    tested = sum(v.status != NOT_TESTED for v in verdicts)
    lines += ["", f"{tested} of {len(verdicts)} claim rows tested; the others need runs the "
              "grid does not have.", ""]

    lines += ["## Per-seed values", "", "kNN student / logistic (%) of each run at each seed.",
              "", "| run | " + " | ".join(f"seed {s}" for s in seeds) + " |",
              "|" + "---|" * (len(seeds) + 1)]
    for name, entry in collected.items():
        cells = []
        for seed in seeds:
            m = entry["seeds"].get(seed) or entry["seeds"].get(None)
            cells.append(f"{_pct(m['knn_student'])} / {_pct(m['logistic_student'])}")
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")

    lines += ["", "## Gradient stability per block", "",
              "Coefficient of variation of ||dL/d(block output)|| over all steps / mean relative "
              "change from one step to the next (lower is steadier), averaged over seeds.", "",
              "| run | " + " | ".join(blocks) + " |", "|" + "---|" * (len(blocks) + 1)]
    for name in runs:
        per_seed = [m["stability"] for m in collected[name]["seeds"].values()]
        cells = []
        for b in blocks:
            if all(b in st for st in per_seed):
                cv = sum(st[b]["cv"] for st in per_seed) / len(per_seed)
                rel = sum(st[b]["rel_change"] for st in per_seed) / len(per_seed)
                cells.append(f"{cv:.3f} / {rel:.3f}")
            else:
                cells.append("—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Findings", "",
              "Health telemetry: a run is noted when the std of its L2-normalised projector "
              "output stayed below `pretrain.collapse_std` / sqrt(d) at every logged step of an "
              "epoch (a collapse; a finding, not a failure).", ""]
    lines += findings or ["No run's projector output collapsed for a whole epoch."]
    lines += ["", "## Plots", "", "![loss and gap](plots/curves.png)", "",
              "![gradient stability](plots/stability.png)", "",
              "![accuracy by momentum variant](plots/accuracy.png)", "",
              "![claims](plots/claims.png)", "",
              "![kNN monitor against steps, student and teacher](plots/knn.png)", "",
              "![health: output std and effective ranks](plots/health.png)", ""]
    return "\n".join(lines)


def _margin(v: Verdict) -> str:
    return f"{100 * v.claim.margin:g} points" if in_points(v) else f"{v.claim.margin:g}"


def report(params: Params, root: Path = RESULTS) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    collected = collect(params, root)
    verdicts = judge(params.claims, {n: e["seeds"] for n, e in collected.items()
                                     if e["run"] is not None})
    blocks = block_names(4)
    for entry in collected.values():
        stability = next(iter(entry["seeds"].values())).get("stability")
        if stability:
            blocks = list(stability)
            break
    plots = root / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    plot_curves(params, root, plots / "curves.png")
    plot_stability(params, root, plots / "stability.png", blocks)
    plot_accuracy(collected, plots / "accuracy.png")
    plot_claims(verdicts, plots / "claims.png")
    plot_knn(params, root, plots / "knn.png")
    plot_health(params, root, plots / "health.png")
    atomic_write_text(root / "summary.json",
                      json.dumps(_summary_json(collected, verdicts), indent=2,
                                 sort_keys=True) + "\n")
    out = root / "report.md"
    atomic_write_text(out, render(params, collected, verdicts, blocks,
                                  collapse_findings(params, root)))
    return out
