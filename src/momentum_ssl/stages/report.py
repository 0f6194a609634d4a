"""The comparison report: the ``report`` stage.

    report(params)   # results/report.md, summary.json, metrics.json, plots/*.png

Every grid run and both baselines, over the training seeds (``seeds``): a table of means with
their 95% interval (kNN of the student and of the teacher, their gap, logistic regression,
transfer, pretraining time) and whether each run learned (its kNN over the random-init
backbone at the same seed), the per-seed values behind it, the claims and their verdicts
(analysis/claims.py, analysis/stats.py: only on runs that learned, Holm-adjusted, with the
seeds an inconclusive claim needs; docs/STATISTICS.md), a table of gradient stability per
block, and the plots (analysis/plots.py): loss and student-teacher gap curves, each block's gradient norm, kNN by momentum
variant with error bars, the claims as a forest plot, the kNN monitor's student and teacher
scores against steps (monitor.py) and the health statistics against steps (health.py), with
the Findings: each run and seed whose projector output collapsed for a whole epoch. With
``pretrain.keep_every``, the kNN of each kept checkpoint (stages/epochs.py) against epochs per
run, mean and 95% interval over seeds, as a table and a plot (plots/epochs.png).
results/summary.json holds the same summaries with every seed's value and where each run
ran; results/metrics.json, its headline numbers (analysis/headline.py), is what ``dvc metrics
show/diff`` compares. Everything is read from the stages' outputs (probe and transfer JSON,
each run's DVCLive folder and provenance); the statistics are stats.py's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..analysis.claims import (NOT_TESTABLE, NOT_TESTED, Learning, Verdict, judge, learning,
                               plan)
from ..analysis.classifiers import headline_knn
from ..analysis.headline import write_headline
from ..analysis.health import collapsed_epochs
from ..analysis.plots import (plot_accuracy, plot_claims, plot_curves, plot_health, plot_knn,
                              plot_stability, plot_sweeps)
from ..analysis.stats import (CONTRADICTED, MIN_SEEDS, SUPPORTED, Summary, image_half_width,
                              image_half_width_bound, summarize)
from ..analysis.summaries import (claim_interval, in_points, live_summary, read_history,
                                  summaries)
from ..analysis.telemetry import block_names
from ..config import ConfigError, Params, RunSpec, resolve, sweeps
from ..plumbing.artifacts import MissingArtifact, atomic_write_text, read_json
from ..plumbing.compute import collect_provenance, render_provenance
from ..plumbing.paths import (BASELINES, RESULTS, SEEDLESS, cell, epochs_file, predictions_file,
                              probe_file, run_dir, seed_flag, transfer_file)
from ..plumbing.results import read_features, transfer_summary

BASELINE_LABELS = {"raw": "baseline: raw pixels", "random": "baseline: random-init backbone"}


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}"


def cell_metrics(name: str, run: RunSpec | None, seed: int | None, root: Path = RESULTS) -> dict:
    """The numbers of one grid run (or baseline) at one seed: probes, transfer (and each
    target's number of test images, ``test_images``), training."""
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
        out["knn_gap_abs"] = abs(out["knn_gap"])  # how far apart, whichever of the two leads
        out["logistic_gap"] = out["logistic_student"] - out["logistic_teacher"]
    rewrite = f"python -m momentum_ssl transfer --run {name}{flag}"
    transfer = transfer_summary(transfer_file(label, root), rewrite)
    out.update({f"transfer_{target}": score for target, score in transfer.items()})
    targets = read_json(transfer_file(label, root), rewrite, ("targets",))["targets"]
    out["test_images"] = {t: targets[t].get("num_test") for t in transfer}
    if transfer:  # the claims' `transfer`: the mean over the targets
        out["transfer"] = sum(transfer.values()) / len(transfer)
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
        # dvclive writes a value that is not finite as a string ("nan": rel_change of a run
        # that logged one step): read every value back as a float
        stability = {block: {key: float(value) for key, value in stats.items()}
                     for block, stats in summary.get("stability", {}).items()}
        out["stability"] = stability
        out["cv"] = {block: stats["cv"] for block, stats in stability.items()}
        out["rel_change"] = {block: stats["rel_change"] for block, stats in stability.items()
                             if "rel_change" in stats}
    return out


def collect(params: Params, root: Path = RESULTS) -> dict[str, dict]:
    """{name: {"run", "label", "seeds": {seed: metrics}}} for every grid run, then the
    baselines (raw pixels under seed None)."""
    out = {}
    entries = [(run.name, run) for run in params.grid] + [(b, None) for b in BASELINES]
    for name, run in entries:
        seeds = [None] if name in SEEDLESS else list(params.seeds)
        out[name] = {"run": run, "label": BASELINE_LABELS.get(name, name),
                     "seeds": {s: cell_metrics(name, run, s, root) for s in seeds}}
        if params.linear and run is not None:  # the papers' linear evaluation (stages/linear.py)
            from ..plumbing.paths import linear_file

            for s, metrics in out[name]["seeds"].items():
                metrics["linear_student"] = read_json(
                    linear_file(cell(name, s), root),
                    f"python -m momentum_ssl linear --run {name}{seed_flag(s)}", ("top1",))["top1"]
    return out


def _learning_json(learned: dict[str, Learning]) -> dict:
    out = {}
    for run, item in learned.items():
        entry = {"learned": item.learned, "collapsed_seeds": list(item.collapsed)}
        if item.reason:
            entry["reason"] = item.reason
        if item.detects is not None:
            entry["guard_detects"] = item.detects  # the gain found with 80% power
        if item.effect is not None:
            entry["knn_over_random"] = {k: x for k, x in item.effect.summary.as_dict().items()
                                        if x is not None}
            entry["knn_over_random"]["seeds"] = {str(s): d for s, d in
                                                 zip(item.effect.seeds, item.effect.differences)}
        out[run] = entry
    return out


def _summary_json(collected: dict, verdicts: list[Verdict],
                  learned: dict[str, Learning] | None = None,
                  test_set: dict[int, "TestSet"] | None = None) -> dict:
    """results/summary.json: per run and metric the mean, std and interval over seeds, with
    the per-seed values; whether each run has shown that it learned (``learning``: its kNN
    over the random-init backbone, paired by seed); then every claim row's verdict with its
    raw and Holm-adjusted p-value, its seeds needed and the test set's own error
    (``test_set``). Absent values (std of one seed) are left out, so ``dvc metrics diff``
    compares numbers only."""
    runs = {}
    for name, entry in collected.items():
        runs[name] = {}
        for metric, s in summaries(entry).items():
            values = {str("raw" if seed is None else seed): m[metric]
                      for seed, m in entry["seeds"].items()}
            runs[name][metric] = {k: v for k, v in s.as_dict().items() if v is not None}
            runs[name][metric]["seeds"] = values
    claims = []
    test_set = test_set or {}
    for i, v in enumerate(verdicts):
        item = {"claim": v.claim.name, "source": v.claim.source, "a": v.a, "b": v.b,
                "metric": v.claim.metric, "kind": v.claim.kind, "status": v.status,
                "note": v.note, "primary": v.primary, "p": v.p, "p_adjusted": v.p_adjusted,
                "effect": v.claim.planned_effect, "seeds_needed": v.seeds_needed,
                "seeds_needed_upper": v.seeds_needed_upper, "detectable": v.detectable,
                "holm_first_step": v.first_step, "rows": len(v.parts) or None}
        if i in test_set:
            item["test_set"] = test_set[i].as_dict()
        if v.claim.margin is not None:
            item["margin"] = v.claim.margin
        if v.effect is not None:
            item["difference"] = {k: x for k, x in v.effect.summary.as_dict().items()
                                  if x is not None}
            item["difference"]["seeds"] = {str(s): d for s, d in zip(v.effect.seeds,
                                                                      v.effect.differences)}
        if claim_interval(v) is not None:
            low, high, level = claim_interval(v)
            item["decided_on"] = {"ci_low": low, "ci_high": high, "level": level}
        if v.rho is not None:
            item["mean_rho"] = v.rho
        claims.append({k: x for k, x in item.items() if x is not None})
    out = {"runs": runs, "claims": claims}
    if learned is not None:
        out["learning"] = _learning_json(learned)
    return out


def collapses(params: Params, root: Path = RESULTS) -> list[tuple[str, int, list[int], float,
                                                                   float]]:
    """(run, seed, epochs, threshold, last value) for each grid run and seed with an epoch whose
    ``health/z_std`` stayed below the run's ``health/collapse_threshold`` at every logged step
    (:func:`~momentum_ssl.analysis.health.collapsed_epochs`); steps per epoch from ``time/steps`` and
    ``pretrain.epochs``."""
    out = []
    for run in params.grid:
        for seed in params.seeds:
            live = run_dir(cell(run.name, seed), root) / "dvclive"
            summary = live_summary(live, run.name, seed)
            threshold = summary.get("health", {}).get("collapse_threshold")
            total = summary.get("time", {}).get("steps")
            steps, values = read_history(live, "health/z_std")
            if threshold is None or not total or not steps:
                continue
            epochs = collapsed_epochs(steps, values,
                                      max(1, total // resolve(params, run).pretrain.epochs),
                                      threshold)
            if epochs:
                out.append((run.name, seed, epochs, threshold, values[-1]))
    return out


def collapse_findings(params: Params, root: Path = RESULTS,
                      found: list | None = None) -> list[str]:
    """One line per grid run and seed that collapsed (:func:`collapses`)."""
    lines = []
    for name, seed, epochs, threshold, last in (collapses(params, root) if found is None
                                               else found):
        listed = ", ".join(map(str, epochs))
        lines.append(f"- **{name}** (seed {seed}) collapsed: the std of its "
                     f"L2-normalised projector output stayed below {threshold:.4g} at "
                     f"every logged step of epoch{'s' * (len(epochs) > 1)} {listed} of "
                     f"{params.pretrain.epochs} (last logged value {last:.3g}).")
    return lines


def _mean_ci(s: Summary | None, points: bool = True, digits: int = 2) -> str:
    """``mean ± half-width`` (in points for accuracies), or the mean alone for one seed."""
    if s is None:
        return "—"
    scale = 100 if points else 1
    text = f"{scale * s.mean:.{digits}f}"
    return text if s.half_width is None else f"{text} ± {scale * s.half_width:.{digits}f}"


def _difference(v: Verdict) -> str:
    """The mean difference with the interval its verdict is read on, and that level (for a
    rising claim, the final blocks minus the earlier ones)."""
    if v.effect is None:
        return "—"
    s = v.effect.summary
    scale, fmt = (100, "{:+.2f}") if in_points(v) else (1, "{:+.3g}")
    text = fmt.format(scale * s.mean)
    if claim_interval(v) is not None:
        low, high, level = claim_interval(v)
        text += f" [{fmt.format(scale * low)}, {fmt.format(scale * high)}] ({100 * level:g}%)"
    return text


def _p(v: Verdict) -> str:
    if v.p is None:
        return "—"
    return f"{v.p:.3g} / {v.p_adjusted:.3g}" if v.p_adjusted is not None else f"{v.p:.3g}"


def _needed(v: Verdict) -> str:
    """Seeds for 80% power at the declared effect, from the observed sd (a plug-in figure)
    and from its 80% upper bound, and the smallest effect the seeds run detect, at Holm's
    first-step level; '—' when the row is not inconclusive."""
    if v.detectable is None:
        return "—"
    scale, unit = (100, " points") if in_points(v) else (1, "")
    planned = v.claim.planned_effect

    def seeds(n: int | None) -> str:
        return "> 1000" if n is None else str(n)

    need = ("no declared effect" if planned is None else
            f"{seeds(v.seeds_needed)} seeds at {scale * planned:g}{unit} "
            f"({seeds(v.seeds_needed_upper)} if the sd is at its 80% upper bound)")
    rule = f", all {len(v.parts)} rows simulated" if len(v.parts) > 1 else ""
    return (f"{need}; {v.effect.summary.n} seeds detect {scale * v.detectable:.3g}{unit} "
            f"(Holm's first step {v.first_step:.3g}{rule})")


NOT_SHOWN = "**not shown to have learned**"


def _learned_cell(item: Learning | None) -> str:
    if item is None:
        return "—"
    s = None if item.effect is None else item.effect.summary
    text = "—" if s is None else f"{100 * s.mean:+.2f}"
    if s is not None and s.low is not None:
        text += f" [{100 * s.low:+.2f}, {100 * s.high:+.2f}]"
    if item.collapsed:
        text += ", collapsed"
    if item.learned:
        return text
    detects = "" if item.detects is None else f" (detects {100 * item.detects:.2f} at 80% power)"
    return f"{text} {NOT_SHOWN}{detects}"


# The per-image predictions behind each accuracy metric a claim can compare (probe.py writes
# them, results/predictions/<run>/s<seed>.parquet); a gap is student minus teacher.
PREDICTED = {"knn_student": ("student", "knn"), "knn_teacher": ("teacher", "knn"),
             "logistic_student": ("student", "logistic"),
             "logistic_teacher": ("teacher", "logistic")}
GAPS = {"knn_gap": ("knn_student", "knn_teacher"),
        "logistic_gap": ("logistic_student", "logistic_teacher")}


class TestSet:
    """The test set's own sampling error in one claim row's mean difference: the half-width of
    the normal 95% interval from the paired bootstrap's exact standard error over test images,
    less the seeds' share (``exact``), or an upper bound where the per-image predictions are
    not kept (transfer), and whether the row's verdict still
    stands when it is added to the seeds' interval (``holds``)."""

    __test__ = False  # not a pytest class

    def __init__(self, half_width: float, exact: bool, images: int, holds: bool | None):
        self.half_width, self.exact, self.images, self.holds = half_width, exact, images, holds

    def as_dict(self) -> dict:
        out = {"half_width": self.half_width, "level": 0.95, "images": self.images,
               "method": ("normal 95% interval from the paired bootstrap's exact standard "
                          "error over test images, less the seeds' share") if self.exact
               else "upper bound"}
        if self.holds is not None:
            out["verdict_holds"] = self.holds
        return out


def _holds(v: Verdict, extra: float) -> bool | None:
    """Whether a verdict's interval, widened by the test set's half-width (the root of the two
    squared half-widths), still clears every boundary its verdict is read against (zero, or
    the margins); None for an inconclusive row."""
    if v.status not in (SUPPORTED, CONTRADICTED) or claim_interval(v) is None:
        return None
    low, high, _ = claim_interval(v)
    centre, half = (low + high) / 2, (high - low) / 2
    wide = (half ** 2 + extra ** 2) ** 0.5
    margin = v.claim.margin
    bounds = ((0.0,) if margin is None else (-margin,) if v.claim.kind == "noninferior"
              else (-margin, margin))
    return not any(centre - wide <= b <= centre + wide for b in bounds)


def _correct(root: Path, run: str, seed: int, metric: str, knn: str, cache: dict):
    """Per test image, 1.0 where run's ``metric`` probe is right at ``seed`` (a gap: student
    right minus teacher right); None when the predictions lack that probe."""
    import numpy as np

    if metric in GAPS:
        parts = [_correct(root, run, seed, m, knn, cache) for m in GAPS[metric]]
        return None if any(p is None for p in parts) else parts[0] - parts[1]
    label = cell(run, seed)
    if label not in cache:
        cache[label] = read_features(predictions_file(label, root),
                                     f"python -m momentum_ssl probe --run {run}"
                                     f"{seed_flag(seed)}")
    columns, labels, _ = cache[label]
    encoder, probe = PREDICTED[metric]
    column = columns.get(f"{encoder}/{'knn_' + knn if probe == 'knn' else probe}")
    return None if column is None else (np.asarray(column) == labels).astype(float)


def test_set_errors(params: Params, collected: dict, verdicts: list[Verdict],
                    root: Path = RESULTS) -> dict[int, TestSet]:
    """For each tested claim row (by index) on an accuracy, the test set's own 95% error in
    its mean difference: every seed is scored on the same test images, so the seeds' interval
    is conditional on them. kNN and logistic rows: a normal interval from the paired
    bootstrap's exact standard error over test images, less the seeds' share, from the
    per-image predictions (stats.image_half_width); transfer rows: an upper bound from
    the accuracies and each target's number of test images (the transfer stage keeps no
    per-image predictions; stats.image_half_width_bound)."""
    knn, cache, out = headline_knn(params.probe), {}, {}
    for i, v in enumerate(verdicts):
        metric = v.claim.metric
        if v.effect is None or v.test is None or "," in v.a:  # untested, or a dominant row
            continue
        seeds = v.effect.seeds
        if metric in PREDICTED or metric in GAPS:
            rows = []
            for seed in seeds:
                a = _correct(root, v.a, seed, metric, knn, cache)
                b = 0.0 if v.b is None else _correct(root, v.b, seed, metric, knn, cache)
                if a is None or b is None:
                    break
                rows.append(a - b)
            else:
                half = image_half_width(rows)
                out[i] = TestSet(half, True, len(rows[0]), _holds(v, half))
        elif metric.startswith("transfer"):
            first = collected[v.a]["seeds"][seeds[0]]
            targets = ([metric.removeprefix("transfer_")] if metric != "transfer"
                       else sorted(first["test_images"]))
            errors = []
            for t in targets:
                images = first["test_images"].get(t)
                if not images:
                    break
                err = [1 - sum(collected[r]["seeds"][s][f"transfer_{t}"] for s in seeds)
                       / len(seeds) for r in (v.a, v.b) if r is not None]
                errors.append((err[0], err[1] if len(err) > 1 else 0.0, images))
            else:
                half = image_half_width_bound(errors)
                out[i] = TestSet(half, False, sum(e[2] for e in errors), _holds(v, half))
    return out


def _test_set_cell(v: Verdict, item: "TestSet | None") -> str:
    if item is None:
        return "—"
    text = f"{'' if item.exact else '≤ '}±{100 * item.half_width:.2f}"
    return text + (" ‡" if item.holds is False else "")


def _knn_label(params: Params) -> str:
    """The headline kNN as the report names it: classifiers.headline_knn's key, worded."""
    return f"{headline_knn(params.probe).replace('_', ' ')} (T={params.probe.temperature})"


def _scale_line(params: Params) -> str:
    """Dataset, backbone, epochs and batch: the scale of the runs a report shows, as each run
    trains (its method's recipe and its grid entry may set its own epochs and batch)."""
    scales = {run.name: (p.pretrain.epochs, p.loader.batch_size)
              for run, p in ((run, resolve(params, run)) for run in params.grid)}
    shared = set(scales.values())
    if len(shared) == 1:
        epochs, batch = shared.pop()
        scale = f"{epochs} epoch{'s' * (epochs != 1)} at batch {batch}"
    else:
        scale = "per run " + ", ".join(f"{name} {epochs} epoch{'s' * (epochs != 1)} at batch "
                                       f"{batch}" for name, (epochs, batch) in scales.items())
    return (f"{params.data.dataset}, backbone {params.model.backbone}"
            + (f" (width {params.model.width})" if params.model.backbone == "resnet_tiny"
               else "")
            + f", {scale}")


def runs_section(params: Params, collected: dict,
                 learned: dict[str, Learning] | None = None) -> list[str]:
    """The runs table (every grid run and baseline, mean ± half-width over seeds, and each
    run's kNN over random-init) with its preamble, its footnote and the best run."""
    stats = {name: summaries(e) for name, e in collected.items()}
    first = next(iter(collected.values()))
    targets = sorted(m.removeprefix("transfer_") for m in next(iter(first["seeds"].values()))
                     if m.startswith("transfer_"))
    seeds = list(params.seeds)
    head = (["run", "kNN student", "kNN teacher", "gap", "logistic"]
            + (["linear (SGD)"] if params.linear else [])
            + [f"transfer {t} (kNN)" for t in targets] + ["pretraining (s)"]
            + (["kNN - random-init [95% CI]"] if learned is not None else []))
    lines = [
        f"Dataset {_scale_line(params)}, {len(seeds)} seed{'s' * (len(seeds) != 1)} "
        f"({', '.join(map(str, seeds))}). Top-1 (%) on "
        f"the test split: kNN is {_knn_label(params)} over cosine similarity, logistic is a "
        "standardised multinomial logistic regression with C chosen on a validation split of "
        "train"
        + ("; linear (SGD) is the papers' linear evaluation, a linear head trained with SGD on "
           "random-resized crops and flips through the frozen student (recipes.linear, "
           "docs/STAGES.md), grid runs only" if params.linear else "")
        + ". Gap = kNN student - kNN teacher (points); teacher features exist when the "
        "teacher owns backbone blocks (scopes full and last_k). Each cell is the mean over "
        "seeds ± the half-width of its 95% Student-t interval (no interval with one seed); raw "
        "pixels draw nothing and have one value."
        + (" The last column is the student's kNN minus the random-init backbone's at the same "
           "seed (points, mean and 95% interval over seeds): a run whose interval does not lie "
           f"above zero, or that collapsed, is {NOT_SHOWN} (a one-sided test at 0.025, not "
           "proof that it learned nothing: beside it, the gain over random-init that this "
           "guard detects with 80% power at the run's seeds and spread), and no claim is "
           "judged on it." if learned is not None else ""), "",
        "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, entry in collected.items():
        s = stats[name]
        converged = all(m["logistic_converged"] for m in entry["seeds"].values())
        cells = [entry["label"], _mean_ci(s.get("knn_student")), _mean_ci(s.get("knn_teacher")),
                 _mean_ci(s.get("knn_gap")),
                 _mean_ci(s.get("logistic_student")) + ("" if converged else " †")]
        if params.linear:
            cells.append(_mean_ci(s.get("linear_student")))
        cells += [_mean_ci(s.get(f"transfer_{t}")) for t in targets]
        cells.append(_mean_ci(s.get("pretrain_s"), points=False, digits=0))
        if learned is not None:
            cells.append(_learned_cell(learned.get(name)))
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
              "(means over seeds)."]
    return lines


CLAIMS_PROSE = (
    "Each claim is judged from paired differences over seeds (a - b, the same seed for both "
    "runs: the same initialisation draws and data order; docs/STATISTICS.md). A direction "
    "claim is read on the 95% Student-t interval; so are an equivalence (two one-sided tests "
    "at 0.025) and a non-inferiority (one-sided at 0.025), against the margin, since at the "
    "margin both a verdict and its opposite would be false; a rising claim by a t test on "
    "each seed's mean of the final blocks minus the earlier ones; a claim that must hold for "
    "every pair, against every other method, or (a dominant claim) for every contrast "
    "mean(a - b) ± (a_i - a_j) needs each of its tests to pass (the weakest is shown; "
    "Bonferroni on the opposite). The t procedures assume roughly normal differences over "
    "seeds: a note flags a seed whose difference is an outlier (Grubbs, 5%). "
    "The p-values are adjusted with Holm's method across the claims' primary rows, and apart "
    "across the secondary rows (the other methods' expansions): a second family, so across "
    "the whole table the chance of any false verdict is up to twice 0.05; read the secondary "
    "rows as exploratory. The verdict is decided on the adjusted p-value (the printed "
    "intervals are not adjusted, so an interval clear of zero can sit beside an inconclusive "
    "verdict): **supported**, **contradicted**, or **inconclusive**, which then states the "
    "seeds that would give 80% power at the claim's declared effect, at Holm's first-step "
    "level, from the observed spread (a plug-in figure, optimistic at few seeds) and from "
    "its 80% upper bound, and the smallest effect its seeds detect. Fewer than "
    f"{MIN_SEEDS} seeds, or differences without spread, give no verdict. A claim that "
    "compares a run not shown to have learned is **not testable**; one whose runs are not in "
    "the grid is **not tested**. Differences of accuracies are in points. The intervals are "
    "conditional on the test set (every seed is scored on the same images): the test-set "
    "column gives that set's own 95% error in the difference, a normal interval from the "
    "paired bootstrap's exact standard error over test images less the seeds' share (kNN, "
    "logistic) or, where the per-image predictions are not kept (transfer), "
    "an upper bound (≤); ‡ marks a verdict whose interval, widened by it, reaches the "
    "boundary it is read against.")


def claims_section(verdicts: list[Verdict], test_set: dict[int, TestSet]) -> list[str]:
    """The claims table: every row with its difference, p-values, verdict, seeds needed, the
    test set's own error and its note; then the count of claims tested."""
    lines = ["| claim | source | runs (a vs b) | metric | a - b [CI] | test set ± (95%) "
             "| p raw / Holm | verdict | seeds needed (80% power) | note |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for i, v in enumerate(verdicts):
        margin = "" if v.claim.margin is None else (
            f" (non-inferiority margin {_margin(v)})" if v.claim.kind == "noninferior"
            else f" (margin ±{_margin(v)})")
        runs_cell = v.label if v.primary else f"{v.label} (secondary)"
        lines.append(f"| {v.claim.name}{margin} | {v.claim.source} | {runs_cell} | "
                     f"{v.claim.metric} | {_difference(v)} | {_test_set_cell(v, test_set.get(i))}"
                     f" | {_p(v)} | **{v.status}** | {_needed(v)} | {v.note or ''} |")
    primary = [v for v in verdicts if v.primary]
    tested = sum(v.p_adjusted is not None for v in primary)
    untestable = sum(v.status == NOT_TESTABLE for v in primary)
    return lines + ["", f"{tested} of {len(primary)} claims tested (Holm over {tested}); "
                    f"{untestable} not testable (a run not shown to have learned); the others "
                    "need runs or seeds the grid does not have."]


def _per_seed_section(params: Params, collected: dict) -> list[str]:
    seeds = list(params.seeds)
    lines = ["## Per-seed values", "", "kNN student / logistic (%) of each run at each seed.",
             "", "| run | " + " | ".join(f"seed {s}" for s in seeds) + " |",
             "|" + "---|" * (len(seeds) + 1)]
    for entry in collected.values():
        cells = []
        for seed in seeds:
            m = entry["seeds"].get(seed) or entry["seeds"].get(None)
            cells.append(f"{_pct(m['knn_student'])} / {_pct(m['logistic_student'])}")
        lines.append(f"| {entry['label']} | " + " | ".join(cells) + " |")
    return lines


def _stability_section(collected: dict, blocks: list[str]) -> list[str]:
    lines = ["## Gradient stability per block", "",
             "Coefficient of variation of ||dL/d(block output)|| over all steps / mean relative "
             "change from one step to the next (lower is steadier), averaged over seeds.", "",
             "| run | " + " | ".join(blocks) + " |", "|" + "---|" * (len(blocks) + 1)]
    for name, entry in collected.items():
        if entry["run"] is None:
            continue
        per_seed = [m["stability"] for m in entry["seeds"].values()]
        cells = []
        for b in blocks:
            if all(b in st for st in per_seed):
                cv = sum(st[b]["cv"] for st in per_seed) / len(per_seed)
                rel = sum(st[b].get("rel_change", math.nan) for st in per_seed) / len(per_seed)
                cells.append(" / ".join(f"{v:.3f}" if math.isfinite(v) else "—"
                                        for v in (cv, rel)))
            else:
                cells.append("—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


# {run: {epoch: {seed: the student's headline kNN}}}: the kept checkpoints' scores
Kept = dict[str, dict[int, dict[int, float]]]


def collect_epochs(params: Params, root: Path = RESULTS) -> Kept:
    """{run: {epoch: {seed: the student's headline kNN}}} from each run's and seed's
    results/epochs/<run>/s<seed>.json (``pretrain.keep_every``)."""
    out: Kept = {}
    for run in params.grid:
        for seed in params.seeds:
            data = read_json(epochs_file(cell(run.name, seed), root),
                             f"python -m momentum_ssl evaluate-epochs --run {run.name}"
                             + seed_flag(seed), ("epochs", "knn_headline"))
            for record in data["epochs"]:
                out.setdefault(run.name, {}).setdefault(record["epoch"], {})[seed] = \
                    record["student"][data["knn_headline"]]
    return out


def epochs_section(params: Params, kept: Kept) -> list[str]:
    """The kept checkpoints' table: a row per epoch, a column per run, mean ± half-width."""
    runs = list(kept)
    epochs = sorted({e for per_run in kept.values() for e in per_run})
    lines = ["## Accuracy against epochs", "",
             f"Student kNN top-1 (%), {_knn_label(params)}, of the weights kept every "
             f"{params.pretrain.keep_every} epoch{'s' * (params.pretrain.keep_every != 1)} "
             "and after the last (`pretrain.keep_every`), each scored on the whole train and "
             "test splits as the probe stage scores a finished run: the mean over seeds ± "
             "the half-width of its 95% Student-t interval.", "",
             "| epoch | " + " | ".join(runs) + " |", "|" + "---|" * (len(runs) + 1)]
    for epoch in epochs:
        cells = [_mean_ci(summarize(list(kept[r][epoch].values())) if epoch in kept[r]
                          else None) for r in runs]
        lines.append(f"| {epoch} | " + " | ".join(cells) + " |")
    return lines


def render(params: Params, collected: dict, verdicts: list[Verdict], blocks: list[str],
           findings: list[str] | None = None,
           learned: dict[str, Learning] | None = None,
           test_set: dict[int, TestSet] | None = None,
           kept: Kept | None = None) -> str:
    lines = ["# momentum-ssl report", "", *runs_section(params, collected, learned), "",
             "## Claims", "", CLAIMS_PROSE, "", *claims_section(verdicts, test_set or {}), "",
             *_per_seed_section(params, collected), "",
             *_stability_section(collected, blocks), "",
             "## Findings", "",
             "Health telemetry: a run is noted when the std of its L2-normalised projector "
             "output stayed below `pretrain.collapse_std` / sqrt(d) at every logged step of an "
             "epoch (a collapse; a finding, not a failure).", ""]
    lines += findings or ["No run's projector output collapsed for a whole epoch."]
    if kept:  # pretrain.keep_every: only then, so the default's report keeps its bytes
        lines += ["", *epochs_section(params, kept)]
    elif kept is not None:
        lines += ["", "## Accuracy against epochs", "",
                  "The weights were kept every "
                  f"{params.pretrain.keep_every} epoch{'s' * (params.pretrain.keep_every != 1)} "
                  "(results/runs/<run>/s<seed>/epochs/), but this pipeline did not score them: "
                  "the root dvc.yaml has no evaluate-epochs stage. Run the profile as a study "
                  "(`python -m momentum_ssl study NAME`, then `dvc repro` there) or with "
                  "Snakemake, which score them, or score a run with `python -m momentum_ssl "
                  "evaluate-epochs --run RUN --seed SEED` and report again."]
    lines += ["", "## Plots", "", "![loss and gap](plots/curves.png)", "",
              "![gradient stability](plots/stability.png)", "",
              "![accuracy by momentum variant](plots/accuracy.png)", "",
              "![claims](plots/claims.png)", "",
              "![kNN monitor against steps, student and teacher](plots/knn.png)", "",
              "![health: output std and effective ranks](plots/health.png)", ""]
    if sweeps(params):
        lines += ["![each sweep: kNN against the swept value](plots/sweeps.png)", ""]
    if kept:
        lines += ["![kNN of the kept checkpoints against epochs](plots/epochs.png)", ""]
    return "\n".join(lines)


def _margin(v: Verdict) -> str:
    return f"{100 * v.claim.margin:g} points" if in_points(v) else f"{v.claim.margin:g}"


def model_blocks(params: Params) -> list[str]:
    """The blocks the gradient telemetry names for the profile's backbone: the stem, one per
    stage (a ResNet's four, a ViT's transformer blocks), the projector. The backbone is built
    to count them (the image side does not change the count: one patch is enough); this runs
    only when no run logged its telemetry."""
    from ..core.models.backbones import build_backbone

    model = params.model
    backbone = build_backbone(model.backbone, model.width, model.cifar_stem,
                              patch_size=model.patch_size,
                              image_size=model.image_size or model.patch_size)
    return block_names(backbone.num_stages)


def _judged(params: Params, root: Path) -> tuple[dict, list, dict[str, Learning], list[Verdict],
                                                list[str]]:
    """What the report and the claims document are made of: every run's values, the collapses
    found, whether each run learned, the claims' verdicts (with the seeds an inconclusive one
    needs) and the gradient telemetry's blocks (as logged, else the model's)."""
    collected = collect(params, root)
    found = collapses(params, root)
    collapsed: dict[str, tuple[int, ...]] = {}
    for name, seed, *_ in found:
        collapsed[name] = (*collapsed.get(name, ()), seed)
    values = {n: e["seeds"] for n, e in collected.items() if e["run"] is not None}
    learned = learning(values, collected["random"]["seeds"], collapsed)
    verdicts = plan(judge(params.claims, values,
                          unfit={run: item.reason for run, item in learned.items()
                                 if item.reason}))
    logged = next((list(st) for entry in collected.values()
                   if (st := next(iter(entry["seeds"].values())).get("stability"))), None)
    return collected, found, learned, verdicts, logged or model_blocks(params)


def _machines(params: Params, root: Path) -> list[dict]:
    return collect_provenance([(cell(run.name, seed), run_dir(cell(run.name, seed), root))
                               for run in params.grid for seed in params.seeds])


def report(params: Params, root: Path = RESULTS) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    collected, found, learned, verdicts, blocks = _judged(params, root)
    test_set = test_set_errors(params, collected, verdicts, root)
    plots = root / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    plot_curves(params, root, plots / "curves.png")
    plot_stability(params, root, plots / "stability.png", blocks)
    plot_accuracy(collected, plots / "accuracy.png")
    plot_claims(verdicts, plots / "claims.png")
    plot_knn(params, root, plots / "knn.png")
    plot_health(params, root, plots / "health.png")
    if sweeps(params):  # only then: a grid without sweeps draws the plots it always drew
        plot_sweeps(params, collected, plots / "sweeps.png")
    kept = None
    if params.pretrain.keep_every is not None:  # likewise
        from ..analysis.plots import plot_epochs

        if any(epochs_file(cell(run.name, seed), root).is_file()
               for run in params.grid for seed in params.seeds):
            kept = collect_epochs(params, root)  # one missing among others: named, an error
            plot_epochs(kept, plots / "epochs.png")
        else:  # a pipeline without evaluate-epochs stages (the root dvc.yaml): said, not fatal
            kept = {}
    machines = _machines(params, root)
    summary = _summary_json(collected, verdicts, learned, test_set)
    summary["provenance"] = machines
    atomic_write_text(root / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")
    write_headline(root)  # results/metrics.json: what `dvc metrics diff` compares
    out = root / "report.md"
    text = render(params, collected, verdicts, blocks, collapse_findings(params, root, found),
                  learned, test_set, kept)
    atomic_write_text(out, text.rstrip("\n") + "\n\n" + "\n".join(render_provenance(machines))
                      + "\n")
    return out


def _duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def claims_doc(params: Params, notes: dict[str, str], out: Path, root: Path = RESULTS,
               wall_s: float | None = None, today: str | None = None) -> Path:
    """The claims study's document (docs/CLAIMS.md, ``make claims``) from a finished study's
    results: each claim's verdict (the primary row: interval, raw and Holm p, seeds needed),
    ``notes[claim name]`` on what this scale can say about the paper's claim, the forest plot,
    the runs with their gain over random-init, every claim row, and where the runs ran. The
    verdicts are the report's own (the same function judges both); the plots are copied
    beside ``out``, in ``<out stem>/``."""
    import datetime
    import shutil

    missing = [c.name for c in params.claims if c.name not in notes]
    unknown = [name for name in notes if name not in {c.name for c in params.claims}]
    if missing or unknown:
        raise ConfigError("the claims notes must name each claim of the profile once: "
                          + "; ".join(([f"missing {missing}"] if missing else [])
                                      + ([f"unknown {unknown}"] if unknown else []))
                          + " (claim names as in src/momentum_ssl/config/claims.yaml)")
    collected, _, learned, verdicts, _ = _judged(params, root)
    test_set = test_set_errors(params, collected, verdicts, root)
    plots = root / "plots"
    if not (plots / "claims.png").is_file():
        raise MissingArtifact(f"{plots}/claims.png is missing: the study's report has not run; "
                              "run `dvc repro` in the study's folder first")
    images = out.parent / out.stem.lower()
    images.mkdir(parents=True, exist_ok=True)
    for name in ("claims.png", "accuracy.png", "knn.png"):
        shutil.copyfile(plots / name, images / name)
    machines = _machines(params, root)
    where = machines[0]["where"] if len(machines) == 1 else None
    today = today or datetime.date.today().isoformat()
    primary = [v for v in verdicts if v.primary]
    counts = {status: sum(v.status == status for v in primary)
              for status in ("supported", "contradicted", "inconclusive", NOT_TESTABLE,
                             NOT_TESTED)}
    seeds = list(params.seeds)
    lines = [
        "# The claims study", "",
        "Every claim of the papers behind momentum-ssl (src/momentum_ssl/config/claims.yaml), "
        f"judged on runs that a 2-core machine trains: {_scale_line(params)}, "
        f"{len(seeds)} seeds ({seeds[0]}-{seeds[-1]}). The profile "
        "is params/claims.yaml (its comments say why each run is in the grid and why the "
        "others are not), its recipes params/recipes/cpu.yaml (what was tried, with each "
        "measurement). How a claim is judged: docs/STATISTICS.md.", "",
        f"Generated by `make claims` on {today}"
        + (f"; the `make claims` that finished it took {_duration(wall_s)}" if wall_s else "")
        + (f"; trained on {where.get('cpu', '?')} ({where.get('cpu_isa_available', '?')} "
           f"available, kernels pinned to {where.get('cpu_isa_used', '?')}, "
           f"{where.get('threads', '?')} threads)" if where else
           f"; trained on {len(machines)} machines or settings (the table at the end)")
        + ". Do not edit it: rerun `make claims`, which reruns only what changed (DVC caches "
        "every stage in studies/claims) and writes this file again.", "",
        f"**{len(primary)} claims: {counts['supported']} supported, {counts['contradicted']} "
        f"contradicted, {counts['inconclusive']} inconclusive, {counts[NOT_TESTABLE]} not "
        f"testable (a run not shown to have learned), {counts[NOT_TESTED]} not tested (their runs are not "
        "in the grid).** Verdicts are decided on Holm-adjusted p-values across the tested "
        "claims; an inconclusive one states the seeds it would need.", "",
        "## Verdicts", "",
        "| claim | verdict | runs (a vs b) | a - b [CI] | test set ± (95%) | p raw / Holm "
        "| seeds needed (80% power) |", "|---|---|---|---|---|---|---|"]
    for i, v in enumerate(verdicts):
        if v.primary:
            lines.append(f"| {v.claim.name} | **{v.status}** | {v.label} | {_difference(v)} | "
                         f"{_test_set_cell(v, test_set.get(i))} | {_p(v)} | {_needed(v)} |")
    lines += ["", "![the claims' differences with their intervals](" + images.name + "/claims.png)", "",
              "## What this scale can say", ""]
    for v in primary:
        note = f" ({v.note})" if v.status in (NOT_TESTABLE, NOT_TESTED) and v.note else ""
        lines += [f"- **{v.claim.name}** ({v.claim.source}): **{v.status}**{note}. "
                  f"{' '.join(notes[v.claim.name].split())}"]
    lines += ["", "## Runs", "", *runs_section(params, collected, learned), "",
              "![kNN by momentum variant](" + images.name + "/accuracy.png)", "",
              "![kNN monitor against steps](" + images.name + "/knn.png)", "",
              "## Every claim row", "", CLAIMS_PROSE, "",
              *claims_section(verdicts, test_set), ""]
    lines += render_provenance(machines)
    atomic_write_text(out, "\n".join(lines).rstrip("\n") + "\n")
    return out
