"""Typed `params.yaml` sections.

Each stage reads exactly one section into a frozen dataclass. Unknown keys are rejected with a suggestion
(a typo'd key silently falling back to its default is the most common way a run quietly means something
other than what the user asked for).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from pipeline.errors import PipelineError

T = TypeVar("T")


class ConfigError(PipelineError, ValueError):
    """A params.yaml problem the user can fix by editing the file."""


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameter file not found (run from the project root or pass --params)")
    with open(path, encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return data


def suggest(key: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def build(schema: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Build dataclass `schema` from `data`, recursing into nested dataclasses and checking keys."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    for key in data:
        if key not in fields:
            raise ConfigError(f"{where}: unknown key '{key}'{suggest(str(key), fields)}")
    hints = typing.get_type_hints(schema)
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        tp = _unwrap_optional(hints[name])
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            value = build(tp, value, f"{where}.{name}")
        elif value is not None and (tp is tuple or typing.get_origin(tp) is tuple):
            value = tuple(value)
        kwargs[name] = value
    try:
        return schema(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def load_section(schema: type[T], section: str, path: str | Path = "params.yaml") -> T:
    """Read one top-level section of params.yaml as `schema`."""
    params = read_params(path)
    if section not in params:
        raise ConfigError(f"{path}: section '{section}' is missing{suggest(section, params)}")
    return build(schema, params[section], f"{path}:{section}")
