"""Read `--config FILE` (YAML or JSON with the same keys as the flags)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tx.core.errors import ConfigError

#: keys of a config file that are not HF arguments
RESERVED_KEYS = ("task", "launcher", "launcher_options", "plugins")


def load_config(path: str | Path) -> dict[str, Any]:
    """Return the mapping in ``path``; errors name the file and, where known, the line."""
    p = Path(path)
    if not p.exists():
        raise ConfigError(f"config file {str(p)!r} does not exist", hint="check the path given to --config")
    if p.is_dir():
        raise ConfigError(f"config file {str(p)!r} is a directory", hint="pass a .yaml or .json file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {str(p)!r} is not UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(p)!r}: {exc.strerror}") from None
    suffix = p.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"invalid JSON in config file {str(p)!r} at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                hint="fix the JSON there",
            ) from None
    elif suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            # safe_load builds plain data only: a !!python/... tag (code to run) is refused here
            hint = ("tx config files are plain YAML: remove the !!python tag" if "python/" in problem
                    else "fix the YAML there (indentation, quotes, a ':' after each key)")
            raise ConfigError(f"invalid YAML in config file {str(p)!r}{where}: {problem}", hint=hint) from None
    else:
        raise ConfigError(
            f"config file {str(p)!r} has an unsupported extension {suffix or '(none)'!r}",
            hint="use .yaml, .yml or .json",
        )
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping of flag names to values",
                          hint="write one `flag_name: value` per line")
    return {str(k).lstrip("-"): v for k, v in data.items()}


def option_argv(key: str, value: Any) -> list[str]:
    """Pure: a config entry ``key: value`` as launcher flags (``--key=value``, repeated for a
    list), so a config file goes through the same option parsing, spellings and aliases as the
    command line. ``None`` means "not set": no flag."""
    flag = "--" + str(key).lstrip("-").replace("_", "-")
    if value is None:
        return []
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        if isinstance(item, (dict, list, tuple)):
            raise ConfigError(f"launcher option {key!r} in the config file must be a plain value, not {type(item).__name__}")
        text = ("true" if item else "false") if isinstance(item, bool) else str(item)
        out.append(f"{flag}={text}")
    return out


def launcher_values(config: dict[str, Any], nested: Any, options_cls: type, hf_names: set[str],
                    other_launchers: dict[str, type], launcher_name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split a loaded config into (HF arguments, launcher option values).

    Launcher options may sit under ``launcher_options:`` or at the top level next to the HF
    arguments (``nproc-per-node: 2`` or ``nproc_per_node: 2``); both are read with the
    launcher's own option parser (``options.split_options``), so every spelling the command
    line accepts works here too. A top-level key that is neither an HF argument nor an option
    of this launcher is refused with the closest name."""
    from tx.core import hfargs, options

    if nested is not None and not isinstance(nested, dict):
        raise ConfigError("launcher_options in the config file must be a mapping",
                          hint="write one `option-name: value` per line under launcher_options:")
    values: dict[str, Any] = {}
    where: dict[str, str] = {}

    def take(key: str, value: Any, source: str) -> bool:
        found, rest = options.split_options(options_cls, option_argv(key, value))
        if rest:
            return False
        for name, parsed in found.items():
            if name in values and values[name] != parsed:
                raise ConfigError(f"launcher option {options.flag_name(name)} is set twice in the config file "
                                  f"({where[name]} and {source}) with different values", hint="keep one")
            values[name], where[name] = parsed, source
        return True

    for key, value in (nested or {}).items():
        if not take(str(key), value, "under launcher_options"):
            options.build_options(options_cls, {str(key).replace("-", "_"): value})  # raises: unknown, did you mean
    hf: dict[str, Any] = {}
    for key, value in config.items():
        if key in hf_names:
            hf[key] = value
        elif not take(key, value, "at the top level"):
            owners = [name for name, cls in other_launchers.items() if name != launcher_name and _owns(cls, key)]
            if owners:
                raise ConfigError(f"config key {key!r} is an option of launcher {' and '.join(owners)}, "
                                  f"not of {launcher_name!r}",
                                  hint=f"add `launcher: {owners[0]}` to the config file, or drop {key!r}")
            own = [n.replace("_", "-") for n in options._fields(options_cls)]
            raise ConfigError(hfargs.unknown_flag_message(key, sorted(hf_names) + own, where="config key"))
    return hf, values


def _owns(options_cls: type, key: str) -> bool:
    """Whether ``key`` names an option of ``options_cls`` (in any spelling its parser accepts)."""
    from tx.core import options

    for probe in ("1", "true", "x"):  # whatever type the option has, one of these parses
        try:
            return bool(options.split_options(options_cls, option_argv(key, probe))[0])
        except ConfigError:
            continue
    return True


def dump_config(task: str, launcher: str, options: dict[str, Any], args: dict[str, Any],
                hf_names: set[str]) -> str:
    """Pure: a config file (YAML) that reruns a job: task, launcher, its options at the top level in
    their flag spelling (under ``launcher_options:`` only if a name is also an HF argument), then
    the HF arguments."""
    import yaml

    data: dict[str, Any] = {"task": task, "launcher": launcher}
    nested: dict[str, Any] = {}
    for name, value in options.items():
        key = name.replace("_", "-")
        if key in hf_names or name in hf_names:
            nested[key] = value
        else:
            data[key] = value
    if nested:
        data["launcher_options"] = nested
    data.update(args)
    header = ("# tx config written by `tx run ... --print-config`; rerun with: tx run --config FILE\n"
              "# (relative paths in a config file resolve against the file's folder)\n")
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1000)
