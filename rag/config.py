"""Configuration parsed once, at the edge, into typed dataclasses that reject unknown keys and wrong types."""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from rag.errors import BadInputError

T = TypeVar("T")


def _check(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        errors = []
        for a in args:
            try:
                return _check(value, a, where)
            except BadInputError as e:
                errors.append(str(e))
        raise BadInputError(f"{where}: {value!r} does not match {tp}")
    if tp is type(None):
        if value is not None:
            raise BadInputError(f"{where}: expected null, got {value!r}")
        return None
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise BadInputError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        item = args[0] if args else Any
        out = [_check(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise BadInputError(f"{where}: expected a mapping, got {value!r}")
        return {k: _check(v, args[1] if args else Any, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is Path and isinstance(value, str):
        return Path(value)
    if isinstance(tp, type):
        if isinstance(value, bool) and tp is not bool:
            raise BadInputError(f"{where}: expected {tp.__name__}, got a boolean")
        if not isinstance(value, tp):
            raise BadInputError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
    return value


def from_dict(cls: type[T], data: Any, where: str = "config") -> T:
    """Build dataclass `cls` from a mapping; unknown keys, missing required keys and wrong types are errors."""
    if not isinstance(data, dict):
        raise BadInputError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BadInputError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(fields))}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _check(data[name], hints[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise BadInputError(f"{where}: missing required key {name!r}")
    return cls(**kwargs)


def load_yaml(cls: type[T], path: str | os.PathLike, overrides: dict | None = None) -> T:
    """Read a YAML file into `cls`; `overrides` (e.g. from CLI flags) win over file values."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise BadInputError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise BadInputError(f"{path}: not valid YAML: {e}") from e
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return from_dict(cls, data, where=str(path))
