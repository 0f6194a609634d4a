"""ImageNet-100 as the papers define it: CMC's 100 classes, linked out of an ImageNet root.

Tian, Krishnan and Isola ("Contrastive Multiview Coding", 2020) chose 100 of ILSVRC-2012's 1,000
classes; solo-learn and the momentum papers report ImageNet-100 on the same list, shipped here
as ``imagenet100.txt`` with its source. :func:`build_subset` makes ``out/train/<wnid>`` and
``out/val/<wnid>`` symbolic links to the root's class folders (no image is copied), which the
``imagefolder`` dataset reads like any class-per-folder tree.

The folder appears whole or not at all: it is built under a hidden ``.NAME.partial-PID`` name
beside ``out`` and renamed when complete, and ``subset.json`` inside it records what it links
to. A rebuild replaces a folder this command made; any other folder at ``out`` is left alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from importlib.resources import files
from pathlib import Path

from .datasets import DataError, DatasetNotFound

CLASSES_FILE = "imagenet100.txt"
SPLITS = ("train", "val")  # ILSVRC-2012's folder names; imagefolder reads val/ as the test split
MARKER = "subset.json"
_WNID = re.compile(r"n\d{8}")


def imagenet100_classes() -> tuple[str, ...]:
    """The 100 WordNet IDs, in the order of CMC's file (comment lines skipped)."""
    text = files(__package__).joinpath(CLASSES_FILE).read_text()
    ids = tuple(line.strip() for line in text.splitlines()
                if line.strip() and not line.startswith("#"))
    bad = [i for i in ids if not _WNID.fullmatch(i)]
    if len(ids) != 100 or len(set(ids)) != 100 or bad:
        raise DataError(f"{CLASSES_FILE} is damaged: {len(set(ids))} unique IDs of {len(ids)}, "
                        f"{len(bad)} not of the form n########; restore it from git")
    return ids


def _missing(folder: Path, classes: tuple[str, ...]) -> list[str]:
    """The classes with no non-empty folder under ``folder``."""
    def present(wnid: str) -> bool:
        try:
            with os.scandir(folder / wnid) as entries:
                return any(True for _ in entries)
        except (FileNotFoundError, NotADirectoryError):
            return False
    return [wnid for wnid in classes if not present(wnid)]


def check_root(root: Path, classes: tuple[str, ...]) -> None:
    """Raise :class:`DatasetNotFound` unless ``root/{train,val}/<wnid>`` holds every class."""
    fix = ("point --root at an ILSVRC-2012 folder holding train/ and val/ with one folder per "
           "WordNet ID (val/ sorted into class folders, as PyTorch's ImageNet example expects)")
    if not root.is_dir():
        raise DatasetNotFound(f"ImageNet root {root} not found; {fix}")
    for split in SPLITS:
        missing = _missing(root / split, classes)
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise DatasetNotFound(
                f"{root / split} lacks {len(missing)} of the {len(classes)} ImageNet-100 classes "
                f"(missing or empty: {shown}); {fix}")


def _remove_links(folder: Path) -> None:
    """Remove a folder this module built: its links go, never what they point at."""
    shutil.rmtree(folder)  # rmtree unlinks symbolic links without following them


def build_subset(root: str | Path, out: str | Path,
                 classes: tuple[str, ...] | None = None) -> Path:
    """Link ``classes`` (default: ImageNet-100's) of the ImageNet ``root`` into ``out``."""
    classes = imagenet100_classes() if classes is None else classes
    root, out = Path(root).absolute(), Path(out)
    check_root(root, classes)  # before anything is written
    if out.exists() and not (out / MARKER).is_file():
        raise DataError(f"{out} exists and was not built by this command (no {MARKER}); "
                        "remove it or choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.partial-*"):  # left by a killed build
        _remove_links(stale)
    tmp = out.with_name(f".{out.name}.partial-{os.getpid()}")
    try:
        for split in SPLITS:
            (tmp / split).mkdir(parents=True)
            for wnid in classes:
                os.symlink(root / split / wnid, tmp / split / wnid, target_is_directory=True)
        record = {"subset": "imagenet100", "classes": list(classes), "root": str(root),
                  "source": "https://github.com/HobbitLong/CMC/blob/"
                            "7b227be0b10ef4e526c72af07664f5079ed9ee09/imagenet100.txt"}
        (tmp / MARKER).write_text(json.dumps(record, indent=1) + "\n")
        if out.exists():  # one we built: swap, so that `out` is never half of either
            old = out.with_name(f".{out.name}.partial-{os.getpid()}-old")
            os.replace(out, old)
            os.replace(tmp, out)
            _remove_links(old)
        else:
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            _remove_links(tmp)
    return out
