"""The result files one stage writes and another reads, and their readers.

    write_features(path, columns, labels, meta)      # extract (and probe's predictions)
    columns, labels, meta = read_features(path)      # probe
    transfer_summary(results/transfer/<run>.json)    # {target: headline kNN}: report, the CLI

A features file holds one split in file order of its ``.beton``: an int64 ``label`` column and
one fixed-size float32 list column per encoder (``student``, ``teacher``; ``raw`` for the
pixels). The schema metadata key ``momentum_ssl`` holds JSON with the params hash of what
produced the file, the name, split, dataset and feature size.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .artifacts import commit, corrupt, partial_path, read_json, read_parquet

META_KEY = b"momentum_ssl"


def write_features(path: Path, columns: dict[str, np.ndarray], labels: np.ndarray,
                   meta: dict, extra: dict[str, np.ndarray] | None = None) -> None:
    """One split as Parquet, atomically (temp name, then rename): ``label``, the 2-D
    ``columns`` as fixed-size float32 lists, then ``extra`` 1-D integer columns (predictions)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    arrays, names = [pa.array(labels, pa.int64())], ["label"]
    for name, values in (extra or {}).items():
        arrays.append(pa.array(np.asarray(values), pa.int64()))
        names.append(name)
    for name, values in columns.items():
        values = np.ascontiguousarray(values, dtype=np.float32)
        arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)),
                                                        values.shape[1]))
        names.append(name)
    table = pa.Table.from_arrays(arrays, names=names)
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta, sort_keys=True)})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    try:
        pq.write_table(table, tmp, compression="zstd")
        commit(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_features(path: str | Path, rewrite: str = "python -m momentum_ssl extract"
                  ) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """(features per column, labels, metadata) of one Parquet file written by
    :func:`write_features`; ``rewrite`` is the command that writes it (for errors)."""
    path = Path(path)
    table, meta = read_parquet(path, rewrite, META_KEY)
    if not table.column_names or table.column_names[0] != "label" or \
            table.num_rows != meta.get("num_samples", table.num_rows):
        raise corrupt(path, "is not a complete features file (label column or row count "
                      "differs from its metadata)", rewrite)
    labels = table.column("label").to_numpy()
    columns = {}
    for name in table.column_names[1:]:
        column = table.column(name).combine_chunks()
        if not hasattr(column, "flatten"):  # an integer column (predictions)
            columns[name] = column.to_numpy()
            continue
        columns[name] = column.flatten().to_numpy().reshape(len(column), -1)
    return columns, labels, meta


def transfer_summary(path: Path, rewrite: str | None = None) -> dict[str, float]:
    """{target: headline kNN top-1 of the first encoder} of a transfer JSON
    (``results/transfer/<name>[/s<seed>].json``); ``rewrite``: the command that rewrites it."""
    path = Path(path)
    rewrite = rewrite or f"python -m momentum_ssl transfer --run {path.stem}"
    metrics = read_json(path, rewrite, ("knn_headline", "targets"))
    key = metrics["knn_headline"]
    out = {}
    try:
        for target, scores in metrics["targets"].items():
            encoder = next(k for k, v in scores.items() if isinstance(v, dict) and "knn" in v)
            out[target] = scores[encoder]["knn"][key]
    except (AttributeError, KeyError, StopIteration, TypeError):
        raise corrupt(path, "lacks a target's headline kNN score", rewrite) from None
    return out
