"""The `tx` process of a local or torchrun run only waits for its workers: it never imports torch,
transformers or datasets (tx.core.stage resolves and validates the job in a child).

Checked on the real process of a real run, two ways: while the worker trains, the memory map of
`tx` holds no libtorch although a process below it does (so the check can fail), and
`python -X importtime` (which logs every module that interpreter imports, and is not passed on to
the processes it starts) lists none of the heavy modules for `tx` from start to end.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import assert_one_line_error, descendants, HEAVY_MODULES, read_json, ROOT
from tx.core import stage
from tx.core.plugins import load
from tx.core.run import split_tx_flags, staged_launcher

DATA = ROOT / "plugins" / "summarization" / "data"
PLUGIN_DIR = Path(__file__).resolve().parent  # tx_fault_plugin: slows steps, says which step ended



def maps_torch(pid: int) -> bool:
    """Whether libtorch is mapped into ``pid`` (False when the process is gone)."""
    try:
        return "libtorch" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def imported(stderr: str) -> set[str]:
    """Top-level packages in `-X importtime` lines (only `tx` itself writes them)."""
    out = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                out.add(name.split(".")[0])
    return out


def run_and_watch(tmp_path: Path, *launcher: str) -> tuple[subprocess.CompletedProcess[str], bool, bool]:
    """Run a short real training; at step 2 look at the maps of `tx` and of the processes below it."""
    out, ready = tmp_path / "run", tmp_path / "step"
    argv = [sys.executable, "-X", "importtime", "-m", "tx.core.cli", "-p", "tx_fault_plugin", "run", "summarization",
            *launcher, "--model_name_or_path", "tx-builtin:t5-tiny-summarization-v1",
            "--train_file", str(DATA / "train.jsonl"), "--do_train", "--max_train_samples", "16",
            "--max_source_length", "32", "--max_target_length", "8", "--per_device_train_batch_size", "2",
            "--max_steps", "4", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
            "--output_dir", str(out)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")]),
           "TX_FAULT_SLEEP": "0.5", "TX_FAULT_READY": str(ready)}
    # files, not pipes: nobody reads a pipe while the test waits, and a full one would stall tx
    with open(tmp_path / "stdout", "w+") as stdout, open(tmp_path / "stderr", "w+") as stderr:
        proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=stderr, text=True)
        deadline = time.monotonic() + 600
        try:
            while not (ready.exists() and ready.read_text().strip() and int(ready.read_text()) >= 2):
                if proc.poll() is not None:
                    pytest.fail(f"tx ended before step 2 (exit {proc.returncode}):\n"
                                f"{(tmp_path / 'stderr').read_text()[-6000:]}")
                assert time.monotonic() < deadline, "training never started"
                time.sleep(0.1)
            tx_has_torch = maps_torch(proc.pid)
            worker_has_torch = any(maps_torch(pid) for pid in descendants(proc.pid))
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr_text = (tmp_path / "stderr").read_text()
    result = subprocess.CompletedProcess(argv, proc.returncode, (tmp_path / "stdout").read_text(), stderr_text)
    assert result.returncode == 0, stderr_text[-6000:]
    assert read_json(out / "trainer_state.json")["global_step"] == 4
    assert (out / "tx-job.yaml").is_file()
    return result, tx_has_torch, worker_has_torch


def assert_light(result: subprocess.CompletedProcess[str], tx_has_torch: bool, worker_has_torch: bool) -> None:
    assert worker_has_torch, "no process below tx mapped libtorch: the check would prove nothing"
    assert not tx_has_torch, "the waiting tx process mapped libtorch"
    modules = imported(result.stderr)
    assert "tx" in modules and "typer" in modules, "no -X importtime lines from tx"
    heavy = sorted(m for m in HEAVY_MODULES if m in modules)
    assert heavy == [], f"the waiting tx process imported {heavy}"


@pytest.mark.train
def test_a_local_run_trains_in_the_child_and_tx_never_imports_torch(tmp_path: Path) -> None:
    result, tx_has_torch, worker_has_torch = run_and_watch(tmp_path)
    assert_light(result, tx_has_torch, worker_has_torch)


@pytest.mark.train
@pytest.mark.distributed
def test_a_torchrun_run_leaves_tx_without_torch(tmp_path: Path) -> None:
    result, tx_has_torch, worker_has_torch = run_and_watch(tmp_path, "--launcher", "torchrun", "--nproc-per-node", "2")
    assert_light(result, tx_has_torch, worker_has_torch)


# -- fast: which runs are staged, and errors through the child ----------------------------------
def _staged(*argv: str) -> str | None:
    launcher = staged_launcher(load(), split_tx_flags(list(argv)))
    return launcher.name if launcher else None


def test_process_launchers_are_staged_and_the_rest_run_in_tx(tmp_path: Path) -> None:
    assert _staged("summarization") == "local"
    assert _staged("summarization", "--launcher", "torchrun") == "torchrun"
    assert _staged("summarization", "--launcher", "deepspeed") == "deepspeed"
    assert _staged("summarization", "--launcher", "slurm") is None  # a scheduler returns at once
    assert _staged("summarization", "--launcher", "docker") is None
    assert _staged("summarization", "--launcher", "torchrun", "--dry-run") is None
    assert _staged("summarization", "--help") is None
    assert _staged() is None  # no task: resolve says so at once
    assert _staged("summarization", "--launcher", "nope") is None  # resolve names the launchers
    config = tmp_path / "job.yaml"
    config.write_text("launcher: slurm\ndo_train: true\n")
    assert _staged("summarization", "--config", str(config)) is None
    config.write_text("launcher: torchrun\n")
    assert _staged("summarization", "--config", str(config)) == "torchrun"
    assert _staged("summarization", "--config", str(config), "--launcher", "local") == "local"
    job = tmp_path / "run" / "tx-job.yaml"
    job.parent.mkdir()
    job.write_text("task: summarization\nlauncher: slurm\nargs: {output_dir: /tmp/x}\n")
    assert _staged("--from", str(job)) is None
    assert _staged("--from", str(job), "--launcher", "torchrun") == "torchrun"


def test_only_the_local_plan_runs_in_the_child() -> None:
    loaded = load()
    job_file = "/runs/demo/tx-job.yaml"
    from tx.core.launcher import ProcessPlan, worker_argv

    local, torchrun = loaded.launchers.get("local"), loaded.launchers.get("torchrun")
    assert local.worker_in_process(local.plan(None, None, Path(job_file)), job_file)
    assert not local.worker_in_process(ProcessPlan(argv=worker_argv(job_file), env=(("A", "1"),)), job_file)
    assert not local.worker_in_process(ProcessPlan(argv=worker_argv("/other/tx-job.yaml")), job_file)
    opts = torchrun.options()
    assert not torchrun.worker_in_process(torchrun.plan(None, opts, Path(job_file)), job_file)


def test_captured_output_keeps_tx_run_in_one_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert not stage.output_reaches_child()  # capsys replaced sys.stdout: a child could not write there


def test_a_bad_flag_fails_in_the_child_with_one_line_and_nothing_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = [sys.executable, "-X", "importtime", "-m", "tx.core.cli", "run", "summarization", "--launcher", "torchrun",
            "--learnin_rate", "3", "--output_dir", str(out)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    line = assert_one_line_error(result, "unknown flag --learnin_rate", "did you mean --learning_rate?")
    assert line.startswith("tx: error: ")
    assert not out.exists()
    heavy = sorted(m for m in HEAVY_MODULES if m in imported(result.stderr))
    assert heavy == [], f"tx imported {heavy} to report a bad flag its child found"
