"""Frozen features to Parquet: the ``extract`` stage.

    extract(params, "byol-full")   # results/features/byol-full/{train,test}.parquet
    extract(params, "raw")         # baseline: the normalised pixels
    extract(params, "random")      # baseline: a random-init backbone (seeded)
    columns, labels, meta = read_features(path)

Each file holds one split in file order of its ``.beton``: an int64 ``label`` column and one
fixed-size float32 list column per encoder: ``student`` (the pooled backbone output), and
``teacher`` when the run's teacher owns backbone blocks (scopes full and last_k; a
projector-only teacher shares the student's backbone, so its features are the student's). The
schema metadata key ``momentum_ssl`` holds JSON with the params hash of what produced the file,
the name, split, dataset and feature size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .artifacts import commit, corrupt, load_torch, partial_path, read_parquet
from .config import ConfigError, Params, params_hash, run_params, to_dict, with_seed
from .data.convert import beton_path, read_meta
from .data.datasets import SPLITS
from .data.loaders import beton_folder, eval_batches
from .learner import Learner, build_learner
from .models.backbones import build_backbone
from .paths import BASELINES, cell, features_dir, run_dir, seed_flag

META_KEY = b"momentum_ssl"


def load_learner(params: Params, name: str, model_path: Path | None = None,
                 seed: int | None = None) -> Learner:
    """The trained learner of grid run ``name`` (trained with ``seed``) from its model.pt, in
    eval mode."""
    runs = {run.name: run for run in params.grid}
    run = runs[name]
    params = with_seed(params, seed)
    model_path = model_path or run_dir(cell(name, seed)) / "model.pt"
    rewrite = f"python -m momentum_ssl pretrain --run {name}" + seed_flag(seed)
    state = load_torch(model_path, rewrite, ("learner", "params_hash"))
    if state["params_hash"] != params_hash(run_params(params, run)):
        raise ConfigError(f"{model_path} was trained with other params than {name} has now; "
                          f"rerun {rewrite} (or dvc repro)")
    learner = build_learner(params, run)
    try:
        learner.load_state_dict(state["learner"])
    except (RuntimeError, TypeError, AttributeError) as err:  # garbled, or another code version
        raise corrupt(model_path, "holds weights that do not fit the run's learner "
                      f"({' '.join(str(err).split())[:160]})", rewrite) from None
    return learner.eval()


class Encoders(torch.nn.Module):
    """Pooled features of the student and, when it owns backbone blocks, of the teacher."""

    def __init__(self, learner: Learner):
        super().__init__()
        self.learner = learner
        teacher = learner.teacher
        self.names = ["student"] + (["teacher"] if teacher is not None and teacher.blocks
                                    else [])

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        teacher = self.learner.teacher
        if len(self.names) == 1:
            return {"student": self.learner.backbone(x)}
        y, entry = self.learner.backbone.forward_tap(x, teacher.start)
        y_t, _ = teacher(x if teacher.start == 0 else entry)
        return {"student": y, "teacher": y_t}


class PixelEncoder(torch.nn.Module):
    names = ["raw"]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"raw": x.flatten(1)}


class SingleEncoder(torch.nn.Module):
    names = ["student"]

    def __init__(self, backbone: torch.nn.Module):
        super().__init__()
        self.backbone = backbone

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"student": self.backbone(x)}


def random_backbone(params: Params) -> torch.nn.Module:
    torch.manual_seed(params.seed)
    return build_backbone(params.model.backbone, params.model.width,
                          params.model.cifar_stem).eval()


def encoder_for(params: Params, name: str,
                seed: int | None = None) -> tuple[torch.nn.Module, str]:
    """The encoder of a grid run or baseline (trained or drawn with ``seed``), and the params
    hash it stands for."""
    params = with_seed(params, seed)
    if name == "raw":
        return PixelEncoder(), params_hash({"baseline": "raw", "data": to_dict(params.data),
                                            "size": params.augment.size})
    if name == "random":
        return SingleEncoder(random_backbone(params)), params_hash(
            {"baseline": "random", "seed": params.seed, "data": to_dict(params.data),
             "size": params.augment.size, "model": to_dict(params.model)})
    runs = {run.name: run for run in params.grid}
    if name not in runs:
        raise ConfigError(f"{name!r} is neither a grid run nor a baseline; choose one of "
                          + ", ".join([*runs, *BASELINES]))
    return (Encoders(load_learner(params, name, seed=seed)),
            params_hash(run_params(params, runs[name])))


@torch.no_grad()
def encode(encoder: torch.nn.Module, batches, device: torch.device,
           desc: str = "encode") -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Run ``encoder`` over ``(images, labels)`` batches; float32 features per name, labels."""
    encoder = encoder.to(device).eval()
    parts: dict[str, list[np.ndarray]] = {name: [] for name in encoder.names}
    labels = []
    for x, y in tqdm(batches, desc=desc, leave=False):
        for name, f in encoder(x.to(device)).items():
            parts[name].append(f.float().cpu().numpy().copy())
        # a copy: FFCV hands out the same label buffer again a few batches later
        labels.append(y.cpu().numpy().reshape(-1).copy())
    return ({name: np.concatenate(p) for name, p in parts.items()},
            np.concatenate(labels).astype(np.int64))


def single_channel(pixels: np.ndarray, channels: int = 3) -> np.ndarray:
    """Grayscale images stored as RGB: keep one channel (cosine and probes see the same data
    at a third of the size)."""
    per = pixels.reshape(len(pixels), channels, -1)
    if all(np.array_equal(per[:, 0], per[:, c]) for c in range(1, channels)):
        return np.ascontiguousarray(per[:, 0])
    return pixels


def write_features(path: Path, columns: dict[str, np.ndarray], labels: np.ndarray,
                   meta: dict, extra: dict[str, np.ndarray] | None = None) -> None:
    """One split as Parquet, atomically (temp name, then rename): ``label``, the 2-D
    ``columns`` as fixed-size float32 lists, then ``extra`` 1-D integer columns (predictions)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, names = [pa.array(labels, pa.int64())], ["label"]
    for name, values in (extra or {}).items():
        arrays.append(pa.array(np.asarray(values), pa.int64()))
        names.append(name)
    for name, values in columns.items():
        values = np.ascontiguousarray(values, dtype=np.float32)
        arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)),
                                                        values.shape[1]))
        names.append(name)
    table = pa.Table.from_arrays(arrays, names=names)
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        pq.write_table(table, tmp, compression="zstd")
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_features(path: str | Path, rewrite: str = "python -m momentum_ssl extract"
                  ) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """(features per column, labels, metadata) of one Parquet file written by
    :func:`write_features`; ``rewrite`` is the command that writes it (for errors)."""
    path = Path(path)
    table, meta = read_parquet(path, rewrite, META_KEY)
    if not table.column_names or table.column_names[0] != "label" or \
            table.num_rows != meta.get("num_samples", table.num_rows):
        raise corrupt(path, "is not a complete features file (label column or row count "
                      "differs from its metadata)", rewrite)
    labels = table.column("label").to_numpy()
    columns = {}
    for name in table.column_names[1:]:
        column = table.column(name).combine_chunks()
        if not hasattr(column, "flatten"):  # an integer column (predictions)
            columns[name] = column.to_numpy()
            continue
        columns[name] = column.flatten().to_numpy().reshape(len(column), -1)
    return columns, labels, meta


def needs_accelerator(name: str) -> bool:
    """Whether encoding grid run or baseline ``name`` uses a GPU when there is one: raw pixels
    do not (and claim none: their rules ask for gpu=0)."""
    return name != "raw"


def encode_device(params: Params, name: str) -> torch.device:
    """Where extract and transfer encode ``name``."""
    from .train import resolve_device

    if not needs_accelerator(name):
        return torch.device("cpu")
    return resolve_device(params.pretrain.device)


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
