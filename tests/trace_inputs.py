"""Run ``python -m momentum_ssl ARGS`` and record every file it opens for reading.

    python tests/trace_inputs.py LOG ARGS...

An audit hook (PEP 578) on ``open`` sees every file the stage opens through Python, io.open,
os.open and numpy's memmap alike, in every thread; LOG gets one absolute path a line (files
opened for reading only, each once). tests/test_inputs.py compares them with the stage's
declared inputs.
"""

import os
import runpy
import sys

WRITE = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT


def main() -> None:
    log, args = sys.argv[1], sys.argv[2:]
    read: dict[str, None] = {}

    def hook(event: str, info: tuple) -> None:
        if event != "open" or not info or not isinstance(info[0], (str, bytes, os.PathLike)):
            return
        path, mode = os.fsdecode(info[0]), info[1] if len(info) > 1 else None
        flags = info[2] if len(info) > 2 else 0
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(
            (flags or 0) & WRITE)
        if not writes:
            read.setdefault(os.path.abspath(path))

    def save() -> None:
        with open(log, "w") as out:  # after the hook's last use: not recorded as a read
            out.writelines(f"{path}\n" for path in read)

    import atexit

    atexit.register(save)
    sys.addaudithook(hook)
    sys.argv = ["momentum_ssl", *args]
    runpy.run_module("momentum_ssl", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
