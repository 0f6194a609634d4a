"""This machine's numerical fingerprint, compared with the committed reference (fingerprint.json).

    python -m momentum_ssl fingerprint            # digests, each checked against the reference
    python -m momentum_ssl fingerprint --json     # the digests alone, as JSON

Two kinds of digest, each a SHA-256 prefix of float32 bytes:

- ``kernel/*``: canonical computations, one per kind of kernel that training runs (a convolution,
  a GEMM, BatchNorm, a small conv net forward, its gradients, three SGD steps). Inputs come from
  integer arithmetic and weights from torch's seeded CPU generator, so they are bitwise the same
  everywhere; the computations are those of the cross-machine kernel probe the project's portable
  mode was chosen with (docs/REPRODUCIBILITY.md), so their digests compare with its figures.
- ``default/*``: the embedded default's own stages on a slice of its data (the same dataset,
  model, augmentations, method and optimizer; 32 training and 16 test images a class, one epoch):
  conversion, the random-init backbone's features, pretraining of one grid run (weights and the
  kNN monitor), its features, the kNN and logistic probes' predictions, transfer.

Equal digests mean this machine computes the embedded default's bits. The reference records the
machines it was checked on; tests/test_fingerprint.py fails on a machine whose digests differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import yaml

REFERENCE = Path(__file__).with_name("fingerprint.json")
SLICE = {"train_per_class": 32, "test_per_class": 16}  # images a class: 320 / 160
RUN = "simclr-full-res"  # the default's run that exercises the most: an EMA teacher, residual loss


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _tensor_digest(tensor) -> str:
    return _sha(tensor.detach().cpu().contiguous().numpy().tobytes())


def kernels() -> dict[str, str]:
    """Digests of the canonical float32 computations (the kernel probe's, mode ``portable``)."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def ints(n: int, mod: int = 251) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.int64)
        return ((i * 2654435761) % mod).to(torch.float32) / mod - 0.5

    out = {}
    x = ints(128 * 28 * 28).reshape(128, 1, 28, 28)
    rng = torch.get_rng_state()
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32))
    torch.set_rng_state(rng)
    out["init"] = _tensor_digest(torch.cat([p.flatten() for p in net.parameters()]))
    conv = F.conv2d(x, net[0].weight, padding=1)
    out["conv_fwd"] = _tensor_digest(conv)
    a, b = ints(512 * 384).reshape(512, 384), ints(384 * 256, 241).reshape(384, 256)
    out["gemm"] = _tensor_digest(a @ b)
    out["bn_train_fwd"] = _tensor_digest(net[1](conv))
    net.eval()
    out["net_eval_fwd"] = _tensor_digest(net(x))
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    for step in range(3):
        z = F.normalize(net(x), dim=1)
        loss = -(z[:64] * z[64:]).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        if step == 0:
            out["grads_step0"] = _tensor_digest(
                torch.cat([p.grad.flatten() for p in net.parameters()]))
        opt.step()
    out["weights_after_3_steps"] = _tensor_digest(
        torch.cat([p.flatten() for p in net.parameters()]))
    return {f"kernel/{name}": value for name, value in out.items()}


def slice_params(data: dict[str, Any], workdir: Path) -> dict[str, Any]:
    """The default's params on its slice: ``SLICE`` images a class, one epoch, one seed, one run,
    a kNN monitor that fits the slice; everything else as the file says."""
    data = json.loads(json.dumps(data))  # a deep copy
    if RUN not in data.get("grid", {}):
        from .config import ConfigError

        raise ConfigError(f"the fingerprint trains the embedded default's grid run {RUN!r}, "
                          "which this params file lacks; run it with the repository's "
                          "params.yaml")
    data["data"].update(SLICE, out_dir=str(workdir / "beton"))
    data["pretrain"].update(epochs=1, monitor_train=160, monitor_test=80, eval_every=0)
    data["seeds"] = [0]
    data["grid"] = {RUN: data["grid"][RUN]}
    return data


@contextmanager
def _inside(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _features_digest(folder: Path) -> str:
    from .plumbing.results import read_features

    digest = hashlib.sha256()
    for split in ("train", "test"):
        columns, labels = read_features(folder / f"{split}.parquet")[:2]
        for name in sorted(columns):
            digest.update(name.encode() + columns[name].tobytes())
        digest.update(labels.tobytes())
    return digest.hexdigest()[:16]


def _predictions_digest(path: Path) -> str:
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    digest = hashlib.sha256()
    for name in sorted(table.column_names):
        digest.update(name.encode() + table.column(name).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def _json_numbers_digest(path: Path, drop: tuple[str, ...] = ()) -> str:
    """A JSON file's content, keys in ``drop`` left out (wall-clock times, hashes that name the
    temporary folder)."""
    def keep(value):
        if isinstance(value, dict):
            return {k: keep(v) for k, v in value.items() if k not in drop}
        if isinstance(value, list):
            return [keep(v) for v in value]
        return value
    return _sha(json.dumps(keep(json.loads(path.read_text())), sort_keys=True).encode())


def default_slice(params_file: Path) -> dict[str, str]:
    """Digests of the default's stages on its slice, in a temporary folder."""
    import torch

    from .config import params_from_dict
    from .data.convert import convert
    from .plumbing.compute import state_digest
    from .plumbing.paths import cell, features_dir, predictions_file, transfer_file
    from .stages.features import extract
    from .stages.pretrain import pretrain
    from .stages.probes import probe
    from .stages.transfer import transfer

    data = yaml.safe_load(params_file.read_text())
    out: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="momentum-ssl-fingerprint-") as tmp:
        workdir = Path(tmp)
        params = params_from_dict(slice_params(data, workdir))
        with _inside(workdir):
            folder = convert(params)
            for split in ("train", "test"):
                out[f"default/convert_{split}"] = _sha((folder / f"{split}.beton").read_bytes())
            for name, seed in (("random", 0), (RUN, 0)):
                if name == RUN:
                    run_folder = pretrain(params, params.grid[0], seed=seed)
                    model = torch.load(run_folder / "model.pt", map_location="cpu",
                                       weights_only=False)
                    out["default/pretrain_weights"] = state_digest(model["learner"])[:16]
                    out["default/pretrain_monitor"] = _json_numbers_digest(
                        run_folder / "dvclive" / "metrics.json", drop=("time",))
                key = "random" if name == "random" else "run"
                extract(params, name, seed=seed)
                out[f"default/{key}_features"] = _features_digest(
                    features_dir(cell(name, seed)))
                probe(params, name, seed=seed)
                out[f"default/{key}_predictions"] = _predictions_digest(
                    predictions_file(cell(name, seed)))
                transfer(params, name, seed=seed)
                out[f"default/{key}_transfer"] = _json_numbers_digest(
                    transfer_file(cell(name, seed)), drop=("params_hash",))  # names tmp
    return out


def fingerprint(params_file: Path) -> dict[str, str]:
    return {**kernels(), **default_slice(params_file)}


def load_reference(path: Path = REFERENCE) -> dict[str, Any]:
    return json.loads(path.read_text())


def compare(ours: dict[str, str], reference: dict[str, Any]) -> list[str]:
    """The digests that differ from the reference's (or that either side lacks)."""
    theirs = reference["digests"]
    return sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
