"""Is FFCV's .beton writer deterministic? Time and byte-identity of repeated writes.

    python bench/writer.py [--params params.yaml] [--images 20000] [--repeats 3]

Writes the first ``--images`` training images of the params' dataset ``--repeats`` times with
ffcv's own ``DatasetWriter`` at 1 and 2 worker processes, and with momentum-ssl's in-process
``SerialWriter`` (what the convert stage uses), and prints seconds per write and how many
distinct files (sha256) the repeats produced: 1 means byte-identical every time.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import tempfile
import time
from pathlib import Path

from common import machine, print_table


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--images", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import numpy as np
    from ffcv.writer import DatasetWriter

    from momentum_ssl.config import load_params
    from momentum_ssl.data.convert import SerialWriter, _fields, _page_size
    from momentum_ssl.data.datasets import load_source

    params = load_params(args.params)
    source = load_source(params.data, "train")
    indices = np.arange(min(args.images, len(source)))

    def ffcv_writer(workers):
        def write(path):
            writer = DatasetWriter(str(path), _fields(params.data, source),
                                   page_size=_page_size(source), num_workers=workers)
            with contextlib.redirect_stderr(io.StringIO()):  # its progress bar
                writer.from_indexed_dataset(source, indices=indices, chunksize=100)
        return write

    def serial(path):
        SerialWriter(path, _fields(params.data, source), _page_size(source)).write(source, indices)

    writers = [("ffcv DatasetWriter", 1, ffcv_writer(1)), ("ffcv DatasetWriter", 2,
                                                           ffcv_writer(2)),
               ("momentum-ssl SerialWriter", 1, serial)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        serial(Path(tmp) / "warmup.beton")  # numba compiles on first use
        for name, workers, write in writers:
            hashes, seconds = set(), []
            for r in range(args.repeats):
                path = Path(tmp) / f"{name.split()[-1]}-{workers}-{r}.beton"
                start = time.perf_counter()
                write(path)
                seconds.append(time.perf_counter() - start)
                hashes.add(sha256(path))
                path.unlink()
            rows.append([name, workers, sum(seconds) / len(seconds), len(hashes)])
    print(f"{len(indices)} {params.data.dataset} train images, {args.repeats} writes each; "
          f"{machine()}")
    print_table(["writer", "workers", "s/write", "distinct files"], rows,
                ["{}", "{}", "{:.2f}", "{}"])
    print(f"ratio ffcv DatasetWriter (1 worker) / SerialWriter: {rows[0][2] / rows[-1][2]:.2f}x "
          "the time")

if __name__ == "__main__":
    main()
