"""The ``probe`` stage: kNN and logistic probes of a grid run's or baseline's features.

    probe(params, "byol-full")   # results/probes/byol-full.json, results/predictions/...

The probes are analysis/classifiers.py's
(:func:`~momentum_ssl.analysis.classifiers.probe_features`): every encoder of a features file is
probed (student and teacher); ``gap`` is student minus teacher. The metrics JSON holds the
scores and the hashes of the features and params behind them; the predictions file, every
probe's prediction of each test image.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..analysis.classifiers import headline_knn, probe_features
from ..config import Params, params_hash, to_dict, with_seed
from ..plumbing.artifacts import CorruptArtifact, atomic_write_text
from ..plumbing.paths import cell, features_dir, predictions_file, probe_file, seed_flag
from ..plumbing.results import read_features, write_features


def probe(params: Params, name: str, features: Path | None = None, out: Path | None = None,
          predictions_out: Path | None = None, seed: int | None = None) -> Path:
    """Probe the features of grid run or baseline ``name`` (trained with ``seed``); writes the
    metrics JSON and every probe's test predictions (Parquet)."""
    params, label = with_seed(params, seed), cell(name, seed)
    folder = Path(features) if features is not None else features_dir(label)
    out = Path(out) if out is not None else probe_file(label)
    predictions_out = (Path(predictions_out) if predictions_out is not None
                       else predictions_file(label))
    rewrite = f"python -m momentum_ssl extract --run {name}" + seed_flag(seed)
    train, train_y, train_meta = read_features(folder / "train.parquet", rewrite)
    test, test_y, test_meta = read_features(folder / "test.parquet", rewrite)
    if train_meta["params_hash"] != test_meta["params_hash"]:
        raise CorruptArtifact(f"{folder}: train.parquet and test.parquet come from different "
                              f"params; rerun {rewrite}")
    predictions: dict = {}
    scores = probe_features(train, train_y, test, test_y, params.probe, params.seed, predictions)
    metrics = {"name": name, "seed": seed, "knn_headline": headline_knn(params.probe),
               "features_hash": train_meta["params_hash"],
               "params_hash": params_hash({"features": train_meta["params_hash"],
                                           "probe": to_dict(params.probe), "seed": params.seed}),
               **scores}
    write_features(predictions_out, {}, test_y,
                   {"name": label, "params_hash": metrics["params_hash"]}, extra=predictions)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return out
