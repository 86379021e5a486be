"""The slurm launcher against a real Slurm (scripts/slurm-cluster.sh): real tx training jobs go
through sbatch; their outputs, states (`tx status`), logs (`tx logs`), cancel (`tx cancel`),
`--wait` exit codes and preemption (requeue, then resume from the checkpoint) are checked.

The session fixture starts the single-node cluster (and stops it at the end only if it started
it); if the cluster cannot start, the tests fail, they are never skipped. Training is a tiny
built-in T5 for a few dozen steps, slowed down per step by the test-only plugin
tx_slurm_test_plugin (loaded with `-p`) so that a job can be preempted mid-training.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.conftest import ROOT, read_json, run_tx

pytestmark = pytest.mark.slurm

CLUSTER = ROOT / "scripts" / "slurm-cluster.sh"
HERE = Path(__file__).resolve().parent
EVIL = "$(touch /tmp/tx-slurm-pwned) `touch /tmp/tx-slurm-pwned2` 'q' \"dq\" ;id"
TRAIN = (
    "--max_train_samples", "64", "--per_device_train_batch_size", "4", "--do_eval", "false",
    "--do_predict", "false", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true",
)
#: job start here: python + torch + transformers imports on a busy 2-CPU machine
JOB_TIMEOUT = 600


@pytest.fixture(scope="session")
def slurm_cluster() -> str:
    """A running single-node Slurm; SLURM_CONF is set for the session (and so for tx and its jobs)."""
    was_up = subprocess.run(["bash", str(CLUSTER), "status"], capture_output=True, text=True).returncode == 0
    done = subprocess.run(["bash", str(CLUSTER), "up"], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        pytest.fail(f"scripts/slurm-cluster.sh up failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    line = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if not line.startswith("export SLURM_CONF="):
        pytest.fail(f"scripts/slurm-cluster.sh up printed {done.stdout!r}, not an export line")
    conf = line.split("=", 1)[1]
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = conf
    yield conf
    if previous is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = previous
    if not was_up:
        subprocess.run(["bash", str(CLUSTER), "down"], capture_output=True, text=True, timeout=300)


# -- helpers ---------------------------------------------------------------------------------------
def plugin_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(HERE), os.environ.get("PYTHONPATH", "")) if p)
    return {"PYTHONPATH": path, **extra}


def tx_run_argv(out: Path, *flags: str) -> list[str]:
    return ["-p", "tx_slurm_test_plugin", "run", "summarization", "--launcher", "slurm",
            "--output_dir", str(out), *TRAIN, *flags]


def submitted(stdout: str) -> tuple[str, str]:
    """(tx job id, Slurm job id) from the submit summary."""
    m = re.search(r"submitted (\S+) to slurm \(Slurm job (\d+)\)", stdout)
    assert m, stdout
    return m.group(1), m.group(2)


def submit(out: Path, *flags: str, **env: str) -> tuple[str, str]:
    result = run_tx(*tx_run_argv(out, *flags), env=plugin_env(**env))
    assert result.returncode == 0, result.stdout + result.stderr
    return submitted(result.stdout)


def scontrol(slurm_id: str, conf: str | None = None) -> dict[str, str]:
    env = {**os.environ, "SLURM_CONF": conf} if conf else None
    done = subprocess.run(["scontrol", "show", "job", "-o", slurm_id], capture_output=True, text=True, timeout=60,
                          env=env)
    assert done.returncode == 0, done.stderr
    return dict(re.findall(r"(?:^|\s)(JobState|Restarts|ExitCode|NodeList)=(\S*)", done.stdout))


def wait_until(what: str, check: Callable[[], Any], timeout: float = JOB_TIMEOUT, every: float = 0.5) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting until {what}")


def wait_state(slurm_id: str, *states: str, conf: str | None = None) -> dict[str, str]:
    return wait_until(f"Slurm job {slurm_id} is {'/'.join(states)}",
                      lambda: (f := scontrol(slurm_id, conf)) and f["JobState"] in states and f)


def steps(path: Path, host: str | None = None) -> list[tuple[int, int]]:
    """(restart, global_step) lines the plugin wrote at each step end (of processes on ``host``)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        restart, step, where = line.split()
        if host is None or where == host:
            out.append((int(restart), int(step)))
    return out


def status_row(job_id: str) -> dict[str, str]:
    result = run_tx("status", job_id)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header, row = lines[0].split(), lines[1].split()
    assert header[:6] == ["JOB", "LAUNCHER", "ID", "STATE", "ELAPSED", "RESTARTS"], lines[0]
    values = dict(zip(["JOB", "LAUNCHER", "ID", "STATE"], row[:4]))
    rest = row[4:]
    if values["STATE"] in ("FAILED", "CANCELLED") and rest and rest[0].startswith("("):
        values["STATE"] += " " + rest.pop(0)
    values.update(zip(["ELAPSED", "RESTARTS", "NODES"], rest))
    return values


def log_text(job_id: str) -> str:
    result = run_tx("logs", job_id)
    assert result.returncode == 0, result.stderr
    return result.stdout


def run_tx_argv() -> list[str]:
    """The command that runs the real CLI (for jobs followed in the background with Popen)."""
    return [sys.executable, "-m", "tx.core.cli"]


def _submitted_record(out: Path) -> tuple[str, str] | None:
    """(tx job id, Slurm job id) of the job tx submitted for ``out``, once its record exists."""
    from tx.core.jobs import all_records

    for record in all_records():
        if record.get("output_dir") == str(out) and record.get("scheduler_id"):
            return record["job_id"], str(record["scheduler_id"])
    return None


# -- tests -----------------------------------------------------------------------------------------
def test_submit_returns_at_once_and_the_job_trains(slurm_cluster: str, tmp_path: Path) -> None:
    """torchrun with 2 processes inside the allocation, asked for with the vocabulary of every
    launcher (--nproc-per-node 2: --inner auto picks torchrun, #SBATCH --cpus-per-task follows);
    an argument full of shell syntax reaches the worker exactly and is never executed; status,
    logs (-f ends with the job) and outputs; a warning for the output_dir under /tmp."""
    out = tmp_path / "run"
    args_file = tmp_path / "worker-args.json"
    for leftover in ("/tmp/tx-slurm-pwned", "/tmp/tx-slurm-pwned2"):
        Path(leftover).unlink(missing_ok=True)
    result = run_tx(*tx_run_argv(out, "--nproc-per-node", "2", "--max_steps", "4", "--source_prefix", EVIL),
                    env=plugin_env(TX_TEST_ARGS_FILE=str(args_file)))
    assert result.returncode == 0, result.stdout + result.stderr
    job_id, slurm_id = submitted(result.stdout)
    # returned at once: the job is still queued or running
    assert scontrol(slurm_id)["JobState"] in ("PENDING", "CONFIGURING", "RUNNING"), result.stdout
    script = out / "tx-slurm" / f"{job_id}.sbatch"
    log = out / "tx-slurm" / f"{job_id}.log"
    assert f"log       {log}" in result.stdout and f"sbatch {script}" in result.stdout
    assert f"tx logs -f {job_id}" in result.stdout
    text = script.read_text()
    assert f"#   sbatch {script}" in text and "--source_prefix" not in text and "tx-slurm-pwned" not in text
    assert "#SBATCH --cpus-per-task=2" in text and "torch.distributed.run --nnodes=1 --nproc-per-node=2" in text
    assert f"tx: warning: output_dir {out} is under /tmp, which each node has for itself" in result.stderr

    follow = subprocess.Popen([*run_tx_argv(), "logs", "-f", slurm_id], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    wait_state(slurm_id, "COMPLETED", "FAILED", "CANCELLED")
    followed, err = follow.communicate(timeout=120)
    assert follow.returncode == 0, err
    assert "tx: finished" in followed and "tx: job step exited with code 0" in followed

    row = status_row(job_id)
    assert (row["STATE"], row["RESTARTS"], row["NODES"]) == ("COMPLETED", "0", socket.gethostname().split(".")[0])
    listed = run_tx("status")
    assert listed.returncode == 0 and job_id in listed.stdout
    logs = log_text(job_id)
    assert "the 2 processes train on CPUs" in logs and "tx: finished" in logs
    assert read_json(out / "trainer_state.json")["global_step"] == 4
    assert (out / "all_results.json").is_file() and (out / "model.safetensors").is_file()
    # the worker parsed the argument exactly as given, and nothing ran it
    assert json.loads(args_file.read_text())["source_prefix"] == EVIL
    assert not Path("/tmp/tx-slurm-pwned").exists() and not Path("/tmp/tx-slurm-pwned2").exists()


def test_wait_returns_the_exit_code_of_the_job(slurm_cluster: str, tmp_path: Path) -> None:
    """Two --wait jobs at once: one fails in the worker (exit 1); one is stopped by SIGUSR2 (the
    default --preempt-signal) with --max-requeues 0, so it saves a checkpoint and is not requeued
    (140 = 128 + SIGUSR2)."""
    fail_out = tmp_path / "fails"
    failing = subprocess.Popen([*run_tx_argv(), *tx_run_argv(fail_out, "--max_steps", "4", "--wait")],
                               env={**os.environ, **plugin_env(TX_TEST_FAIL="1")},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, steps_file = tmp_path / "no-requeue", tmp_path / "steps"
    stopped = subprocess.Popen(
        [*run_tx_argv(), *tx_run_argv(out, "--max_steps", "300", "--max-requeues", "0", "--wait")],
        env={**os.environ, **plugin_env(TX_TEST_STEP_SLEEP="0.5", TX_TEST_STEPS_FILE=str(steps_file))},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    job_id, slurm_id = wait_until("the --wait job is submitted", lambda: _submitted_record(out))
    preempt_when_training(steps_file, slurm_id, ["scancel", "--signal=USR2", "--batch", slurm_id], min_steps=2)

    stdout, stderr = failing.communicate(timeout=JOB_TIMEOUT)
    fail_job, fail_id = submitted(stdout)
    assert failing.returncode == 1, stdout + stderr
    assert "failing on purpose" in stdout  # the job's log, printed live
    assert f"Slurm job {fail_id} ended: FAILED (exit code 1)" in stderr
    assert scontrol(fail_id)["JobState"] == "FAILED"
    assert status_row(fail_job)["STATE"] == "FAILED (1)"

    stdout, stderr = stopped.communicate(timeout=JOB_TIMEOUT)
    assert stopped.returncode == 140, stdout + stderr
    assert "tx: not requeueing: the job has been requeued 0 times (--max-requeues 0)" in stdout
    assert f"Slurm job {slurm_id} ended: FAILED (exit code 140)" in stderr
    row = status_row(job_id)
    assert (row["STATE"], row["RESTARTS"]) == ("FAILED (140)", "0")
    last = steps(steps_file)[-1][1]
    assert (out / f"checkpoint-{last}" / "trainer_state.json").is_file()


def test_cancel_saves_a_checkpoint_and_is_idempotent(slurm_cluster: str, tmp_path: Path) -> None:
    out = tmp_path / "run"
    steps_file = tmp_path / "steps"
    job_id, slurm_id = submit(out, "--max_steps", "500", TX_TEST_STEP_SLEEP="0.5", TX_TEST_STEPS_FILE=str(steps_file))
    wait_until("the job trains", lambda: len(steps(steps_file)) >= 2)
    first = run_tx("cancel", job_id)
    assert first.returncode == 0, first.stderr
    assert f"cancelled job {job_id} (Slurm job {slurm_id}), which was RUNNING" in first.stdout
    wait_state(slurm_id, "CANCELLED")
    again = run_tx("cancel", slurm_id)
    assert again.returncode == 0, again.stderr
    assert "already ended (CANCELLED); nothing to cancel" in again.stdout
    assert status_row(job_id)["STATE"].startswith("CANCELLED")
    # SIGTERM from scancel: the worker saved a checkpoint at its next step before it stopped
    last = steps(steps_file)[-1][1]
    assert (out / f"checkpoint-{last}" / "trainer_state.json").is_file(), sorted(p.name for p in out.iterdir())
    assert f"training stopped by SIGTERM at step {last}" in (out / "tx-slurm" / f"{job_id}.log").read_text()


def preempt_when_training(steps_file: Path, slurm_id: str, command: list[str], min_steps: int = 5) -> None:
    wait_until(f"job {slurm_id} has trained {min_steps} steps", lambda: len(steps(steps_file)) >= min_steps)
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def check_resumed(out: Path, job_id: str, steps_file: Path, max_steps: int, host: str | None = None) -> None:
    """Run 0 trained 1..K, saved checkpoint-K; run 1 resumed from it and trained K+1..max_steps."""
    seen = steps(steps_file, host)
    first = [s for r, s in seen if r == 0]
    second = [s for r, s in seen if r == 1]
    assert first and second and {r for r, _ in seen} == {0, 1}, seen
    k = first[-1]
    assert first == list(range(1, k + 1)) and second == list(range(k + 1, max_steps + 1)), seen
    assert read_json(out / "trainer_state.json")["global_step"] == max_steps
    log = (out / "tx-slurm" / f"{job_id}.log").read_text()
    assert f"checkpoint saved in {out}/checkpoint-{k}" in log
    assert f"resuming from {out}/checkpoint-{k}" in log
    row = status_row(job_id)
    assert (row["STATE"], row["RESTARTS"]) == ("COMPLETED", "1"), row


def test_preempted_jobs_requeue_and_resume(slurm_cluster: str, tmp_path: Path) -> None:
    """Two jobs at once: one gets the time-limit signal (SIGUSR2 to the batch shell, as Slurm sends
    it --signal-grace seconds before the limit) and requeues itself; one is requeued by Slurm
    (`scontrol requeue`, as a preemption does). Both finish with exactly max_steps optimizer
    steps, the second run resuming from the checkpoint the first one saved."""
    max_steps = 30
    usr1_out, usr1_steps = tmp_path / "usr1", tmp_path / "usr1.steps"
    waiting = subprocess.Popen(
        [*run_tx_argv(), *tx_run_argv(usr1_out, "--max_steps", str(max_steps), "--wait")],
        env={**os.environ, **plugin_env(TX_TEST_STEP_SLEEP="0.4", TX_TEST_STEPS_FILE=str(usr1_steps))},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    req_out, req_steps = tmp_path / "requeue", tmp_path / "requeue.steps"
    # --overwrite_output_dir: the first start trains from scratch, a restart still resumes
    req_job, req_id = submit(req_out, "--max_steps", str(max_steps), "--overwrite_output_dir",
                             TX_TEST_STEP_SLEEP="0.4", TX_TEST_STEPS_FILE=str(req_steps))
    usr1_job, usr1_id = wait_until("the --wait job is submitted", lambda: _submitted_record(usr1_out))
    errors: list[BaseException] = []

    def drive(*args: Any) -> None:
        try:
            preempt_when_training(*args)
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            errors.append(exc)

    threads = [
        threading.Thread(target=drive, args=(usr1_steps, usr1_id, ["scancel", "--signal=USR2", "--batch", usr1_id])),
        threading.Thread(target=drive, args=(req_steps, req_id, ["scontrol", "requeue", req_id])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOB_TIMEOUT)
    assert not errors, errors
    stdout, stderr = waiting.communicate(timeout=JOB_TIMEOUT)
    assert waiting.returncode == 0, stdout + stderr
    # --wait followed the job through its requeue, printing its log as it went
    assert "tx: SIGUSR2: the workers save a checkpoint" in stdout
    assert f"tx: requeueing job {usr1_id} (requeue 1 of at most 3)" in stdout
    assert "tx: finished" in stdout
    assert f"Slurm job {usr1_id} ended: COMPLETED (exit code 0)" in stderr
    wait_state(req_id, "COMPLETED")
    check_resumed(usr1_out, usr1_job, usr1_steps, max_steps)
    check_resumed(req_out, req_job, req_steps, max_steps)


# -- two nodes ---------------------------------------------------------------------------------------
TWO_NODES = ROOT / "scripts" / "slurm-two-nodes.sh"


@pytest.fixture(scope="session")
def two_node_cluster(slurm_cluster: str) -> str:
    """A real two-node Slurm (two slurmd in network namespaces); its SLURM_CONF. slurm_cluster
    comes first: it installs the packages."""
    was_up = subprocess.run(["bash", str(TWO_NODES), "status"], capture_output=True, text=True).returncode == 0
    done = subprocess.run(["bash", str(TWO_NODES), "up"], capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not done.stdout.startswith("export SLURM_CONF="):
        pytest.fail(f"scripts/slurm-two-nodes.sh up failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    yield done.stdout.strip().split("=", 1)[1]
    if not was_up:
        subprocess.run(["bash", str(TWO_NODES), "down"], capture_output=True, text=True, timeout=300)


def test_two_nodes_train_as_one_job_and_resume_after_preemption(two_node_cluster: str, tmp_path: Path) -> None:
    """--nodes 2: srun starts torchrun on each node, they meet on the first node and train one
    data-parallel job (one process per node); SIGUSR2 stops both ranks at the same step, the job
    requeues itself and both nodes resume from the checkpoint."""
    conf = two_node_cluster
    out, steps_file = tmp_path / "run", tmp_path / "steps"
    max_steps = 16
    waiting = subprocess.Popen(
        [*run_tx_argv(), *tx_run_argv(out, "--nnodes", "2", "--inner", "torchrun", "--max_steps", str(max_steps),
                                      "--wait")],
        env={**os.environ, **plugin_env(TX_TEST_STEP_SLEEP="0.4", TX_TEST_STEPS_FILE=str(steps_file)),
             "SLURM_CONF": conf},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    job_id, slurm_id = wait_until("the --wait job is submitted", lambda: _submitted_record(out))
    wait_until("both nodes train", lambda: {s for _, s in steps(steps_file, "txs-n2")} & {s for _, s in steps(steps_file, "txs-n1")} >= {1, 2, 3})
    done = subprocess.run(["scancel", "--signal=USR2", "--batch", slurm_id], capture_output=True, text=True,
                          env={**os.environ, "SLURM_CONF": conf}, timeout=60)
    assert done.returncode == 0, done.stderr
    stdout, stderr = waiting.communicate(timeout=JOB_TIMEOUT)
    assert waiting.returncode == 0, stdout + stderr
    assert f"Slurm job {slurm_id} (start 1) on txs-n[1-2]; rendezvous txs-n1:{20000 + int(slurm_id) % 20000}" in stdout
    assert "the 2 processes train on CPUs" in stdout  # one job of world size 2, not two copies
    # each node's rank saw every step: the same K in the first start, K+1..max in the second
    check_resumed(out, job_id, steps_file, max_steps, host="txs-n1")
    check_resumed(out, job_id, steps_file, max_steps, host="txs-n2")
    # 16 steps x 4 per device x 2 processes = 128 samples = 2 epochs of the 64 training rows
    assert read_json(out / "trainer_state.json")["epoch"] == pytest.approx(2.0)
    assert status_row(job_id)["NODES"] == "txs-n[1-2]"
