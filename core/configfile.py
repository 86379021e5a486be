"""Read `--config FILE` (YAML or JSON with the same keys as the flags)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tx.core.errors import ConfigError

#: keys of a config file that are not HF arguments
RESERVED_KEYS = ("launcher", "launcher_options", "plugins")


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
