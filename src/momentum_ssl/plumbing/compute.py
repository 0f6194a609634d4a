"""How the kernels run, and where: the portable CPU mode, the thread count, CUDA determinism, and
the provenance every run records (docs/REPRODUCIBILITY.md).

PyTorch, oneDNN, MKL, OpenBLAS, numpy and numba each pick their kernels by the CPU's instruction
set at run time, and an AVX-512 kernel sums in another order than an AVX2 one: the same seed then
trains other weights on another machine. The portable mode pins every one of them to AVX2 (with
FMA: any x86-64 CPU since 2013, Intel Haswell and AMD Zen on), and MKL to its conditional
numerical reproducibility branch, so that two x86-64 machines give the same bits. The variables
are read once, when each library loads, so they are set by :func:`apply_environment` before torch
is imported: ``python -m momentum_ssl`` does so from the params file on its command line
(``__main__.py``), in every stage and under both drivers (DVC and Snakemake run that command).

This module imports nothing heavy at load time (yaml only): it runs before torch.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any, Mapping

# One instruction set for every library that dispatches on the CPU. Measured on what changes a
# training step's bits: ATen's vectorised kernels and oneDNN's convolutions (the step itself),
# MKL's GEMM (linear layers: only the STRICT form of its CNR branch makes an Intel and an AMD CPU
# sum in the same order; measured by the kernel probe of docs/REPRODUCIBILITY.md, and checked on
# each machine by `python -m momentum_ssl fingerprint`),
# OpenBLAS and numpy's SIMD loops (the probes' fits and reductions), numba (FFCV's decoders and
# augmentations are compiled for the host CPU unless told a CPU name).
PORTABLE_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_CBWR": "AVX2,STRICT",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    "OPENBLAS_CORETYPE": "Haswell",
    "NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR",
    "NUMBA_CPU_NAME": "haswell",
}
# cuBLAS' reproducible workspace (NVIDIA's documented setting for deterministic GEMMs).
CUBLAS_WORKSPACE = ":4096:8"


def is_x86_64() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64")


def environment(compute: Mapping[str, Any]) -> dict[str, str]:
    """The variables a ``compute`` section sets: the portable pins (x86-64 only: on other CPUs
    there is nothing to pin), the thread count of every pool, CUDA's workspace."""
    env: dict[str, str] = {}
    if compute.get("portable", True) and is_x86_64():
        env.update(PORTABLE_ENV)
    threads = compute.get("threads")
    if threads:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(threads)
    if compute.get("deterministic", False):
        env["CUBLAS_WORKSPACE_CONFIG"] = CUBLAS_WORKSPACE
    return env


def _params_path(argv: list[str]) -> Path:
    for i, arg in enumerate(argv):
        if arg == "--params" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--params="):
            return Path(arg.split("=", 1)[1])
    return Path("params.yaml")


def apply_environment(argv: list[str]) -> dict[str, str]:
    """Set the variables of the ``compute`` section of the params file named in ``argv`` (or
    ./params.yaml); the mode wins over whatever the environment said. Returns what it set.
    A missing or unreadable file sets nothing: the stage itself then reports it."""
    import yaml

    path = _params_path(argv)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    compute = data.get("compute") if isinstance(data, dict) else None
    env = environment(compute if isinstance(compute, dict) else {})
    os.environ.update(env)
    return env


def configure(compute: Any, device: str = "cpu") -> None:
    """What can only be set through torch: the intra-op thread count and, when the stage will
    use CUDA (``device``: pretrain.device, auto | cpu | cuda), either deterministic algorithms
    (cuDNN without its benchmark search; an op without a deterministic kernel then raises,
    naming itself) or cuDNN's benchmark search (each convolution shape timed once, its fastest
    kernel kept: what the GPU benchmarks measure). With ``auto`` this starts CUDA: claim GPUs
    first (cli.py)."""
    import torch

    global _THREADS
    _THREADS = compute.threads
    restore_threads()
    if device == "cpu":
        return
    cuda = device == "cuda" or torch.cuda.is_available()
    if cuda and compute.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    elif cuda:
        torch.backends.cudnn.benchmark = True


_THREADS: int | None = None  # the pinned thread count of this process (configure)


def restore_threads() -> None:
    """Put back the pinned thread count: importing FFCV sets torch's threads to 1 and each FFCV
    ``Loader`` to its ``num_workers``, so the loaders call this after making one."""
    if _THREADS:
        import torch

        torch.set_num_threads(_THREADS)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa_available() -> str:
    """The widest vector instruction set this CPU offers (what native kernels would use)."""
    try:
        flags = set()
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        return "unknown"
    if "avx512f" in flags:
        return "AVX512"
    if "avx2" in flags:
        return "AVX2"
    return "unknown" if not flags else "below AVX2"


def _nvidia_driver() -> str | None:
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
    except OSError:
        return None
    for word in text.split():
        if word[:1].isdigit() and word.count(".") >= 1:
            return word
    return None


def provenance(compute: Any, device: Any = None, precision: str | None = None) -> dict:
    """Where a run ran and how its kernels were chosen, as plain data (results and the report
    carry it, so a difference between two machines explains itself). ``precision``
    (plumbing/precision.py) is recorded on CUDA: the CPU trains in fp32 only."""
    import numpy
    import torch

    out = {
        "cpu": cpu_model(),
        "cpu_isa_available": cpu_isa_available(),
        "cpu_isa_used": torch.backends.cpu.get_cpu_capability(),
        "portable": bool(compute.portable) and is_x86_64(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "python": platform.python_version(),
        "device": "cpu",
    }
    if device is not None and getattr(device, "type", "cpu") == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        out.update({"device": "cuda", "gpu": torch.cuda.get_device_name(index),
                    "cuda": torch.version.cuda, "driver": _nvidia_driver(),
                    "cuda_deterministic": bool(compute.deterministic)})
        if precision is not None:
            out["precision"] = precision
    return out


def collect_provenance(cells: list[tuple[str, Path]]) -> list[dict]:
    """The distinct machines (and kernel settings) that trained ``cells`` (label, run folder),
    each with the cells it trained; a run trained before provenance was recorded counts as
    ``unknown``."""
    import json

    machines: list[dict] = []
    for label, folder in cells:
        path = folder / "provenance.json"
        try:
            where = json.loads(path.read_text())
        except (OSError, ValueError):
            where = {"cpu": "unknown"}
        for machine in machines:
            if machine["where"] == where:
                machine["cells"].append(label)
                break
        else:
            machines.append({"where": where, "cells": [label]})
    return machines


def render_provenance(machines: list[dict]) -> list[str]:
    """The report's "Where it ran" section, as Markdown lines."""
    lines = ["## Where it ran", ""]
    if len(machines) > 1:
        lines += [f"These runs were trained on {len(machines)} different machines or settings. "
                  "With `compute.portable` on and the same `compute.threads`, x86-64 machines "
                  "give the same bits; otherwise compare them only statistically "
                  "(docs/REPRODUCIBILITY.md).", ""]
    lines += ["| CPU | ISA available / used | portable | threads | device | torch | runs |",
              "|---|---|---|---|---|---|---|"]
    for machine in machines:
        w = machine["where"]
        device = w.get("device", "?")
        if device == "cuda":
            device = (f"{w.get('gpu')} (CUDA {w.get('cuda')}, driver {w.get('driver')}, "
                      f"{w.get('precision', 'bf16')}, "
                      f"deterministic {'on' if w.get('cuda_deterministic') else 'off'})")
        lines.append(f"| {w.get('cpu', '?')} | {w.get('cpu_isa_available', '?')} / "
                     f"{w.get('cpu_isa_used', '?')} | {'on' if w.get('portable') else 'off'} | "
                     f"{w.get('threads', '?')} | {device} | {w.get('torch', '?')} | "
                     f"{len(machine['cells'])} |")
    return lines


def state_digest(state: Mapping[str, Any]) -> str:
    """sha256 over a state dict's names, dtypes, shapes and bytes, in name order: equal digests,
    bit-identical weights."""
    import hashlib

    import torch

    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
