"""What the benchmarks share: the machine line, aligned tables, and a child process timed with
its peak memory.

    print(machine())                       # "2 CPUs (AMD EPYC, x86_64), 23.4 GiB, no GPU"
    print_table(["run", "s"], [["a", 1.0]], ["{}", "{:.2f}"])
    done = measured([sys.executable, "-c", "..."])  # seconds, peak RSS of the process tree
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _cpu_model() -> str:
    """The CPU's model name and a separator, as the runs' provenance records it."""
    from momentum_ssl.plumbing.compute import cpu_model

    return cpu_model() + ", "


def machine() -> str:
    """CPUs, memory and GPU of this machine, for the header line of every table."""
    import psutil

    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f"GPU {torch.cuda.get_device_name()}"
    except ImportError:
        pass
    return (f"{os.cpu_count()} CPUs ({_cpu_model()}{platform.machine()}), "
            f"{psutil.virtual_memory().total / 2**30:.1f} GiB, {gpu}")


def print_table(headers: list[str], rows: list[list], formats: list[str]) -> None:
    """Left-aligned first column, the others right-aligned, widths from the contents; a str
    cell is printed as it is, any other through its column's format."""
    cells = [headers] + [[v if isinstance(v, str) else f.format(v)
                          for f, v in zip(formats, row)] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(r, widths))).rstrip())


@dataclass
class Measured:
    seconds: float
    returncode: int
    peak_tree_bytes: int  # the most RSS the command and its descendants held at once
    peak_process_bytes: int  # the most RSS one process among them held
    lines: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, line)


def measured(command: list[str], cwd: Path | None = None, env: dict | None = None,
             echo: bool = False, interval: float = 0.2) -> Measured:
    """Run ``command``, keeping its merged stdout/stderr lines with their arrival times, and
    sampling the RSS of its process tree every ``interval`` seconds (a shorter peak can be
    missed)."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, bufsize=1)
    peak = [0, 0]  # tree, single process
    done = threading.Event()

    def sample() -> None:
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            sizes = []
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        sizes.append(p.memory_info().rss)
                    except psutil.NoSuchProcess:
                        pass
            except psutil.NoSuchProcess:
                break
            peak[0], peak[1] = max(peak[0], sum(sizes)), max([peak[1], *sizes])
            done.wait(interval)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = []
    for line in proc.stdout:
        lines.append((time.perf_counter() - start, line.rstrip("\n")))
        if echo:
            print(line, end="", flush=True)
    proc.wait()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return Measured(seconds, proc.returncode, peak[0], peak[1], lines)
