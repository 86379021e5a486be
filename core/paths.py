"""Where tx keeps things: its cache (built-in models, tokenized data) and its job records."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """`$TX_CACHE_HOME`, else `$XDG_CACHE_HOME/tx`, else `~/.cache/tx`."""
    explicit = os.environ.get("TX_CACHE_HOME")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "tx"


def jobs_dir() -> Path:
    return cache_home() / "jobs"
