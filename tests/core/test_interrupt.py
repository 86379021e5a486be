"""SIGTERM/SIGINT to a running `tx run`: every process of the job stops, a checkpoint is saved
at the next step (with --save_on_interrupt, the default), the exit code is 128 + the signal
(130 Ctrl-C, 143 SIGTERM) and the message is one line; the same command then resumes.

Real runs with the local, torchrun and deepspeed launchers (2 processes, gloo on CPU). The
test-only plugin tests/core/tx_fault_plugin.py slows steps down and reports the current step,
so the signal lands mid-training.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import alive, descendants, ROOT, run_tx
from tx.core.checkpoints import is_complete_checkpoint, last_checkpoint

DATA = ROOT / "plugins" / "summarization" / "data"
PLUGIN_DIR = Path(__file__).resolve().parent


def command(output_dir: Path, *extra: str) -> list[str]:
    """Saves nothing by itself (--save_strategy no): a checkpoint can only come from the stop."""
    return [
        "-p", "tx_fault_plugin", "run", "summarization", *extra,
        "--model_name_or_path", "tx-builtin:t5-tiny-summarization-v1",
        "--train_file", str(DATA / "train.jsonl"), "--do_train", "--max_train_samples", "32",
        "--max_source_length", "32", "--max_target_length", "8", "--per_device_train_batch_size", "2",
        "--max_steps", "12", "--save_strategy", "no", "--seed", "3",
        "--report_to", "none", "--disable_tqdm", "true", "--output_dir", str(output_dir),
    ]


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")]),
            **extra}




def interrupt(tmp_path: Path, sig: int, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path, set[int]]:
    """Start `tx run`, wait until step 2 has ended, send ``sig`` to tx only, wait for it."""
    out, ready = tmp_path / "run", tmp_path / "step"
    proc = subprocess.Popen([sys.executable, "-m", "tx.core.cli", *command(out, *extra)],
                            env=env(TX_FAULT_SLEEP="0.5", TX_FAULT_READY=str(ready)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not (ready.exists() and ready.read_text().strip() and int(ready.read_text()) >= 2):
        if proc.poll() is not None:
            stdout, stderr = proc.communicate()
            pytest.fail(f"tx ended before the signal (exit {proc.returncode}):\n{stdout[-3000:]}\n{stderr[-6000:]}")
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.2)
    children = descendants(proc.pid)
    assert children, "no worker process"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), out, children


def assert_interrupted(result: subprocess.CompletedProcess[str], out: Path, children: set[int],
                       code: int, name: str) -> Path:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "interrupted:" in line]
    assert len(lines) == 1, result.stderr  # one line, even with two worker processes
    assert lines[0].startswith("tx: interrupted: training stopped by " + name), lines[0]
    assert "run the same command again to resume" in lines[0].lower(), lines[0]
    assert not [pid for pid in children if alive(pid)], "a process of the job outlived tx"
    ckpt = last_checkpoint(out)
    assert ckpt is not None and is_complete_checkpoint(ckpt), sorted(p.name for p in out.iterdir())
    assert f"checkpoint saved in {ckpt}" in lines[0]
    assert int(ckpt.name.split("-")[1]) >= 2
    assert not (out / "model.safetensors").exists(), "an interrupted run is not a finished one"
    return ckpt


@pytest.mark.train
def test_sigterm_saves_a_checkpoint_exits_143_and_the_same_command_resumes(tmp_path: Path) -> None:
    result, out, children = interrupt(tmp_path, signal.SIGTERM)
    ckpt = assert_interrupted(result, out, children, 143, "SIGTERM")

    rerun = run_tx(*command(out), env={"PYTHONPATH": env()["PYTHONPATH"]})
    assert rerun.returncode == 0, rerun.stderr
    assert f"resuming from {ckpt}" in rerun.stdout + rerun.stderr
    assert (out / "model.safetensors").is_file()


@pytest.mark.train
def test_ctrl_c_exits_130_with_a_checkpoint(tmp_path: Path) -> None:
    result, out, children = interrupt(tmp_path, signal.SIGINT)
    assert_interrupted(result, out, children, 130, "SIGINT")


@pytest.mark.train
def test_without_save_on_interrupt_it_stops_at_once_and_saves_nothing(tmp_path: Path) -> None:
    result, out, children = interrupt(tmp_path, signal.SIGTERM, "--save_on_interrupt", "false")
    assert result.returncode == 143, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if "interrupted:" in line]
    assert lines == ["tx: interrupted: stopped by SIGTERM (nothing saved since the last checkpoint). "
                     "Run the same command again to resume."], result.stderr
    assert last_checkpoint(out) is None
    assert not [pid for pid in children if alive(pid)]


@pytest.mark.train
@pytest.mark.distributed
def test_sigterm_to_torchrun_job_stops_every_rank_with_one_checkpoint(tmp_path: Path) -> None:
    result, out, children = interrupt(tmp_path, signal.SIGTERM, "--launcher", "torchrun", "--nproc-per-node", "2")
    ckpt = assert_interrupted(result, out, children, 143, "SIGTERM")
    assert (ckpt / "rng_state_0.pth").is_file() and (ckpt / "rng_state_1.pth").is_file()


@pytest.mark.train
@pytest.mark.deepspeed
def test_sigint_to_deepspeed_job_stops_every_rank_with_one_checkpoint(tmp_path: Path) -> None:
    result, out, children = interrupt(tmp_path, signal.SIGINT, "--launcher", "deepspeed", "--deepspeed", "zero2",
                                      "--num-gpus", "2")
    ckpt = assert_interrupted(result, out, children, 130, "SIGINT")
    assert any(ckpt.glob("global_step*")), sorted(p.name for p in ckpt.iterdir())
