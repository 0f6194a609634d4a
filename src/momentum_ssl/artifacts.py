"""Atomic artifact writes: a reader sees the old file or the complete new one, never a part.

A file is written under a hidden ``.NAME.partial-PID`` name beside its destination and renamed
over it when complete; a killed writer leaves only that clearly named leftover.
"""

from __future__ import annotations

import os
from pathlib import Path


class MissingArtifact(FileNotFoundError):
    """An input a stage needs is absent; the message names the stage that writes it."""


class CorruptArtifact(ValueError):
    """An input exists but cannot be used; the message says how to rebuild it."""


def partial_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def commit(tmp: Path, path: Path) -> None:
    """Flush ``tmp`` to disk and rename it to ``path``."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    tmp = partial_path(path)
    try:
        tmp.write_text(text)
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_torch_save(obj, path: Path) -> None:
    import torch

    tmp = partial_path(path)
    try:
        torch.save(obj, tmp)
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
