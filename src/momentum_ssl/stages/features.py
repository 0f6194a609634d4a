"""Frozen features to Parquet: the ``extract`` stage.

    extract(params, "byol-full")   # results/features/byol-full/{train,test}.parquet
    extract(params, "raw")         # baseline: the normalised pixels
    extract(params, "random")      # baseline: a random-init backbone (seeded)

Each file holds one split in file order of its ``.beton``: an int64 ``label`` column and one
fixed-size float32 list column per encoder: ``student`` (the pooled backbone output), and
``teacher`` when the run's teacher owns backbone blocks (scopes full and last_k; a
projector-only teacher shares the student's backbone, so its features are the student's). The
encoders are core/encoders.py's; the file's format and its reader (``read_features``),
plumbing/results.py's.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Params
from ..core.encoders import encode, encode_device, encoder_for, single_channel
from ..data.convert import beton_path, read_meta
from ..data.datasets import SPLITS
from ..data.loaders import beton_folder, eval_batches
from ..plumbing.paths import cell, features_dir
from ..plumbing.results import write_features


def extract(params: Params, name: str, out: Path | None = None,
            seed: int | None = None) -> Path:
    """Features of grid run or baseline ``name`` (trained with ``seed``) for the train and test
    splits."""
    out = Path(out) if out is not None else features_dir(cell(name, seed))
    encoder, stamp = encoder_for(params, name, seed)
    folder = beton_folder(params)
    meta = read_meta(folder)
    for split in SPLITS:  # check every input before the first file is written
        beton_path(folder, split, meta)
    device = encode_device(params, name)
    for split in SPLITS:
        columns, labels = encode(encoder, eval_batches(params, split, device), device,
                                 f"extract {cell(name, seed)}/{split}")
        if name == "raw":
            columns = {"raw": single_channel(columns["raw"])}
        dims = {c: int(v.shape[1]) for c, v in columns.items()}
        write_features(out / f"{split}.parquet", columns, labels, {
            "params_hash": stamp, "name": cell(name, seed), "split": split,
            "dataset": params.data.dataset, "dims": dims, "num_samples": int(len(labels))})
    return out
