"""Launcher options: a dataclass whose fields are kebab-case command-line flags.

``nproc_per_node: int = 1`` is ``--nproc-per-node 2`` (or ``--nproc-per-node=2``, or with
underscores, ``--nproc_per_node 2``, the spelling of torchrun's older releases); a bool field is
``--x`` / ``--no-x``; a ``tuple[str, ...]`` field is repeatable. Help text comes from
``field(metadata={"help": ...})``; ``metadata={"aliases": ("num_gpus",)}`` adds other names
for the same option (a launcher tool's native spelling: ``--num-gpus``), accepted on the command
line, in ``--inner-option`` and in saved job files.

Every process launcher names its process layout the same way: ``nproc_per_node`` and ``nnodes``
(:data:`LAYOUT`), so ``--nproc-per-node 2`` works whatever ``--launcher`` says.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any, Literal, get_args, get_origin

from tx.core.errors import ConfigError


#: the option names of the process layout, the same for every launcher
LAYOUT = ("nproc_per_node", "nnodes")


def flag_name(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def aliases(field: dataclasses.Field) -> tuple[str, ...]:
    """Other names of an option (field names, e.g. ``num_gpus`` for ``nproc_per_node``)."""
    return tuple(field.metadata.get("aliases", ()))


def names_of(options_cls: type) -> dict[str, str]:
    """Every name an option answers to (its own and its aliases) -> its field name."""
    out: dict[str, str] = {}
    for name, (f, _) in _fields(options_cls).items():
        out[name] = name
        for alias in aliases(f):
            out[alias] = name
    return out


def flags_of(options_cls: type) -> dict[str, str]:
    """Every command-line spelling of the options -> field name: kebab and underscore forms of
    each name and alias, and ``--no-x`` for bools."""
    fields = _fields(options_cls)
    out: dict[str, str] = {}
    for name, field_name in names_of(options_cls).items():
        out[flag_name(name)] = field_name
        out["--" + name] = field_name
        if fields[field_name][1] is bool:
            out["--no-" + name.replace("_", "-")] = field_name
            out["--no_" + name] = field_name
    return out


def canonical(options_cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` keyed by field name: aliases and kebab-case keys (``num-gpus``) renamed.
    Two names of one option with different values are an error."""
    names = names_of(options_cls)
    out: dict[str, Any] = {}
    given_as: dict[str, str] = {}
    for key, value in values.items():
        name = names.get(str(key).replace("-", "_"), str(key))
        if name in out and out[name] != value:
            raise ConfigError(f"{flag_name(given_as[name])} and {flag_name(str(key))} are the same option "
                              f"with two values ({out[name]!r} and {value!r})", hint="give it once")
        out[name] = value
        given_as[name] = str(key).replace("-", "_")
    return out


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
    spellings = flags_of(options_cls)
    own = {spelling for name in names_of(options_cls) for spelling in (flag_name(name), "--" + name)}
    negations = {flag: n for flag, n in spellings.items() if flag not in own}
    by_flag = {flag: n for flag, n in spellings.items() if flag not in negations}
    values: dict[str, Any] = {}
    seen: dict[str, str] = {}
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
        if name in seen and seen[name] != key and not _is_repeatable(fields[name][1]):
            raise ConfigError(f"{seen[name]} and {key} are the same option; give it once")
        seen[name] = key
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
    values = canonical(options_cls, values)
    unknown = [k for k in values if k not in fields]
    if unknown:
        close = difflib.get_close_matches(unknown[0], list(names_of(options_cls)), n=1)
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
        help_text = f.metadata.get("help", "")
        if aliases(f):
            help_text += f" (also: {', '.join(flag_name(a) for a in aliases(f))})"
        rows.append((flag, kind, help_text))
    return rows


def local_process_count() -> tuple[int, str]:
    """How many worker processes fill this machine, and what they stand for: one per CUDA GPU,
    else one per CPU core this process may run on. For the default ``--nproc-per-node`` of a
    launch on this machine (never of a job that runs elsewhere: a Slurm node, a container).
    Counts GPUs through torch only when torch is already imported (the process validating a job
    has imported it for the TrainingArguments); otherwise through the NVIDIA driver's files."""
    import os
    import sys

    gpus = 0
    if "torch" in sys.modules:
        try:
            gpus = int(sys.modules["torch"].cuda.device_count())
        except Exception:
            gpus = 0
    else:
        try:
            gpus = len(os.listdir("/proc/driver/nvidia/gpus"))
        except OSError:
            gpus = 0
    if gpus:
        return gpus, f"one per GPU ({gpus} found)"
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(cores, 1), f"one per CPU core ({cores} here, no GPU found)"
