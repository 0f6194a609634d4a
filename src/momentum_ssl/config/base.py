"""What every section's schema is built from: the error, the checks, and the typed building.

:class:`ConfigError` is the one error a bad params file raises, its message naming the dotted
key and the fix. :func:`_build` turns a mapping into a frozen dataclass from its type hints:
unknown keys (with the closest allowed one), wrong types and out-of-range values (each
section's ``__post_init__``) fail before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

DatasetName = Literal["fashion_mnist", "digits", "cifar10", "cifar100", "stl10", "imagefolder"]
MethodName = Literal["mocov2", "mocov3", "byol", "simclr", "simsiam", "barlow_twins", "vicreg",
                     "unigrad", "xmoco", "dino"]
Scope = Literal["none", "projector", "last_k", "full"]
DATASETS: tuple[str, ...] = typing.get_args(DatasetName)
METHODS: tuple[str, ...] = typing.get_args(MethodName)
SCOPES: tuple[str, ...] = typing.get_args(Scope)


class ConfigError(ValueError):
    """A params file that cannot be used; the message names the key and the fix."""


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _in_unit(value: float, key: str) -> None:
    _require(0.0 <= value <= 1.0, key, f"must be a probability in [0, 1], got {value}")


def _interval(pair: tuple[float, float], key: str, low: float, high: float) -> None:
    a, b = pair
    _require(low <= a <= b <= high, key,
             f"must be [min, max] with {low} <= min <= max <= {high}, got [{a}, {b}]")


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _describe(a)
                           for a in typing.get_args(tp))
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return f"a list of {len(args)} numbers"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", bool: "true or false",
            str: "a string"}.get(tp, str(tp))


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    wrong = ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key}: {value!r} is not allowed; allowed values: "
                              + ", ".join(str(v) for v in typing.get_args(tp)))
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, key)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise wrong
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise wrong
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is Mapping:  # recipe overrides: checked when resolved against their section
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping of that section's keys, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if tp is float:
        # PyYAML reads `1e-4` (no dot) as a string: accept numeric strings for floats.
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise wrong from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise wrong
        if not math.isfinite(value):
            raise wrong
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise wrong
        return value
    raise TypeError(f"unsupported config type {tp!r} for {key}")  # a bug in this module


def _build(cls: type, data: Any, path: str) -> Any:
    where = path or "the params file"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    prefix = f"{path}." if path else ""
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown key '{prefix}{key}'{hint}; allowed keys in {where}: "
                              + ", ".join(fields))
    missing = [name for name, f in fields.items()
               if name not in data and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where}: missing required key '{prefix}{missing[0]}'")
    kwargs = {name: _coerce(hints[name], value, f"{prefix}{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (ConfigError, ValueError) as err:  # __post_init__ checks name the key
        raise ConfigError(f"{prefix}{err}") from None
