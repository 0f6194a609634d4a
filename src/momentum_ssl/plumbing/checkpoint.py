"""Pretraining checkpoints that survive a damaged file.

    save_checkpoint(state, out / "checkpoint.pt")   # the one it replaces: checkpoint.prev.pt
    state = load_checkpoint(out / "checkpoint.pt", stamp, "byol-full")   # or None: from scratch
    remove_checkpoints(out / "checkpoint.pt")        # a finished run

The linear evaluation (stages/linear.py) keeps its head's checkpoint the same way.

Each epoch's checkpoint is written atomically, but a full disk, a cut copy or a bad sector can
still leave it truncated or garbled. So the previous epoch's checkpoint is kept beside it: a
damaged ``checkpoint.pt`` is set aside (renamed ``checkpoint.pt.corrupt-<UTC time>``, kept for
inspection, with a message) and the run resumes from ``checkpoint.prev.pt``, or from scratch
when that is damaged or absent too. A resumed epoch replays the same batches (loaders.py), so
resuming one epoch earlier only costs that epoch's time.

Under DDP every rank reads the checkpoint, but only rank 0 sets a damaged one aside, and the
others read after it has (:func:`load_checkpoint_on_every_rank`): no rank reads a file while it
is renamed, and all resume from the same one.

**Kept checkpoints** (``pretrain.keep_every``): the learner's weights after every N epochs and
after the last, model.pt's format with the epoch added, kept as an output of the run::

    keep_weights(state, out, epoch)    # out/epochs.partial/e0005.pt, written atomically
    start_kept(out, resumed_epoch)     # a fresh start clears them, a resumed run keeps its own
    publish_kept(out)                  # the finished run: epochs.partial/ becomes epochs/

They are written into ``epochs.partial/`` while the run trains, which neither driver declares,
so a stopped run's kept weights survive the rerun (DVC and Snakemake delete a stage's declared
outputs before they run it), as checkpoint.pt does; the finished run renames the folder to
``epochs/``, the declared output.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from .artifacts import CorruptArtifact, atomic_torch_save, load_torch
from .distributed import barrier, rank

KEYS = ("learner", "optimizer", "stability", "epoch", "step", "elapsed_s", "torch_rng",
        "params_hash")


def previous_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` to ``path`` atomically, keeping the checkpoint it replaces as the
    previous one (at every moment one of the two holds a complete state)."""
    if path.is_file():
        os.replace(path, previous_path(path))
    atomic_torch_save(state, path)


def load_checkpoint(path: Path, stamp: str, run: str, set_aside: bool = True,
                    keys: tuple[str, ...] = KEYS, command: str | None = None) -> dict | None:
    """The newest undamaged checkpoint of ``path`` and its previous one, if it was written for
    run params hashing to ``stamp``; None to start from scratch. Damaged files are renamed out
    of the way when ``set_aside`` (under DDP only rank 0 renames; the others skip them).
    ``keys``: what a checkpoint must hold (pretraining's by default); ``command``: the one that
    rewrites it, named when it is damaged (pretraining's for ``run`` by default)."""
    command = command or f"python -m momentum_ssl pretrain --run {run}"
    for candidate in (path, previous_path(path)):
        if not candidate.is_file():
            continue
        try:
            state = load_torch(candidate, command, keys)
        except CorruptArtifact as err:
            fallback = ("resuming from the previous epoch's checkpoint"
                        if candidate == path and previous_path(path).is_file()
                        else f"starting {run} from scratch")
            where = ""
            if set_aside:
                aside = candidate.with_name(
                    f"{candidate.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
                os.replace(candidate, aside)
                where = f" set aside as {aside};"
            print(f"{err.problem}:{where} {fallback}", flush=True)
            continue
        if state["params_hash"] != stamp:
            print(f"{candidate} is from other run params; starting {run} from scratch")
            return None
        return state
    return None


def load_checkpoint_on_every_rank(path: Path, stamp: str, run: str) -> dict | None:
    """:func:`load_checkpoint` on each rank of a process group: rank 0 first, setting damaged
    files aside, then, after a barrier, the others, from the files it left. In one process,
    :func:`load_checkpoint`."""
    first = rank() == 0
    state = load_checkpoint(path, stamp, run, set_aside=True) if first else None
    barrier()
    return state if first else load_checkpoint(path, stamp, run, set_aside=False)


def remove_checkpoints(path: Path) -> None:
    """A finished run: a later rerun (say, after a code change) must not resume."""
    path.unlink(missing_ok=True)
    previous_path(path).unlink(missing_ok=True)


KEPT, STAGING = "epochs", "epochs.partial"  # the declared output; the folder written meanwhile


def kept_path(folder: Path, epoch: int) -> Path:
    return folder / f"e{epoch:04d}.pt"


def kept_epochs(every: int | None, epochs: int) -> list[int]:
    """The epochs (1-based) whose weights a run keeps: every ``every``-th and the last; none
    when ``every`` is None."""
    if every is None:
        return []
    return sorted({*range(every, epochs + 1, every), epochs})


def is_due(epoch: int, every: int, epochs: int) -> bool:
    """Whether something written every ``every`` epochs and after the last is due after
    ``epoch`` (1-based) of ``epochs``."""
    return epoch % every == 0 or epoch == epochs


def start_kept(out: Path, resumed_epoch: int) -> None:
    """Before the first epoch: a fresh start (``resumed_epoch`` 0) clears the kept weights a
    stopped run of other params left; a resumed run keeps those of the epochs it resumes after
    and drops later ones (written after its checkpoint: it writes them again)."""
    staging = out / STAGING
    if resumed_epoch == 0:
        shutil.rmtree(staging, ignore_errors=True)
        return
    for path in staging.glob("e*.pt"):
        if int(path.stem[1:]) > resumed_epoch:
            path.unlink()


def keep_weights(state: dict, out: Path, epoch: int) -> Path:
    path = kept_path(out / STAGING, epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(state, path)
    return path


def publish_kept(out: Path) -> Path:
    """The finished run's kept weights as its ``epochs/`` folder (replacing an older one)."""
    final = out / KEPT
    if final.exists():
        shutil.rmtree(final)
    os.replace(out / STAGING, final)
    return final
