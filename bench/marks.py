"""Timestamps and peak memory of the benchmark's processes, written as JSON lines to the file
named by $TXBENCH_MARKS (nothing happens when it is unset).

The plain HF script adds :func:`callback` to its Trainer; `tx run` gets the same callback
through tx's own plugin hook (txbench_plugin.py, loaded with TX_PLUGINS). Every process that
imports this module also records, at exit, its peak resident memory (VmHWM, which starts afresh
at exec) and whether it imported torch.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from typing import Any

MARKS_ENV = "TXBENCH_MARKS"


def mark(event: str, **extra: Any) -> None:
    path = os.environ.get(MARKS_ENV)
    if not path:
        return
    record = {"event": event, "t": time.time(), "pid": os.getpid(), "ppid": os.getppid(),
              "argv0": os.path.basename(sys.argv[0]) if sys.argv else "", **extra}
    with open(path, "a", encoding="utf-8") as fh:  # one short write per line: safe across processes
        fh.write(json.dumps(record) + "\n")


def peak_rss_kb() -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _at_exit() -> None:
    mark("exit", peak_rss_kb=peak_rss_kb(), torch_imported="torch" in sys.modules,
         transformers_imported="transformers" in sys.modules)


if os.environ.get(MARKS_ENV):
    atexit.register(_at_exit)


def callback() -> Any:
    """A TrainerCallback marking the start of training, the end of the first optimizer step
    and the end of training."""
    from transformers import TrainerCallback

    class Marks(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            mark("train_begin")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 1:
                mark("first_step")

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            mark("train_end", peak_rss_kb=peak_rss_kb())

    return Marks()
