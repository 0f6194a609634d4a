"""The numbers DVC compares: ``results/metrics.json``, written by the ``report`` stage.

    write_headline(Path("results"))   # reads results/summary.json, writes results/metrics.json

``results/summary.json`` keeps everything (std, half-width, level, n and each seed's value of
every metric, and each claim's source, note and per-seed differences); declared as a DVC metric
it made ``dvc metrics diff`` print over a thousand lines. ``metrics.json`` keeps what a
researcher compares between two revisions or experiments, so that the diff fits a screen:

    {run:      {"knn" | "logistic" | "linear" | "transfer_<target>" | "gain":
                    {"mean", "low", "high"}},
     "claims": {"<a> vs <b>": {metric: {"mean", "low", "high"}}},
     "where":  {"cpu", "cpu_isa_used", "portable", "threads", "torch", "machines", ...}}

Per grid run and baseline, the student's headline kNN (summary.json's ``knn_student``), its
logistic top-1 (``logistic_student``), its SGD linear evaluation's top-1 (``linear_student``,
where the profile sets ``linear: true``) and every transfer target, each as its mean over seeds
and the bounds of its 95% interval, and (``gain``) its kNN over the random-init backbone at the same
seed; then each tested claim's effect; then where the first of the runs' machines ran them and
how many distinct machines (or settings) there were (docs/REPRODUCIBILITY.md). The names are short because
``dvc exp show`` prints each as a column header: ``byol-full-res.knn.mean`` fits beside a param
in 80 columns. A baseline with one value (raw pixels) has a mean and no interval. A
claim's effect is its mean paired difference a - b over seeds (for a ``rising`` claim, the
final blocks' mean minus the earlier blocks', named ``<metric>_rise``); claims that were not
tested have no effect and no entry. Two claims contrasting the same runs on the same metric have
the same effect, so they share one entry. Keys that this module does not know are ignored, so
summary.json can grow without changing this file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from ..plumbing.artifacts import atomic_write_text, read_json

# and every transfer_<target>; linear_student only where a profile runs the linear evaluation
HEADLINE = {"knn_student": "knn", "logistic_student": "logistic", "linear_student": "linear"}
BOUNDS = {"mean": "mean", "ci_low": "low", "ci_high": "high"}
WHERE = ("cpu", "cpu_isa_used", "portable", "threads", "torch", "gpu", "precision",
         "cuda_deterministic")


def _bounds(entry: Mapping) -> dict[str, float]:
    return {short: entry[k] for k, short in BOUNDS.items()
            if isinstance(entry.get(k), (int, float))}


def _short(metric: str) -> str | None:
    """The metrics file's name for a summary metric; None for one it leaves out."""
    return HEADLINE.get(metric, metric if metric.startswith("transfer_") else None)


def headline(summary: Mapping) -> dict:
    """The metrics file's content from summary.json's (see the module docstring)."""
    out: dict[str, dict] = {}
    for name, metrics in summary.get("runs", {}).items():
        chosen = {_short(m): _bounds(metrics[m]) for m in sorted(metrics)
                  if _short(m) and isinstance(metrics[m], Mapping)}
        out[name] = {m: b for m, b in chosen.items() if b}
    claims: dict[str, dict] = {}
    for item in summary.get("claims", []):
        effect = item.get("difference")
        if not isinstance(effect, Mapping) or not _bounds(effect):
            continue  # not tested: nothing to compare
        label = f"{item['a']} vs {item['b']}" if item.get("b") else item["a"]
        metric = item["metric"] + ("_rise" if item.get("kind") == "rising" else "")
        claims.setdefault(label, {})[metric] = _bounds(effect)
    for name, item in summary.get("learning", {}).items():
        gain = item.get("knn_over_random") if isinstance(item, Mapping) else None
        if name in out and isinstance(gain, Mapping) and _bounds(gain):
            out[name]["gain"] = _bounds(gain)  # kNN over the random-init backbone
    out["claims"] = claims  # no run is named "claims": a name is <method>-<scope>[-res]
    machines = summary.get("provenance") or []
    if machines:  # where the runs were made: a diff between two machines says they differ
        where = machines[0].get("where", {})
        out["where"] = {k: where[k] for k in WHERE if k in where}
        out["where"]["machines"] = len(machines)
    return out


def write_headline(root: Path) -> Path:
    """``root/metrics.json`` from ``root/summary.json``; returns its path."""
    summary = read_json(root / "summary.json", "python -m momentum_ssl report",
                        ("runs", "claims"))
    out = root / "metrics.json"
    atomic_write_text(out, json.dumps(headline(summary), indent=2, sort_keys=True) + "\n")
    return out


__all__ = ["BOUNDS", "HEADLINE", "headline", "write_headline"]
