"""core/threads.py: a CPU training process uses no more intra-op threads than the cores other
processes leave free (pure rules, and a real busy process next to a real torch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

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
    tuner.choose()
    end = time.time() + 1.5  # the load goes; the job's count stays
    while time.time() < end: pass
    tuner.choose()
    print(json.dumps({"most": tuner.most, "cores": usable_cores(), "history": tuner.history,
                      "now": torch.get_num_threads(), "fixed": tuner.threads}))
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
    assert found["now"] == threads == found["fixed"]  # applied to torch, and chosen once
    if found["cores"] <= found["most"]:
        assert threads < found["most"], found


# -- one thread count per job: kill -9 and resume under load ends where the uninterrupted run ends --
DATA = Path(__file__).resolve().parents[2] / "plugins" / "summarization" / "data"
PLUGIN_DIR = Path(__file__).resolve().parent  # holds tx_fault_plugin.py
STEPS = 12
HOG = "import time\nend = time.time() + {seconds}\nwhile time.time() < end: pass\n"


def _pinned(cpus: set[int]) -> Callable[[], None]:
    return lambda: os.sched_setaffinity(0, cpus)


def _tuning_env(fault: str | None) -> dict[str, str]:
    """The tuner active: no OMP_NUM_THREADS/MKL_NUM_THREADS (the conftest sets the first)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TX_TUNE_THREADS")}
    env["PYTHONPATH"] = os.pathsep.join([str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")])
    env["TX_FAULT"] = fault or ""
    return env


def _train(out: Path, cpus: set[int], fault: str | None = None, steps: int = STEPS) -> subprocess.CompletedProcess[str]:
    """32 rows / batch 8: 4 steps an epoch, a checkpoint every 2 steps; long enough sources that the
    thread count changes the weights (1 vs 2 threads: ~6e-7 after 4 steps at lr 1e-3)."""
    cmd = [sys.executable, "-m", "tx.core.cli", "-p", "tx_fault_plugin", "run", "summarization",
           "--model_name_or_path", "tx-builtin:t5-tiny-summarization-v1", "--train_file", str(DATA / "train.jsonl"),
           "--do_train", "--max_train_samples", "32", "--per_device_train_batch_size", "8", "--max_steps", str(steps),
           "--learning_rate", "5e-3", "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1",
           "--seed", "3", "--report_to", "none", "--disable_tqdm", "true", "--output_dir", str(out)]
    return subprocess.run(cmd, env=_tuning_env(fault), preexec_fn=_pinned(cpus), capture_output=True, text=True,
                          timeout=600)


def _recorded(state_file: Path) -> int | None:
    entry = json.loads(state_file.read_text())["stateful_callbacks"].get("TxIntraOpThreads")
    return entry["args"]["intra_op_threads"] if entry else None


class Hogs:
    """Busy loops, one per core of ``cpus``, pinned there, each ending by itself after ``seconds``."""

    def __init__(self, cpus: set[int], seconds: int = 600) -> None:
        self.procs = [subprocess.Popen([sys.executable, "-c", HOG.format(seconds=seconds)],
                                       preexec_fn=_pinned(cpus)) for _ in cpus]

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(timeout=30)


@pytest.mark.train
def test_killed_and_resumed_under_load_ends_with_the_uninterrupted_weights(tmp_path: Path) -> None:
    """The reference and the first start run next to busy loops (the tuner picks its count from
    that load); the job is then killed -9 at two random steps and resumed, once with the machine
    quiet and once loaded again. Every checkpoint records the first start's count, each resume
    uses it, and the final weights equal the uninterrupted run's."""
    import random

    import torch
    from safetensors.torch import load_file

    cpus = set(sorted(os.sched_getaffinity(0))[:2])
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    first_kill = rng.randint(3, 6)  # after checkpoint-2
    second_kill = rng.randint(first_kill + 2, STEPS - 1)
    note = f"(kill steps {first_kill}, {second_kill}; random seed {seed})"

    hogs = Hogs(cpus)
    try:
        reference = _train(tmp_path / "reference", cpus)
        assert reference.returncode == 0, reference.stderr
        threads = _recorded(tmp_path / "reference" / "trainer_state.json")
        assert threads is not None, "no thread count recorded"
        if len(cpus) == 2:  # two busy loops on two cores: the tuner gives up a thread
            assert threads == 1, threads

        out = tmp_path / "run"
        first = _train(out, cpus, f"{first_kill}:step_begin")
        assert first.returncode == 137 and f"SIGKILL at {first_kill}:step_begin" in first.stderr, first.stderr + note
    finally:
        hogs.stop()

    second = _train(out, cpus, f"{second_kill}:step_begin")  # the machine quieter: the count stays
    assert second.returncode == 137 and f"SIGKILL at {second_kill}:step_begin" in second.stderr, second.stderr + note
    hogs = Hogs(cpus)
    try:
        last = _train(out, cpus)
    finally:
        hogs.stop()
    assert last.returncode == 0, last.stderr + note

    got, want = load_file(out / "model.safetensors"), load_file(tmp_path / "reference" / "model.safetensors")
    worst = max(float((got[k] - want[k]).abs().max()) for k in want)
    assert worst <= 1e-6, f"weights differ by {worst} {note}"
    for state_file in [*out.glob("checkpoint-*/trainer_state.json"), out / "trainer_state.json"]:
        assert _recorded(state_file) == threads, f"{state_file} {note}"


@pytest.mark.train
def test_a_resume_uses_the_count_its_checkpoint_recorded_whatever_the_load(tmp_path: Path) -> None:
    """A checkpoint that records 3 threads (a count the load here would never give: at most the
    2 cores, and busy loops fill them) is resumed next to busy loops: the run keeps 3."""
    cpus = set(sorted(os.sched_getaffinity(0))[:2])
    out = tmp_path / "run"
    first = _train(out, cpus, "3:step_begin", steps=4)
    assert first.returncode == 137, first.stderr
    state_file = out / "checkpoint-2" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state["stateful_callbacks"]["TxIntraOpThreads"]["args"]["intra_op_threads"] = 3
    state_file.write_text(json.dumps(state))
    hogs = Hogs(cpus)
    try:
        resumed = _train(out, cpus, steps=4)
    finally:
        hogs.stop()
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout + resumed.stderr
    assert _recorded(out / "checkpoint-4" / "trainer_state.json") == 3
    assert _recorded(out / "trainer_state.json") == 3
