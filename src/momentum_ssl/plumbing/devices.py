"""Which device a stage runs on: :func:`resolve_device` turns ``pretrain.device`` into one, and
GPU slots: a GPU job claims free device indices by itself.

Snakemake's ``gpu`` resource only counts jobs; it does not say which GPU a job should use. So a
GPU stage calls :func:`claim` before CUDA starts: it takes an exclusive ``flock`` on one lock
file per device (``<lock dir>/gpu<index>.lock``) for each device it needs, and sets
``CUDA_VISIBLE_DEVICES`` to the claimed indices. The kernel drops a ``flock`` when its process
ends, however it ends (SIGKILL included), so a killed job never leaves a stale claim; a lock
file left on disk is just an unlocked file.

Which devices exist: ``MOMENTUM_SSL_GPUS`` (comma-separated indices; empty for none, and what
the tests use to fake devices), else ``nvidia-smi``'s list, else none: the job runs on the CPU.
When ``CUDA_VISIBLE_DEVICES`` is already set (SLURM's ``--gpus``, or a user's choice), that
assignment is kept and nothing is claimed. The indices are nvidia-smi's, which count GPUs in PCI
bus order; CUDA's own default order is fastest first, so a claim also sets
``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (on a machine with mixed GPUs, index 1 would otherwise be
another device to CUDA than the one locked).

CUDA reads both variables once, when it starts (the first ``torch.cuda`` call that asks about
devices, ``torch.cuda.is_available()`` included): the stages claim before anything touches
CUDA (cli.py), then :func:`cuda_problem` says whether the devices can be used.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

_held: list = []  # open lock files of this process: the claim lives as long as they do


def lock_dir() -> Path:
    default = Path(tempfile.gettempdir()) / f"momentum-ssl-gpus-{os.getuid()}"
    return Path(os.environ.get("MOMENTUM_SSL_GPU_LOCKS", default))


def devices() -> list[str]:
    """Indices of the GPUs on this machine (see the module docstring)."""
    listed = os.environ.get("MOMENTUM_SSL_GPUS")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip()]
    return nvidia_smi_devices()


def nvidia_smi_devices() -> list[str]:
    """The GPUs ``nvidia-smi`` lists (the hardware and its driver), by index; [] without it."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run([smi, "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _try_lock(index: str):
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    f = open(folder / f"gpu{index}.lock", "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        return None
    f.seek(0)
    f.truncate()
    f.write(f"{os.getpid()}\n")  # who holds it, for a person looking; the flock is the claim
    f.flush()
    return f


def claim(count: int = 1, wait_s: float = 3600.0, poll_s: float = 1.0) -> list[str] | None:
    """Claim ``count`` free GPUs for this process and point ``CUDA_VISIBLE_DEVICES`` at them.

    Returns the claimed indices; the kept ``CUDA_VISIBLE_DEVICES`` list when it was already set;
    or None when the machine has no GPU (run on the CPU). Waits up to ``wait_s`` for devices to
    come free (two schedulers sharing one machine), then raises ``TimeoutError``."""
    preset = os.environ.get("CUDA_VISIBLE_DEVICES")
    if preset is not None:  # set by SLURM, a user, or this process's (or a parent's) claim
        os.environ.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # SLURM counts as nvidia-smi
        return [d for d in preset.split(",") if d] or None
    available = devices()
    if not available:
        return None
    os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # the indices locked are nvidia-smi's
    if count > len(available):
        raise RuntimeError(f"the job asks for {count} GPUs but this machine has "
                           f"{len(available)} ({', '.join(available)})")
    deadline = time.monotonic() + wait_s
    while True:
        got = []
        for index in available:
            f = _try_lock(index)
            if f is not None:
                got.append((index, f))
                if len(got) == count:
                    break
        if len(got) == count:
            _held.extend(f for _, f in got)
            claimed = [index for index, _ in got]
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(claimed)
            return claimed
        for _, f in got:  # all or nothing: never sit on part of a claim while waiting
            f.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {count} free GPU(s) among {', '.join(available)} after "
                               f"{wait_s:.0f} s; locks in {lock_dir()}")
        time.sleep(poll_s)


def cuda_problem(choice: str, gpus: list[str] | None) -> str | None:
    """Why a stage that asked for CUDA (``pretrain.device``: ``choice``) cannot use it, after
    :func:`claim` returned ``gpus``; None when it can, or when ``auto`` may fall back to the CPU.

    ``cuda`` without a CUDA device is a problem; so is ``auto`` with GPUs that nvidia-smi lists
    but that CUDA cannot start (a driver older than the CUDA of torch's wheel, say): a claimed
    GPU never trains a run on the CPU in silence. Without nvidia-smi's GPUs (a CPU machine,
    or devices named only by ``MOMENTUM_SSL_GPUS``, the tests' stand-ins) ``auto`` is the
    CPU. Calls ``torch.cuda.is_available()``: CUDA starts here, so claim first."""
    if choice == "cpu":
        return None
    import torch

    if torch.cuda.is_available():
        return None
    why = (f"torch {torch.__version__} (CUDA {torch.version.cuda}) cannot start CUDA"
           if torch.version.cuda else f"torch {torch.__version__} is a CPU-only build")
    if choice == "cuda":
        return (f"pretrain.device is cuda but no CUDA device is usable ({why}; GPUs "
                f"{','.join(gpus) if gpus else 'none found'}): fix the driver or torch, or "
                "set pretrain.device: cpu")
    if gpus and nvidia_smi_devices():
        return (f"GPUs {','.join(gpus)} were claimed but {why}: check nvidia-smi's driver "
                "against the wheel's CUDA, or set pretrain.device: cpu to train on the CPU")
    return None


def resolve_device(choice: str):
    """The torch.device ``pretrain.device`` names (auto: CUDA when visible, else the CPU)."""
    import torch  # here: claim() runs before CUDA starts and needs no torch

    if choice == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("pretrain.device is cuda but no CUDA device is visible; use auto or "
                           "cpu")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)
