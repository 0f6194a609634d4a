"""The ``evaluate-epochs`` stage: the kNN probe of each kept checkpoint of a grid run.

    evaluate_epochs(params, "byol-full", seed=0)   # results/epochs/byol-full/s0.json

With ``pretrain.keep_every`` a run keeps its learner's weights after every N epochs and after
the last (results/runs/<run>/s<seed>/epochs/e0005.pt, stages/pretrain.py). Each is scored as
the probe stage scores a finished run's features: the student's (and, when the teacher owns
backbone blocks, the teacher's) pooled features of the whole train and test splits, encoded
un-augmented (core/encoders.py), then the weighted and majority kNN at every k of
``probe.knn_k`` (analysis/classifiers.py). The kNN alone: the logistic probe's fits would
cost minutes per checkpoint. The report plots the headline kNN against epochs per run, with
its interval over seeds, from these files.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..analysis.classifiers import headline_knn, knn_probe
from ..config import ConfigError, Params, params_hash, resolve, run_params, with_seed
from ..core.encoders import Encoders, encode, encode_device, load_learner
from ..data.datasets import SPLITS
from ..data.loaders import eval_batches
from ..plumbing.artifacts import atomic_write_text, require
from ..plumbing.checkpoint import KEPT, kept_epochs, kept_path
from ..plumbing.paths import RESULTS, cell, epochs_file, run_dir, seed_flag


def evaluate_epochs(params: Params, name: str, seed: int | None = None,
                    out: Path | None = None, root: Path = RESULTS) -> Path:
    """Score every kept checkpoint of grid run ``name`` (trained with ``seed``); writes
    :func:`epochs_file`. A missing checkpoint is named with the command that writes it."""
    runs = {run.name: run for run in params.grid}
    run = runs[name]
    seeded = with_seed(params, seed)
    cfg = resolve(seeded, run).pretrain
    if cfg.keep_every is None:
        raise ConfigError("pretrain.keep_every is null: there are no kept checkpoints to "
                          "evaluate; set it (epochs between kept weights) and rerun pretrain")
    label = cell(name, seed)
    folder = run_dir(label, root) / KEPT
    rewrite = f"python -m momentum_ssl pretrain --run {name}" + seed_flag(seed)
    epochs = kept_epochs(cfg.keep_every, cfg.epochs)
    paths = [require(kept_path(folder, epoch), rewrite) for epoch in epochs]  # all, first
    device = encode_device(seeded, name)
    records = []
    for epoch, path in zip(epochs, paths):
        encoder = Encoders(load_learner(params, name, path, seed))
        features = {split: encode(encoder, eval_batches(seeded, split, device), device,
                                  f"{label} epoch {epoch}/{split}") for split in SPLITS}
        (train, train_y), (test, test_y) = features["train"], features["test"]
        record = {"epoch": epoch}
        for encoder_name in train:
            record[encoder_name] = knn_probe(train[encoder_name], train_y, test[encoder_name],
                                             test_y, seeded.probe.knn_k,
                                             seeded.probe.temperature)
        records.append(record)
        print(f"{label} epoch {epoch}: kNN " + ", ".join(
            f"{e} {r[headline_knn(seeded.probe)]:.4f}" for e, r in record.items()
            if e != "epoch"), flush=True)
    stamp = params_hash(run_params(seeded, run))
    metrics = {"name": name, "seed": seed, "knn_headline": headline_knn(seeded.probe),
               "params_hash": params_hash({"plan": stamp, "knn_k": list(seeded.probe.knn_k),
                                           "temperature": seeded.probe.temperature}),
               "plan_hash": stamp, "keep_every": cfg.keep_every, "epochs": records}
    out = Path(out) if out is not None else epochs_file(label, root)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return out
