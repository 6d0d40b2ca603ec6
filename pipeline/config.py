"""Typed `params.yaml` sections.

Each stage reads exactly one section into a frozen dataclass. Unknown keys are rejected with a suggestion
(a typo'd key silently falling back to its default is the most common way a run quietly means something
other than what the user asked for). Every value is checked strictly against its field's annotation with
pydantic before the dataclass's own checks run: YAML happily reads `'false'` as a string, `3.5` where an
integer is meant, or `1e-4` as text, and each of those would otherwise pass and fail much later (or not
at all). The check is generic, so every params dataclass, present or future, gets it without changes.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import pydantic
import yaml

from pipeline.errors import PipelineError
from pipeline.io import decode_utf8

T = TypeVar("T")
# Fields that carry a random seed: numpy and torch take 0 … 2**32 - 1; a negative one crashes mid-run.
SEED_FIELDS = ("seed",)
SEED_MAX = 2**32 - 1
# Process counts: 0 means all cores; a negative one reaches the process pool as "max_workers must be > 0".
WORKER_FIELDS = ("workers",)


class ConfigError(PipelineError, ValueError):
    """A params.yaml problem the user can fix by editing the file."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` merges a mapping in; its keys may be overridden here on purpose
            key = self.construct_object(key_node, deep=deep)  # type: ignore[no-untyped-call]
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: parameter file not found (run from the project root or pass --params)")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the parameter file ({exc.strerror})") from None
    text = decode_utf8(path, data, ConfigError, "not UTF-8 text; save the file as UTF-8")
    try:
        params = yaml.load(text, Loader=_UniqueKeyLoader) or {}  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: {where}invalid YAML ({problem}); fix the syntax") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level")
    return params


def suggest(key: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _tuples(value: Any) -> Any:
    """YAML has no tuples: lists (at any depth) become tuples for fields annotated as tuples."""
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value


def _has_tuple(tp: Any) -> bool:
    return tp is tuple or typing.get_origin(tp) is tuple or any(_has_tuple(a) for a in typing.get_args(tp))


def _pydantic_blind(tp: Any) -> bool:
    """Whether `tp` holds, at any depth, a type the strict check would wrongly refuse: `Any`, a `Path`
    (YAML gives a string, strict mode wants a Path object) or a dataclass (checked by its own build)."""
    if tp is Any or tp is Path or (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
        return True
    return any(_pydantic_blind(a) for a in typing.get_args(tp))


@functools.cache
def _adapter(tp: Any) -> pydantic.TypeAdapter | None:
    try:
        return pydantic.TypeAdapter(tp)
    except (pydantic.PydanticSchemaGenerationError, TypeError):
        return None  # a type pydantic cannot describe: the dataclass's own checks are all there is


def _describe(value: Any) -> str:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    hint = ""
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
        hint = " (quoted, so YAML reads it as text: write true or false without quotes)"
    elif isinstance(value, str):
        try:
            float(value)
            hint = " (YAML reads this as text: write the number with a decimal point, e.g. 1.0e-4)"
        except ValueError:
            pass
    return f"{shown} ({type(value).__name__}){hint}"


_ITEM_TYPES = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping",
}


def _expected(tp: Any) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(
            [_expected(a) for a in args] + (["null"] if len(args) < len(typing.get_args(tp)) else [])
        )
    if typing.get_origin(tp) in (tuple, list):
        return f"a list (each item {_expected(args[0])})" if args else "a list"
    if typing.get_origin(tp) is dict or tp is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def check_value(tp: Any, value: Any, where: str) -> Any:
    """`value` checked strictly against annotation `tp` (ints may stand for floats); the checked value, or
    a ConfigError naming `where` (``params.yaml:section.key``) and what is expected."""
    if _has_tuple(tp):
        value = _tuples(value)
    adapter = None if _pydantic_blind(tp) else _adapter(tp)
    if adapter is None:
        return value
    try:
        checked = adapter.validate_python(value, strict=True)
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        loc = "".join(f"[{p}]" for p in error["loc"] if isinstance(p, int))
        expected = _ITEM_TYPES.get(error["type"], error["msg"]) if loc else _expected(tp)
        got = error.get("input", value)
        raise ConfigError(f"{where}{loc}: expected {expected}, got {_describe(got)}") from None
    return checked


def _check_by_name(name: str, value: Any, where: str) -> None:
    """Rules that hold for a field of this name in every section (new sections get them for free)."""
    if name in SEED_FIELDS and isinstance(value, int) and not 0 <= value <= SEED_MAX:
        raise ConfigError(f"{where}: a seed must lie in 0 … {SEED_MAX}, got {value}")
    if name in WORKER_FIELDS and isinstance(value, int) and value < 0:
        raise ConfigError(f"{where}: must be 0 (all cores) or a positive number of processes, got {value}")


def build(schema: type[T], data: dict[str, Any] | None, where: str) -> T:
    """Build dataclass `schema` from `data`, recursing into nested dataclasses and checking keys and the
    type of every value (strictly: `'false'`, `3.0` for an integer and `1e-4` as text are refused)."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {_describe(data)}")
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
        else:
            value = check_value(hints[name], value, f"{where}.{name}")
            _check_by_name(name, value, f"{where}.{name}")
        kwargs[name] = value
    try:
        return schema(**kwargs)
    except (TypeError, ValueError, ArithmeticError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{where}: {message}") from exc


def load_section(schema: type[T], section: str, path: str | Path = "params.yaml") -> T:
    """Read one top-level section of params.yaml as `schema`."""
    params = read_params(path)
    if section not in params:
        raise ConfigError(f"{path}: section '{section}' is missing{suggest(section, params)}")
    return build(schema, params[section], f"{path}:{section}")
