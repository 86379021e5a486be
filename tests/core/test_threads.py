"""core/threads.py: a CPU training process uses no more intra-op threads than the cores other
processes leave free (pure rules, and a real busy process next to a real torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tx.core.threads import Snapshot, others_busy, pick_threads, should_tune


@pytest.mark.parametrize("cores,busy,most,expected", [
    (2, 0.0, 2, 2),    # idle: torch's default
    (2, 0.2, 2, 2),    # a little background noise does not count
    (2, 0.35, 2, 1),   # a third of a core taken is enough to make a spinning thread wait
    (2, 1.9, 2, 1),    # never fewer than one
    (8, 3.0, 8, 5),
    (8, 0.0, 4, 4),    # never more than torch's default
])
def test_pick_threads(cores: int, busy: float, most: int, expected: int) -> None:
    assert pick_threads(cores, busy, most) == expected


def test_others_busy_subtracts_this_process() -> None:
    before = Snapshot(busy=1000, total=4000, own=100, at=0.0)
    # 2 cores, 1 s of 100 ticks each: 200 ticks; 150 busy of which 50 are this process
    after = Snapshot(busy=1150, total=4200, own=150, at=1.0)
    assert others_busy(before, after, cores=2) == pytest.approx(1.0)
    assert others_busy(after, after, cores=2) == 0.0


@pytest.mark.parametrize("env,accelerator,expected", [
    ({}, False, True),
    ({}, True, False),
    ({"OMP_NUM_THREADS": "4"}, False, False),   # the user's (or torchrun's) count wins
    ({"MKL_NUM_THREADS": "1"}, False, False),
    ({"TX_TUNE_THREADS": "0"}, False, False),
    ({"TX_TUNE_THREADS": "1"}, False, True),
])
def test_should_tune(env: dict[str, str], accelerator: bool, expected: bool) -> None:
    assert should_tune(env, accelerator=accelerator) is expected


PROBE = """
import json, subprocess, sys, time
hog = subprocess.Popen([sys.executable, "-c", "import time\\nend = time.time() + 30\\nwhile time.time() < end: pass"])
try:
    import torch
    from tx.core.threads import ThreadTuner, usable_cores
    tuner = ThreadTuner()
    time.sleep(1.5)
    tuner.check()
    print(json.dumps({"most": tuner.most, "cores": usable_cores(), "history": tuner.history,
                      "now": torch.get_num_threads()}))
finally:
    hog.kill()
"""


def test_a_busy_process_takes_a_thread_away() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    (busy, threads), = found["history"]
    assert busy >= 0.7, found  # the busy loop alone keeps most of a core
    assert threads == max(1, min(found["most"], found["cores"] - 1)) or busy >= 1.7, found
    assert found["now"] == threads  # applied to torch
    if found["cores"] <= found["most"]:
        assert threads < found["most"], found
