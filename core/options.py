"""Launcher options: a dataclass whose fields are kebab-case command-line flags.

``nproc_per_node: int = 1`` is ``--nproc-per-node 2`` (or ``--nproc-per-node=2``); a bool field
is ``--x`` / ``--no-x``; a ``tuple[str, ...]`` field is repeatable. Help text comes from
``field(metadata={"help": ...})``.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Literal, get_args, get_origin

from tx.core.errors import ConfigError


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _base_type(tp: Any) -> Any:
    """Optional[X] -> X."""
    if get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _fields(options_cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(options_cls)
    return {f.name: (f, _base_type(hints[f.name])) for f in dataclasses.fields(options_cls)}


def _convert(name: str, tp: Any, raw: str) -> Any:
    origin = get_origin(tp)
    if origin is Literal:
        choices = [str(c) for c in get_args(tp)]
        if raw not in choices:
            raise ConfigError(f"{flag_name(name)} must be one of {', '.join(choices)}, not {raw!r}")
        return raw
    try:
        if tp is int:
            return int(raw)
        if tp is float:
            return float(raw)
    except ValueError:
        kind = "an integer" if tp is int else "a number"
        raise ConfigError(f"{flag_name(name)} expects {kind}, got {raw!r}") from None
    return raw


def _is_repeatable(tp: Any) -> bool:
    return get_origin(tp) in (tuple, list)


def split_options(options_cls: type, argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Take this launcher's flags out of ``argv``; return (values, the rest in order)."""
    fields = _fields(options_cls)
    by_flag = {flag_name(n): n for n in fields}
    negations = {"--no-" + n.replace("_", "-"): n for n, (_, tp) in fields.items() if tp is bool}
    values: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        key, eq, inline = arg.partition("=")
        if key in negations:
            values[negations[key]] = False
            i += 1
            continue
        if key not in by_flag:
            rest.append(arg)
            i += 1
            continue
        name = by_flag[key]
        tp = fields[name][1]
        if tp is bool:
            if eq:
                values[name] = _parse_bool(name, inline)
            else:
                values[name] = True
            i += 1
            continue
        if eq:
            raw = inline
            i += 1
        else:
            if i + 1 >= len(argv):
                raise ConfigError(f"{key} needs a value")
            raw = argv[i + 1]
            i += 2
        if _is_repeatable(tp):
            values.setdefault(name, [])
            values[name].append(raw)
        else:
            values[name] = _convert(name, tp, raw)
    return values, rest


def _parse_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{flag_name(name)} expects true or false, got {raw!r}")


def build_options(options_cls: type, values: dict[str, Any]) -> Any:
    """Instantiate the options dataclass from flag values (or a job file's saved values)."""
    fields = _fields(options_cls)
    unknown = [k for k in values if k not in fields]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(fields), n=1)
        hint = f" (did you mean {flag_name(close[0])}?)" if close else ""
        raise ConfigError(f"unknown launcher option {flag_name(unknown[0])}{hint}")
    clean: dict[str, Any] = {}
    for name, value in values.items():
        tp = fields[name][1]
        if _is_repeatable(tp):
            value = tuple(value if isinstance(value, (list, tuple)) else [value])
        elif isinstance(value, str) and tp is not str:
            value = _parse_bool(name, value) if tp is bool else _convert(name, tp, value)
        clean[name] = value
    try:
        return options_cls(**clean)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid launcher options: {exc}") from None


def to_dict(options: Any) -> dict[str, Any]:
    """Options as plain YAML-safe values, only those that differ from the defaults."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(options):
        value = getattr(options, f.name)
        default = f.default if f.default is not dataclasses.MISSING else (
            f.default_factory() if f.default_factory is not dataclasses.MISSING else None  # type: ignore[misc]
        )
        if value != default:
            out[f.name] = list(value) if isinstance(value, tuple) else value
    return out


def describe(options_cls: type) -> list[tuple[str, str, str]]:
    """(flag, type/default, help) rows for `--help`."""
    rows = []
    for name, (f, tp) in _fields(options_cls).items():
        if tp is bool:
            flag = f"{flag_name(name)} / --no-{name.replace('_', '-')}"
        else:
            flag = flag_name(name)
        if get_origin(tp) is Literal:
            kind = "|".join(str(c) for c in get_args(tp))
        elif _is_repeatable(tp):
            kind = "TEXT (repeatable)"
        else:
            kind = getattr(tp, "__name__", str(tp)).upper().replace("STR", "TEXT")
        default = f.default if f.default is not dataclasses.MISSING else None
        if default not in (None, (), "", False):
            kind += f" [default: {default}]"
        rows.append((flag, kind, f.metadata.get("help", "")))
    return rows
