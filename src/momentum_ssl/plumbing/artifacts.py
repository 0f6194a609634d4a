"""Artifacts on disk: atomic writes, and checked reads.

Writes: a file is written under a hidden ``.NAME.partial-PID`` name beside its destination and
renamed over it when complete; a killed writer leaves only that clearly named leftover.

Reads: every artifact a stage reads is opened through one of the readers below
(:func:`read_json`, :func:`read_yaml`, :func:`load_torch`, :func:`read_parquet`,
:func:`check_beton`). A missing file raises :class:`MissingArtifact`, a damaged one (truncated
after a full disk or a cut copy, garbled, or not what its name says) :class:`CorruptArtifact`;
either message is one line naming the file, what is wrong and ``rewrite``, the command that
writes it again. Stages read every input before writing anything, so nothing is written after
such an error.
"""

from __future__ import annotations

import json
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


def _brief(err: BaseException, limit: int = 160) -> str:
    """A library's error as one short line (some span lines, or quote whole files)."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."


def require(path: Path, rewrite: str) -> Path:
    """``path``, or :class:`MissingArtifact` naming ``rewrite``, the command that writes it."""
    path = Path(path)
    if not path.is_file():
        raise MissingArtifact(f"{path} not found; run {rewrite} first")
    return path


def corrupt(path: Path, problem: str, rewrite: str) -> CorruptArtifact:
    err = CorruptArtifact(f"{path} {problem}; rewrite it: {rewrite}")
    err.problem = f"{path} {problem}"  # without the command, for callers that recover
    return err


def _keys(path: Path, data, keys, rewrite: str, kind: str):
    if not isinstance(data, dict):
        raise corrupt(path, f"holds {type(data).__name__}, not the {kind} this stage writes",
                      rewrite)
    missing = [key for key in keys if key not in data]
    if missing:
        raise corrupt(path, f"lacks {', '.join(map(repr, missing))} (not a complete {kind} of "
                      "this version)", rewrite)
    return data


def read_json(path: Path, rewrite: str, keys: tuple[str, ...] = ()) -> dict:
    """A JSON object holding at least ``keys``."""
    path = require(path, rewrite)
    try:
        data = json.loads(path.read_bytes())
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError
        raise corrupt(path, f"is not valid JSON, truncated or garbled ({_brief(err)})",
                      rewrite) from None
    return _keys(path, data, keys, rewrite, "JSON object")


def read_yaml(path: Path, rewrite: str):
    """Any YAML document (plan files: compared with what the params give by the caller)."""
    import yaml

    path = require(path, rewrite)
    try:
        return yaml.safe_load(path.read_bytes())
    except (yaml.YAMLError, ValueError) as err:
        raise corrupt(path, f"is not valid YAML, truncated or garbled ({_brief(err)})",
                      rewrite) from None


def load_torch(path: Path, rewrite: str, keys: tuple[str, ...] = ()) -> dict:
    """A ``torch.save``d dict holding at least ``keys``, on the CPU."""
    import torch

    path = require(path, rewrite)
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    # Damaged bytes surface from torch.load as many types (RuntimeError from the zip reader,
    # UnpicklingError, EOFError, KeyError, ...): any of them means the file cannot be used.
    except Exception as err:
        raise corrupt(path, f"is truncated or garbled: torch.load failed ({_brief(err)})",
                      rewrite) from None
    return _keys(path, state, keys, rewrite, "checkpoint dict")


def read_parquet(path: Path, rewrite: str, meta_key: bytes | None = None):
    """(pyarrow table, the JSON object under ``meta_key`` in its schema metadata)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = require(path, rewrite)
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as err:
        raise corrupt(path, f"is not a readable Parquet file, truncated or garbled "
                      f"({_brief(err)})", rewrite) from None
    meta = None
    if meta_key is not None:
        try:
            meta = json.loads((table.schema.metadata or {})[meta_key])
        except (KeyError, ValueError):
            raise corrupt(path, f"lacks its {meta_key.decode()} metadata (not written by this "
                          "stage)", rewrite) from None
    return table, meta


# The .beton layout, ffcv 1.0.2's (ffcv/types.py, ffcv/fields/{basics,rgb_image}.py), written
# out here so that checking a file, or reading raw pixels from it, does not import FFCV (about
# 4 s of numba compilation per process). tests/plumbing/test_artifacts.py holds them equal to
# FFCV's.
BETON_VERSION = 2
BETON_HEADER = dict(names=["version", "num_fields", "page_size", "num_samples",
                           "alloc_table_ptr"],
                    formats=["<u2", "<u2", "<u4", "<u8", "<u8"], aligned=True)
BETON_FIELD_DESC = dict(names=["type_id", "name", "arguments"],
                        formats=["<u1", ("<u1", 16), ("<u1", (1024,))], aligned=True)
BETON_ALLOC_TABLE = dict(names=["sample_id", "ptr", "size"], formats=["<u8", "<u8", "<u8"])
BETON_RECORDS = {  # type id -> one sample's metadata record, for the fields convert writes
    0: "<f8",  # FloatField
    1: "<i8",  # IntField
    2: [("mode", "<u1"), ("width", "<u2"), ("height", "<u2"), ("data_ptr", "<u8")],  # RGB
}
BETON_IMAGE_MODES = {"jpg": 0, "raw": 1}  # RGBImageField's record "mode"


def check_beton(path: Path, rewrite: str, fields: tuple[str, ...] = (),
                num_samples: int | None = None) -> dict:
    """Check an FFCV ``.beton`` against its own layout before FFCV reads it (FFCV trusts the
    header: a truncated file ends in numpy's "negative dimensions are not allowed").

    The layout (ffcv 1.0.2, ``ffcv/writer.py`` and ``ffcv/reader.py``): a header
    (``HeaderType``: version, num_fields, page_size, num_samples, alloc_table_ptr), one
    ``FieldDescType`` per field, one metadata record per sample, the data pages, and from
    ``alloc_table_ptr`` to the end of the file the allocation table (sample_id, ptr, size) of
    every sample's data. Checked: the version, the field names (``fields``), that each region
    fits in the file, the table's length and bounds, that every sample has data when any does,
    that each record's data pointer is in the table, and ``num_samples`` when given. Returns
    {field name: its per-sample metadata records} (an integer field's records are its
    values)."""
    import numpy as np

    HeaderType, FieldDescType, ALLOC_TABLE_TYPE = (np.dtype(BETON_HEADER),
                                                   np.dtype(BETON_FIELD_DESC),
                                                   np.dtype(BETON_ALLOC_TABLE))
    path = require(path, rewrite)
    size = path.stat().st_size

    def bad(problem: str) -> CorruptArtifact:
        return corrupt(path, f"is not a complete FFCV file: {problem}", rewrite)

    if size < HeaderType.itemsize:
        raise bad(f"{size} bytes, shorter than its header ({HeaderType.itemsize})")
    header = np.fromfile(path, dtype=HeaderType, count=1)[0]
    if header["version"] != BETON_VERSION:
        raise bad(f"format version {header['version']}, not {BETON_VERSION}")
    count, samples = int(header["num_fields"]), int(header["num_samples"])
    fields_end = HeaderType.itemsize + count * FieldDescType.itemsize
    if fields_end > size:
        raise bad(f"{size} bytes, shorter than its {count} field descriptors")
    descriptors = np.fromfile(path, dtype=FieldDescType, count=count,
                              offset=HeaderType.itemsize)
    names = [bytes(d["name"]).split(b"\0", 1)[0].decode("ascii", "replace")
             for d in descriptors]
    if fields and tuple(names) != tuple(fields):
        raise bad(f"fields {names}, expected {list(fields)}")
    types = []
    for name, d in zip(names, descriptors):
        record_type = BETON_RECORDS.get(int(d["type_id"]))
        if record_type is None:
            raise bad(f"field {name!r} has type id {int(d['type_id'])}, not one momentum-ssl "
                      f"writes ({', '.join(map(str, BETON_RECORDS))})")
        types.append(("", np.dtype(record_type)))  # unaligned inside, as FFCV's
    record = np.dtype(types, align=True)
    metadata_end = fields_end + samples * record.itemsize
    table_at = int(header["alloc_table_ptr"])
    if not metadata_end <= table_at <= size:
        raise bad(f"{size} bytes, but its header puts the allocation table at byte {table_at} "
                  f"(after {samples} sample records ending at byte {metadata_end})")
    if (size - table_at) % ALLOC_TABLE_TYPE.itemsize:
        raise bad(f"its allocation table ({size - table_at} bytes) is not a whole number of "
                  f"{ALLOC_TABLE_TYPE.itemsize}-byte entries")
    table = np.fromfile(path, dtype=ALLOC_TABLE_TYPE, offset=table_at)
    if len(table):
        if (table["sample_id"] >= samples).any():
            raise bad("its allocation table names samples past the header's count")
        if ((table["ptr"] < metadata_end) | (table["ptr"] + table["size"] > table_at)).any():
            raise bad("its allocation table points outside the data region")
        if len(np.unique(table["sample_id"])) != samples:
            raise bad(f"its allocation table covers {len(np.unique(table['sample_id']))} of "
                      f"{samples} samples")
    metadata = np.fromfile(path, dtype=record, count=samples, offset=fields_end)
    for i, name in enumerate(record.names):
        sub = metadata[name]
        if sub.dtype.names and "data_ptr" in sub.dtype.names and samples:
            if not np.isin(sub["data_ptr"], table["ptr"]).all():
                raise bad(f"field {names[i]!r} has sample records pointing to no data")
    if num_samples is not None and samples != num_samples:
        raise bad(f"{samples} samples where meta.json records {num_samples}")
    return {name: metadata[key] for name, key in zip(names, record.names)}
