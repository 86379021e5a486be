"""The benchmark's tx plugin (TX_PLUGINS=txbench_plugin, with bench/ on PYTHONPATH): adds the
timing callback of marks.py to the Trainer of `tx run`, through tx's public hook."""

from __future__ import annotations

from typing import Any

from marks import callback
from tx.core.hookspecs import hookimpl


@hookimpl
def tx_trainer_callbacks(job: Any) -> list[Any]:
    return [callback()]
