"""kill -9 of `tx` stops the whole job: no process of it trains on (issue 13, finding 5).

A SIGKILL gives `tx` no chance to stop anything, so every process of the job watches `tx` itself
(tx.core.process.watch_parent). Each test starts the real CLI on a tiny summarization job long
enough to be interrupted (200 steps), kills `tx` with SIGKILL at one moment, and then requires
that within a few seconds no process is left: neither those seen below `tx` just before the kill
nor any process whose command line names the job's output folder (which finds re-parented ones).

Moments, per process launcher: while the child that validates the job runs (``stage``; for the
local launcher that child also trains), once the launch tool runs but before any worker exists
(``tool``), while the workers train (``train``), and in the middle of a checkpoint save
(``save``: tx_slow_plugin holds the save open once the weights are staged in ``.tx-partial``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, alive, descendants

DATA = ROOT / "plugins" / "summarization" / "data"
HERE = Path(__file__).resolve().parent  # tx_slow_plugin

LAUNCHERS = {
    "local": (),
    "torchrun": ("--launcher", "torchrun", "--nproc-per-node", "2"),
    "deepspeed": ("--launcher", "deepspeed", "--num-gpus", "2", "--deepspeed", "zero2"),
    "accelerate": ("--launcher", "accelerate", "--num-processes", "2"),
}


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def job_processes(out: Path) -> set[int]:
    """Live processes whose command line names the job's output folder (the stage child's
    --output_dir, the launch tool's and the workers' job file), wherever they were re-parented."""
    mine = os.getpid()
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != mine and str(out) in cmdline(int(name)) and alive(int(name)):
            found.add(int(name))
    return found


def wait_for(what: str, check, proc: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            pytest.fail(f"tx ended (exit {proc.returncode}) before {what}:\n{log.read_text()[-4000:]}")
        assert time.monotonic() < deadline, f"never reached: {what}\n{log.read_text()[-4000:]}"
        time.sleep(0.05)


def kill_tx_at(tmp_path: Path, launcher: str, moment: str) -> None:
    out, slow = tmp_path / "run", tmp_path / "slow"
    slow.mkdir()
    argv = [sys.executable, "-m", "tx.core.cli", "-p", "tx_slow_plugin", "run", "summarization",
            *LAUNCHERS[launcher], "--model_name_or_path", "tx-builtin:t5-tiny-summarization-v1",
            "--train_file", str(DATA / "train.jsonl"), "--do_train", "--max_train_samples", "16",
            "--max_source_length", "32", "--max_target_length", "8", "--per_device_train_batch_size", "2",
            "--max_steps", "200", "--save_strategy", "steps", "--save_steps", "2", "--report_to", "none",
            "--disable_tqdm", "true", "--output_dir", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "TX_SLOW_DIR": str(slow), "TX_SLOW_STEP": "0.2", "TX_SLOW_SAVE": "120" if moment == "save" else "0"}
    log = tmp_path / "log"
    seen: set[int] = set()
    with open(log, "w") as sink:
        proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            if moment == "stage":
                wait_for("the stage child", lambda: any("tx.core.stage" in cmdline(p) for p in descendants(proc.pid)),
                         proc, log)
            elif moment == "tool":
                wait_for("the launch tool", lambda: any("tx.core.launchtool" in cmdline(p)
                                                        for p in descendants(proc.pid)), proc, log)
            elif moment == "train":
                wait_for("step 1", lambda: (slow / "step").is_file() and (slow / "step").read_text() not in ("", "0"),
                         proc, log)
            else:
                wait_for("a checkpoint save", lambda: (slow / "saving").is_file(), proc, log)
                assert list((out / ".tx-partial").glob("checkpoint-*")), "no staged checkpoint"
            seen = descendants(proc.pid) | job_processes(out)
            assert seen, "no process below tx: the check would prove nothing"
            if moment == "tool":
                workers = [p for p in seen if "tx.core.worker" in cmdline(p) and "launchtool" not in cmdline(p)
                           and "deepspeed.launcher" not in cmdline(p) and "accelerate" not in cmdline(p)]
                assert not workers, "the workers were already up: not the moment this test is about"
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            deadline = time.monotonic() + 15
            while (left := {p for p in seen if alive(p)} | job_processes(out)) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not left, (f"processes of the job outlived kill -9 of tx: "
                              f"{ {p: cmdline(p)[:160] for p in left} }\n{log.read_text()[-3000:]}")
        finally:
            for pid in seen | job_processes(out):
                try:
                    os.kill(pid, signal.SIGKILL)  # a failed test leaves nothing training either
                except (ProcessLookupError, PermissionError):
                    pass
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _cases() -> list:
    """(launcher, moment) pairs, each with the markers of its launcher."""
    marks = {"local": (), "torchrun": (pytest.mark.distributed,), "deepspeed": (pytest.mark.deepspeed,),
             "accelerate": (pytest.mark.distributed,)}
    moments = {"local": ("stage", "save"), "torchrun": ("tool", "train", "save"), "deepspeed": ("tool", "save"),
               "accelerate": ("tool", "save")}
    return [pytest.param(launcher, moment, marks=marks[launcher], id=f"{launcher}-{moment}")
            for launcher in moments for moment in moments[launcher]]


@pytest.mark.train
@pytest.mark.parametrize("launcher, moment", _cases())
def test_kill_9_of_tx_stops_the_job(tmp_path: Path, launcher: str, moment: str) -> None:
    kill_tx_at(tmp_path, launcher, moment)
