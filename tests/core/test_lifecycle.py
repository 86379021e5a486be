"""The run lifecycle (issue 13, findings 2-4): a finished job rerun is left alone, a checkpoint
resumes only into its own job, --overwrite_output_dir really starts clean yet an interrupted
run of it still resumes, and one job at a time uses an output dir.

Real tiny trainings through the real `tx run` (a few steps of the built-in T5 on 8 rows); the
lock's staleness rules are also checked directly, without training.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, assert_one_line_error, descendants, read_json, run_tx
from tx.core import runlock
from tx.core.errors import ConfigError
from tx.core.jobidentity import CHECKPOINT_RECORD, FINISHED_RECORD, differences
from tx.core.jobspec import read as read_job

DATA = ROOT / "plugins" / "summarization" / "data"
PLUGIN_DIR = Path(__file__).resolve().parent  # tx_fault_plugin.py
MODEL = {"model_name_or_path": "tx-builtin:t5-tiny-summarization-v1", "train_file": str(DATA / "train.jsonl")}


def command(output_dir: Path, *extra: str, max_steps: int = 2, save_steps: int = 2) -> list[str]:
    return [
        "-p", "tx_fault_plugin", "run", "summarization",
        "--model_name_or_path", "tx-builtin:t5-tiny-summarization-v1",
        "--train_file", str(DATA / "train.jsonl"), "--do_train", "--max_train_samples", "8",
        "--max_source_length", "32", "--max_target_length", "8", "--per_device_train_batch_size", "4",
        "--max_steps", str(max_steps), "--save_strategy", "steps", "--save_steps", str(save_steps),
        "--seed", "5", "--report_to", "none", "--disable_tqdm", "true", "--output_dir", str(output_dir), *extra,
    ]


def env(**extra: str) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")]), **extra}


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``root``: content hash and modification time (ns)."""
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


# --- finding 2: a finished job rerun ---------------------------------------------------------
@pytest.mark.train
def test_rerun_of_a_finished_job_says_so_and_touches_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    ok(run_tx(*command(out), env=env()))
    first = read_json(out / "train_results.json")
    assert first["train_loss"] > 0
    before = snapshot(out)

    again = ok(run_tx(*command(out), env=env()))
    lines = [line for line in again.stderr.splitlines() if line.startswith("tx:")]
    assert len(lines) == 1 and lines[0].startswith("tx: done:") and "already finished" in lines[0], again.stderr
    assert "--overwrite_output_dir" in lines[0]
    assert snapshot(out) == before  # byte-identical, same mtimes, job file included

    # the explicit way to run it again: from scratch, with real numbers
    fresh = ok(run_tx(*command(out, "--overwrite_output_dir"), env=env()))
    assert "resuming from" not in fresh.stdout + fresh.stderr
    redo = read_json(out / "train_results.json")
    assert redo["train_loss"] == pytest.approx(first["train_loss"], rel=1e-4) and redo["train_loss"] > 0
    assert read_json(out / "trainer_state.json")["global_step"] == 2


# --- finding 3: a checkpoint of another job ----------------------------------------------------
@pytest.mark.train
def test_a_checkpoint_resumes_only_into_its_own_job(tmp_path: Path) -> None:
    out = tmp_path / "run"
    ok(run_tx(*command(out, max_steps=4), env=env()))
    first_job = read_job(out).job_id
    (out / FINISHED_RECORD).unlink(missing_ok=True)  # as if that job had been killed after its last checkpoint
    before = snapshot(out)

    other = run_tx(*command(out, max_steps=2), env=env())
    line = assert_one_line_error(other, "checkpoint-4", first_job, "max_steps 4 -> 2", "--overwrite_output_dir")
    assert "resuming" not in other.stdout, line
    assert snapshot(out) == before  # refused before launch: nothing written
    assert read_json(out / "checkpoint-4" / CHECKPOINT_RECORD)["job_id"] == first_job

    # --overwrite_output_dir: the other job's checkpoints and results are gone before training
    ok(run_tx(*command(out, "--overwrite_output_dir", max_steps=2), env=env()))
    assert not (out / "checkpoint-4").exists()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]
    assert read_json(out / "trainer_state.json")["global_step"] == 2
    assert read_json(out / "checkpoint-2" / CHECKPOINT_RECORD)["job_id"] == read_job(out).job_id
    # ... so the plain command afterwards finds its own finished job, not the older one
    again = ok(run_tx(*command(out, max_steps=2), env=env()))
    assert "tx: done:" in again.stderr and "resuming" not in again.stdout


@pytest.mark.train
def test_interrupted_overwrite_run_resumes_with_the_same_command_and_kill_9_frees_the_lock(tmp_path: Path) -> None:
    """The interrupted run already made its clean start: the same command (still with
    --overwrite_output_dir) resumes. Its worker was killed with SIGKILL holding the dir's lock:
    the lock is stale, so the rerun takes it."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint-6").mkdir()  # an older job's leftovers, removed by the clean start
    (out / "checkpoint-6" / "trainer_state.json").write_text("{}")
    cmd = command(out, "--overwrite_output_dir", max_steps=4)
    killed = run_tx(*cmd, env=env(TX_FAULT="3:step_begin"))
    assert killed.returncode == 137, killed.stderr
    assert not (out / "checkpoint-6").exists()
    assert (out / "checkpoint-2").is_dir()
    holder = runlock.read(out)
    assert holder is not None and holder.job_id == read_job(out).job_id and holder.is_stale()
    inode = (out / "checkpoint-2" / "model.safetensors").stat().st_ino

    rerun = ok(run_tx(*cmd, env=env()))
    assert f"resuming from {out / 'checkpoint-2'}" in rerun.stdout + rerun.stderr
    assert (out / "checkpoint-2" / "model.safetensors").stat().st_ino == inode  # not trained again
    assert read_json(out / "trainer_state.json")["global_step"] == 4
    assert not (out / runlock.LOCK_NAME).exists()


# --- finding 4: one job per output dir ----------------------------------------------------------
@pytest.mark.train
@pytest.mark.parametrize("launcher", [
    (),
    pytest.param(("--launcher", "torchrun", "--nproc-per-node", "2"), marks=pytest.mark.distributed),
], ids=["local", "torchrun"])
def test_a_second_run_into_a_busy_output_dir_is_refused_and_the_lock_goes_with_the_run(
        tmp_path: Path, launcher: tuple[str, ...]) -> None:
    """The second run, started while the first trains, is refused before it writes anything
    (it used to train alongside, or resume from the running job's checkpoints)."""
    out, ready = tmp_path / "run", tmp_path / "step"
    cmd = command(out, *launcher, max_steps=400, save_steps=1000)
    first = subprocess.Popen([sys.executable, "-m", "tx.core.cli", *cmd],
                             env={**os.environ, **env(TX_FAULT_SLEEP="0.3", TX_FAULT_READY=str(ready))},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while not (ready.exists() and ready.read_text().strip()):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "training never started"
            time.sleep(0.2)
        job_file = (out / "tx-job.yaml").read_bytes()
        running = read_job(out).job_id

        second = run_tx(*cmd, env=env())
        assert_one_line_error(second, f"in use by the running job {running}", socket.gethostname())
        holder = runlock.read(out)
        assert holder is not None and holder.job_id == running and f"pid {holder.pid} " in second.stderr
        if launcher:
            assert holder.pid == first.pid  # torchrun: `tx` itself, which waits for the workers
        else:
            assert holder.pid in descendants(first.pid)  # local: the process that trains
        assert (out / "tx-job.yaml").read_bytes() == job_file  # the running job's file is untouched
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGTERM)
        stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 143, stderr
    assert not (out / runlock.LOCK_NAME).exists()  # released on the signal path too


# --- the lock's rules, without training -----------------------------------------------------------
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(out: Path, **fields: object) -> None:
    holder = runlock.Holder.this("other-job")
    data = {**holder.__dict__, **fields}
    out.mkdir(parents=True, exist_ok=True)
    (out / runlock.LOCK_NAME).write_text(json.dumps(data))


def test_a_live_holder_on_this_host_keeps_the_lock(tmp_path: Path) -> None:
    _write_lock(tmp_path, pid=os.getpid(), pid_start=runlock.start_time(os.getpid()))
    with pytest.raises(ConfigError, match="in use by the running job other-job"):
        runlock.acquire(tmp_path, "mine")
    with pytest.raises(ConfigError):
        runlock.check_free(tmp_path)
    assert runlock.read(tmp_path).job_id == "other-job"


@pytest.mark.parametrize("fields", [
    {"pid": "dead"},                                  # kill -9 / OOM: no such process
    {"pid": "self", "pid_start": 1},                  # the pid now belongs to another process
    {"pid": "self", "boot_id": "an-earlier-boot"},    # the machine rebooted
], ids=["pid-gone", "pid-reused", "rebooted"])
def test_a_stale_lock_on_this_host_is_taken_over(tmp_path: Path, fields: dict) -> None:
    fields = dict(fields)
    fields["pid"] = _dead_pid() if fields["pid"] == "dead" else os.getpid()
    _write_lock(tmp_path, **fields)
    runlock.check_free(tmp_path)
    with runlock.held(tmp_path, "mine") as holder:
        assert runlock.read(tmp_path) == holder and holder.pid == os.getpid()
    assert not (tmp_path / runlock.LOCK_NAME).exists()


def test_a_lock_of_another_host_is_never_broken_silently(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write_lock(tmp_path, host="node-17", pid=_dead_pid())
    with pytest.raises(ConfigError, match="node-17") as info:
        runlock.acquire(tmp_path, "mine")
    assert str(tmp_path / runlock.LOCK_NAME) in info.value.one_line()  # says how to clear it by hand
    # its heartbeat stopped long ago (the node or container died): stale
    past = time.time() - runlock.STALE_SECONDS - 60
    os.utime(tmp_path / runlock.LOCK_NAME, (past, past))
    with runlock.held(tmp_path, "mine"):
        assert runlock.read(tmp_path).job_id == "mine"
    # ... except by a scheduler restart of that same job (Slurm requeue): its previous run has ended
    monkeypatch.setenv("TX_RESTART_COUNT", "1")
    _write_lock(tmp_path, host="node-17", job_id="mine", restart=0)
    with runlock.held(tmp_path, "mine") as holder:
        assert holder.restart == 1 and holder.host == socket.gethostname()


def test_the_holder_keeps_its_lock_fresh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runlock, "HEARTBEAT_SECONDS", 0.05)
    with runlock.held(tmp_path, "mine"):
        past = time.time() - 3600
        os.utime(tmp_path / runlock.LOCK_NAME, (past, past))
        time.sleep(0.5)
        assert runlock.age(tmp_path) < 60
    assert not (tmp_path / runlock.LOCK_NAME).exists()


def test_release_removes_only_its_own_lock(tmp_path: Path) -> None:
    mine = runlock.acquire(tmp_path, "mine")
    (tmp_path / runlock.LOCK_NAME).unlink()
    _write_lock(tmp_path, job_id="next", pid=os.getpid())
    runlock.release(tmp_path, mine)
    assert runlock.read(tmp_path).job_id == "next"


def test_differences_compare_only_arguments_both_records_know() -> None:
    old = {"max_steps": 90, "learning_rate": 5e-5, "gone_in_new_version": 1}
    new = {"max_steps": 6, "learning_rate": 5e-5, "added_in_new_version": True}
    assert differences(old, new) == ["max_steps 90 -> 6"]
    assert differences(old, dict(old)) == []


def test_which_arguments_make_a_different_job() -> None:
    from tx.core import hfargs, plugins
    from tx.core.jobidentity import Identity

    task = plugins.load().tasks.get("summarization")

    def identity(*argv: str) -> Identity:
        base = ["--output_dir", "/tmp/a", "--do_train", "--max_steps", "6"]
        return Identity.of(hfargs.parse(task, [*base, *argv], base=MODEL).run_args)

    plain = identity()
    # where outputs go, logging, saving, devices: the same job
    same = identity("--output_dir", "/tmp/b", "--logging_steps", "1", "--save_steps", "3", "--report_to", "none",
                    "--overwrite_output_dir", "--dataloader_num_workers", "2", "--use_cpu")
    assert same.job == plain.job and same.training_id == plain.training_id
    # evaluation only: the same training, another job
    evaluated = identity("--do_eval", "--max_eval_samples", "4", "--per_device_eval_batch_size", "3")
    assert evaluated.training_id == plain.training_id and evaluated.job_id_hash != plain.job_id_hash
    # the trajectory: another training
    for flag, value in (("--max_steps", "7"), ("--learning_rate", "1e-3"), ("--seed", "1"),
                        ("--per_device_train_batch_size", "3"), ("--max_train_samples", "5")):
        other = identity(flag, value)
        assert other.training_id != plain.training_id, flag
        assert differences(plain.training, other.training)[0].startswith(flag[2:] + " "), flag


def test_an_evaluation_job_after_training_is_its_own_finished_job(tmp_path: Path) -> None:
    """Training finished; evaluating its model in the same folder is another job, finished on
    its own; the training command is still recognised as finished afterwards."""
    from tx.core import hfargs, lifecycle, plugins
    from tx.core.errors import AlreadyFinished
    from tx.core.jobidentity import Identity, finished_data, record_finished

    task = plugins.load().tasks.get("summarization")
    out = tmp_path / "out"
    out.mkdir()

    def identity(*argv: str) -> Identity:
        return Identity.of(hfargs.parse(task, ["--output_dir", str(out), *argv], base=MODEL).run_args)

    def decide(ident: Identity, train: bool, overwrite: bool = False) -> lifecycle.Start:
        return lifecycle.decide(out, ident, do_train=train, overwrite=overwrite, resume_from_checkpoint=None)

    train = identity("--do_train", "--max_steps", "6")
    record_finished(out, finished_data(train, "job-train", 6, []))
    (out / "train_results.json").write_text("{}")
    evaluate = identity("--do_eval", "--model_name_or_path", str(out))
    assert decide(evaluate, train=False) == lifecycle.Start()
    record_finished(out, finished_data(evaluate, "job-eval", None, []))
    for ident, train_flag in ((train, True), (evaluate, False)):
        with pytest.raises(AlreadyFinished):
            decide(ident, train_flag)
    # training with --do_predict added: its training is done, the way out is an evaluation job
    with pytest.raises(ConfigError, match="whose training with these arguments finished") as info:
        decide(identity("--do_train", "--max_steps", "6", "--do_predict"), True)
    assert f"drop --do_train and pass --model_name_or_path {out}" in info.value.one_line()
    with pytest.raises(ConfigError, match="max_steps 6 -> 8"):
        decide(identity("--do_train", "--max_steps", "8"), True)
    assert decide(identity("--do_train", "--max_steps", "8"), True, overwrite=True) == lifecycle.Start(clean=True)
    # a training job that finishes replaces every record: the old evaluation was of another model
    record_finished(out, finished_data(identity("--do_train", "--max_steps", "8"), "job-8", 8, []))
    assert decide(evaluate, train=False) == lifecycle.Start()
