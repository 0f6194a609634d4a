from __future__ import annotations

import copy
import gzip
from pathlib import Path

import numpy as np
import pytest
import yaml

from momentum_ssl.config import Params, params_from_dict

REPO = Path(__file__).resolve().parents[1]


def repo_params_dict() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def make_params(tmp_path: Path, **sections) -> Params:
    """The repo's params.yaml with ``data.out_dir`` under ``tmp_path`` and sections updated."""
    data = copy.deepcopy(repo_params_dict())
    data["data"]["out_dir"] = str(tmp_path / "beton")
    for name, values in sections.items():
        if isinstance(values, dict) and name != "grid":
            data[name].update(values)
        else:
            data[name] = values
    return params_from_dict(data)


# A profile small enough for every stage in seconds: digits, 160 train / 40 test images.
TINY = {
    "data": {"dataset": "digits", "train_per_class": 16, "test_per_class": 4},
    "augment": {"size": 8},
    "loader": {"batch_size": 32, "num_workers": 1},
    "model": {"width": 8, "cifar_stem": True},  # 8px images: keep the resolution
    "pretrain": {"epochs": 2, "warmup_epochs": 1, "log_every": 1, "lr": 0.1, "device": "cpu"},
    "methods": {"mocov2": {"proj_hidden": 16, "proj_out": 8, "queue_size": 64},
                "byol": {"proj_hidden": 16, "proj_out": 8, "pred_hidden": 16},
                "simclr": {"proj_hidden": 16, "proj_out": 8}},
    "probe": {"knn_k": [5, 20], "logistic_c": [0.1, 1.0], "max_iter": 50},
    "transfer": {"targets": [{"dataset": "digits", "train_per_class": 10,
                              "test_per_class": 5}]},
    "seeds": [0],  # one training seed: the tests that need more name them
    "grid": {"byol-full": {"method": "byol", "scope": "full"},
             "byol-projector": {"method": "byol", "scope": "projector"},
             "simclr-none": {"method": "simclr", "scope": "none"}},
}


def tiny_copy(profile: Path, tmp_path: Path) -> dict:
    """A profile of params/ on the tiny data: its recipes file read in, TINY's sections over
    its own (its grid, seeds and methods kept), data under ``tmp_path``, seeds 0 and 1."""
    data = yaml.safe_load(profile.read_text())
    data["recipes"] = yaml.safe_load((profile.parent / data["recipes"]).read_text())
    for name, values in copy.deepcopy(TINY).items():
        if name in ("grid", "seeds", "methods"):
            continue
        data[name] = {**data[name], **values} if isinstance(values, dict) else values
    data["data"]["out_dir"] = str(tmp_path / "beton")
    data["seeds"] = [0, 1]
    return data


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """The tiny profile converted, with the working directory (results/) in ``tmp_path``."""
    from momentum_ssl.data.convert import convert

    monkeypatch.chdir(tmp_path)
    params = make_params(tmp_path, **TINY)
    convert(params)
    return params


# Heads small enough for a forward and backward in milliseconds (tiny_method).
TINY_HEADS = {"proj_hidden": 32, "proj_out": 16, "pred_hidden": 32, "queue_size": 64}


def tiny_method(name: str, **overrides):
    """Method ``name`` with TINY_HEADS (the keys its settings have) and ``overrides``."""
    import dataclasses

    from momentum_ssl.core.methods import METHODS, build_method

    cls = METHODS[name]
    names = {f.name for f in dataclasses.fields(cls.Config)}
    kwargs = {k: v for k, v in {**TINY_HEADS, **overrides}.items() if k in names}
    return build_method(name, cls.Config(**kwargs))


def tiny_learner(name="byol", scope="full", k=2, residual_weight=0.0, **overrides):
    """A seeded learner on an 8-channel resnet_tiny (tests/core/test_learner.py,
    tests/stages/test_pretrain.py)."""
    import torch

    from momentum_ssl.core.learner import Learner
    from momentum_ssl.core.models.backbones import resnet_tiny

    torch.manual_seed(0)
    return Learner(resnet_tiny(8), tiny_method(name, **overrides), scope, k, residual_weight)


def blobs(n, dim=12, classes=4, seed=0):
    """``n`` float32 features of ``dim`` dimensions around ``classes`` Gaussian centres, and
    their labels: what the probes separate (tests/analysis/test_classifiers.py)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.normal(scale=1.5, size=(n, dim))).astype(np.float32), y


def write_idx(path: Path, array: np.ndarray, gz: bool = True) -> Path:
    """An IDX file of unsigned bytes, as in LeCun's MNIST format."""
    header = (0x0800 + array.ndim).to_bytes(4, "big")
    header += b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    raw = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return path


@pytest.fixture
def fake_fashion(tmp_path: Path) -> Path:
    """A Fashion-MNIST-shaped root: 60 train / 30 test random 28x28 images, 10 classes."""
    root = tmp_path / "fashion"
    root.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 60), ("t10k", 30)):
        write_idx(root / f"{split}-images-idx3-ubyte.gz",
                  rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(root / f"{split}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return root


def read_beton(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every image (N, H, W, 3) and label of a fixed-size .beton, in file order, undecorated."""
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption

    loader = Loader(str(path), batch_size=64, num_workers=1, order=OrderOption.SEQUENTIAL,
                    drop_last=False, pipelines={"image": [SimpleRGBImageDecoder()],
                                                "label": [IntDecoder()]})
    images, labels = zip(*[(np.array(x), np.array(y)) for x, y in loader])
    return np.concatenate(images), np.concatenate(labels).reshape(-1)


def kill_at_step(monkeypatch, step: int):
    """Make pretraining stop at ``step`` as a killed process would (KeyboardInterrupt, raised
    from the tau schedule each step calls); returns the function that lets it run again."""
    import momentum_ssl.stages.pretrain as train

    real = train.cosine_tau

    def dying(at, total, *tau):
        if at == step:
            raise KeyboardInterrupt
        return real(at, total, *tau)

    monkeypatch.setattr(train, "cosine_tau", dying)
    return lambda: monkeypatch.setattr(train, "cosine_tau", real)
