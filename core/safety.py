"""Code tx will not run unless told: a model folder that ships its own Python code.

A local model (or config/tokenizer) folder whose config.json or tokenizer_config.json has an
``auto_map`` asks transformers to import ``*.py`` files from that folder. tx passes
``trust_remote_code=False`` unless the user gave ``--trust_remote_code``, so transformers would
refuse too, but only inside the worker and with a traceback; this check says it before launch,
in one line. (Hub models with custom code are refused by transformers the same way.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tx.core.errors import ConfigError

_CODE_FILES = ("config.json", "tokenizer_config.json")


def custom_code(folder: Path) -> str | None:
    """The file of ``folder`` that maps Auto classes to code shipped in the folder, if any."""
    for name in _CODE_FILES:
        path = folder / name
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict) and data.get("auto_map"):
            return name
    return None


def check_remote_code(model_args: Any) -> None:
    """Refuse local folders with custom code unless --trust_remote_code was given."""
    if getattr(model_args, "trust_remote_code", False):
        return
    for flag in ("model_name_or_path", "config_name", "tokenizer_name"):
        value = getattr(model_args, flag, None)
        if not value or not Path(value).expanduser().is_dir():
            continue
        found = custom_code(Path(value).expanduser())
        if found:
            raise ConfigError(
                f"--{flag} {value!r} ships its own Python code (auto_map in {found}); "
                "tx does not run it without --trust_remote_code",
                hint="read that code first; if you trust it, add --trust_remote_code",
            )
