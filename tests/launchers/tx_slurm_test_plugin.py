"""Test-only tx plugin for the Slurm tests: `tx -p tx_slurm_test_plugin run ...` with this folder
on PYTHONPATH. It uses only the public hook ``tx_trainer_callbacks``.

Driven by environment variables read in the worker (sbatch hands the submitting environment to
the job), so the job file stays exactly what a user would submit:

- ``TX_TEST_STEP_SLEEP=SECONDS`` — sleep at every step begin, so a test can preempt mid-training.
- ``TX_TEST_STEPS_FILE=PATH`` — append ``<TX_RESTART_COUNT> <global_step> <hostname>`` at every
  step end (every process writes its own line).
- ``TX_TEST_ARGS_FILE=PATH`` — write the arguments the worker parsed from the job file (JSON).
- ``TX_TEST_FAIL=1`` — raise at train begin: a job that fails inside the worker.
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any

from tx.core.hookspecs import hookimpl


def _parsed_args(job: Any) -> dict[str, Any]:
    """The worker's own parse of the job file (the same call tx.core.trainer makes)."""
    import dataclasses

    from tx.core import hfargs, plugins

    task = plugins.load(extra_modules=job.plugins).tasks.get(job.task)
    run_args = hfargs.parse(task, [], base=job.args).run_args
    out: dict[str, Any] = {}
    for part in (run_args.model, run_args.data):
        out.update({k: v for k, v in dataclasses.asdict(part).items() if isinstance(v, (str, int, float, bool, type(None)))})
    return out


@hookimpl
def tx_trainer_callbacks(job: Any) -> list[Any]:
    from transformers import TrainerCallback

    args_file = os.environ.get("TX_TEST_ARGS_FILE")
    if args_file:
        with open(args_file, "w", encoding="utf-8") as fh:
            json.dump(_parsed_args(job), fh)

    class SlurmTestCallback(TrainerCallback):
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if os.environ.get("TX_TEST_FAIL") == "1":
                raise RuntimeError("tx_slurm_test_plugin: failing on purpose (TX_TEST_FAIL=1)")

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            pause = float(os.environ.get("TX_TEST_STEP_SLEEP") or 0)
            if pause:
                time.sleep(pause)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            path = os.environ.get("TX_TEST_STEPS_FILE")
            if path:
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write(f"{os.environ.get('TX_RESTART_COUNT', '0')} {state.global_step} {socket.gethostname()}\n")

    return [SlurmTestCallback()]
