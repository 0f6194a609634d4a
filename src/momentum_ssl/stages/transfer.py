"""Downstream transfer of frozen features: the ``transfer`` stage.

    transfer(params, "byol-full")   # results/transfer/byol-full.json

The frozen student backbone of a grid run (or a baseline: raw pixels, the random-init
backbone) encodes each target in ``params.transfer.targets``: its images resized to
``augment.size`` and normalised with the pretraining data's mean and std, as the evaluation
images of the pretraining data are. The features go through the same probes as in ``probe``
(analysis/classifiers.py). Targets are read from their sources directly (no ``.beton``): they
are small in the embedded default (scikit-learn's digits) and read once.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..analysis.classifiers import headline_knn, probe_features
from ..config import DataConfig, Params, params_hash, to_dict, with_seed
from ..core.encoders import (Encoders, SingleEncoder, encode, encode_device, encoder_for,
                             single_channel)
from ..data.augment import EvalTransform
from ..data.convert import read_meta, stratified_subset
from ..data.datasets import SPLITS, load_source
from ..data.loaders import beton_folder
from ..plumbing.artifacts import atomic_write_text
from ..plumbing.paths import cell, transfer_file


def target_batches(target: DataConfig, split: str, transform: EvalTransform, batch_size: int,
                   seed: int):
    """(images, labels) batches of one split of a target, resized and normalised."""
    source = load_source(target, split)
    per_class = target.train_per_class if split == "train" else target.test_per_class
    indices = stratified_subset(source.labels, len(source.classes), per_class, seed)
    for start in range(0, len(indices), batch_size):
        images, labels = [], []
        for i in indices[start:start + batch_size]:
            image, label = source[i]
            # one image at a time: sources such as ImageFolder have images of many sizes
            images.append(transform(torch.from_numpy(image).permute(2, 0, 1)[None]))
            labels.append(label)
        yield torch.cat(images), torch.tensor(labels)


def transfer(params: Params, name: str, out: Path | None = None,
             seed: int | None = None) -> Path:
    params = with_seed(params, seed)
    out = Path(out) if out is not None else transfer_file(cell(name, seed))
    encoder, stamp = encoder_for(params, name, seed)
    if isinstance(encoder, Encoders):  # a grid run: the frozen student only
        encoder = SingleEncoder(encoder.learner.backbone)
    meta = read_meta(beton_folder(params))
    transform = EvalTransform(params.augment.size, meta["mean"], meta["std"])
    device = encode_device(params, name)
    results: dict = {}
    for target in params.transfer.targets:
        split_features = {}
        for split in SPLITS:
            columns, labels = encode(
                encoder, target_batches(target, split, transform, params.loader.batch_size,
                                        params.seed),
                device, f"transfer {cell(name, seed)} -> {target.dataset}/{split}")
            if name == "raw":
                columns = {"raw": single_channel(columns["raw"])}
            split_features[split] = (columns, labels)
        (train, train_y), (test, test_y) = split_features["train"], split_features["test"]
        results[target.dataset] = {"num_train": int(len(train_y)), "num_test": int(len(test_y)),
                                   **probe_features(train, train_y, test, test_y, params.probe,
                                                    params.seed)}
    metrics = {"name": name, "seed": seed, "knn_headline": headline_knn(params.probe),
               "params_hash": params_hash({"encoder": stamp, "probe": to_dict(params.probe),
                                           "transfer": to_dict(params.transfer),
                                           "seed": params.seed}),
               "targets": results}
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    return out


__all__ = ["target_batches", "transfer"]
