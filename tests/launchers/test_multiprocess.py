"""Real multi-process training on CPU with the torchrun and accelerate launchers (gloo).

The failure these tests exist to catch: a launcher that starts N processes which train N
separate models (torchrun on CPU without gloo), or one whose ranks do not average their
gradients, or whose loss is N times too large. So a 2-process run with per-device batch B must
give the weights and the losses of a 1-process run with batch 2B: same data order (sequential
sampling; rank r takes every other batch of B, so each step sees the same 2B examples), no
dropout in the tiny model, plain SGD without clipping (Adam and clipping would hide a gradient
that is N times too large).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import alive, descendants, read_json, ROOT, run_tx
from tx.core.launcher import LAUNCHTOOL
from tx.launchers.torchrun import TorchrunOptions, torchrun_args

pytestmark = [pytest.mark.train, pytest.mark.distributed]

DATA = ROOT / "plugins" / "summarization" / "data"
EQUIVALENCE = (
    "--max_train_samples", "32", "--max_eval_samples", "16", "--num_train_epochs", "1",
    "--do_train", "--do_eval", "--do_predict", "false", "--predict_with_generate", "false",
    "--train_sampling_strategy", "sequential", "--logging_steps", "1", "--save_strategy", "no",
    "--max_source_length", "64", "--max_target_length", "16", "--optim", "sgd", "--max_grad_norm", "0",
    "--learning_rate", "0.5", "--seed", "7", "--report_to", "none", "--disable_tqdm", "true",
)
GLOO_NOTE = "tx: note: no CUDA device: the 2 processes train on CPUs with --use_cpu True --ddp_backend gloo"


@pytest.fixture(scope="module", autouse=True)
def builtin_model() -> Path:
    """Build the tiny model in one process before any multi-process run uses it."""
    from tx.core.builtin_models import cached_build
    from tx.plugins.summarization import SummarizationTask

    task = SummarizationTask()
    return cached_build(task.builtin_model, task._build_builtin)


def weights(output_dir: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(output_dir / "model.safetensors"))


def max_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest difference over the tensors both files hold (tied weights may be saved once)."""
    common = a.keys() & b.keys()
    assert len(common) > 10, (sorted(a), sorted(b))
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in common)


def step_losses(output_dir: Path) -> list[float]:
    return [h["loss"] for h in read_json(output_dir / "trainer_state.json")["log_history"] if "loss" in h]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: one process, batch 8."""
    out = tmp_path_factory.mktemp("single") / "out"
    # training: 1 x 8 here against 2 x 4 there. Evaluation: the same per-device batch of 4, because tx
    # gives each process whole batches of that size (core/lengths.py), so N processes evaluate exactly
    # as one process with the same --per_device_eval_batch_size (the equivalence matrix checks the rest)
    result = run_tx("run", "summarization", "--output_dir", str(out), *EQUIVALENCE,
                    "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "4")
    assert result.returncode == 0, result.stderr[-4000:]
    return out


def assert_same_training(single: Path, out: Path, result: subprocess.CompletedProcess[str],
                         initial: dict[str, Any]) -> None:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert GLOO_NOTE in result.stderr  # tx chose gloo on CPU by itself
    one, two = read_json(single / "trainer_state.json"), read_json(out / "trainer_state.json")
    # 32 examples, 8 per step: 4 steps. Two independent copies would each take 8 steps of 4.
    assert one["global_step"] == two["global_step"] == 4
    assert step_losses(out) == pytest.approx(step_losses(single), rel=1e-5)
    res1, res2 = read_json(single / "all_results.json"), read_json(out / "all_results.json")
    assert res2["train_loss"] == pytest.approx(res1["train_loss"], rel=1e-5)
    assert res2["eval_loss"] == pytest.approx(res1["eval_loss"], rel=1e-5)
    w1, w2 = weights(single), weights(out)
    assert w1.keys() == w2.keys()
    assert max_diff(w1, initial) > 1e-3  # training moved the weights...
    assert max_diff(w1, w2) < 1e-5  # ...and both runs moved them the same way


def test_torchrun_two_processes_equal_one_process_with_twice_the_batch(
    single: Path, builtin_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run_tx("run", "summarization", "--launcher", "torchrun", "--nproc-per-node", "2",
                    "--output_dir", str(out), *EQUIVALENCE,
                    "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4")
    assert_same_training(single, out, result, weights(builtin_model))
    job = (out / "tx-job.yaml").read_text()
    assert "nproc_per_node: '2'" in job and "ddp_backend" not in job  # the job file keeps the user's values


def test_accelerate_two_processes_equal_one_process_with_twice_the_batch(
    single: Path, builtin_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = run_tx("run", "summarization", "--launcher", "accelerate", "--num-processes", "2",
                    "--output_dir", str(out), *EQUIVALENCE,
                    "--per_device_train_batch_size", "4", "--per_device_eval_batch_size", "4")
    assert_same_training(single, out, result, weights(builtin_model))


# ---- stopping a real torchrun job ---------------------------------------------------------------



def start_long_torchrun_job(out: Path) -> tuple[subprocess.Popen[str], list[str], list[str], set[int]]:
    """`tx run --launcher torchrun --nproc-per-node 2` training for a long time; returns once a
    few steps are logged, with every process of the job."""
    cmd = [sys.executable, "-m", "tx.core.cli", "run", "summarization", "--launcher", "torchrun",
           "--nproc-per-node", "2", "--output_dir", str(out), "--do_train", "--do_eval", "false",
           "--do_predict", "false", "--max_train_samples", "32", "--max_steps", "100000",
           "--max_source_length", "32", "--max_target_length", "8", "--per_device_train_batch_size", "2",
           "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout: list[str] = []
    stderr: list[str] = []
    threading.Thread(target=lambda: stdout.extend(proc.stdout), daemon=True).start()  # type: ignore[arg-type]
    threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    deadline = time.monotonic() + 600
    while sum("'loss'" in line for line in stdout) < 2:
        if proc.poll() is not None:
            pytest.fail(f"tx ended before the signal (exit {proc.returncode}):\n{''.join(stderr)[-4000:]}")
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.2)
    job = descendants(proc.pid)
    cmdlines = {p: Path(f"/proc/{p}/cmdline").read_text(errors="replace").split("\0") for p in job}
    workers = [p for p, argv in cmdlines.items() if argv[1:3] == ["-u", "-m"] and "tx.core.worker" in argv
               or argv[1:3] == ["-m", "tx.core.worker"]]
    assert len(workers) == 2, cmdlines
    return proc, stdout, stderr, job


def test_ctrl_c_stops_every_process_of_a_torchrun_job(tmp_path: Path) -> None:
    proc, stdout, stderr, job = start_long_torchrun_job(tmp_path / "out")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=300) == 130  # 128 + SIGINT: interrupted
    time.sleep(0.5)
    assert not [p for p in job if alive(p)], "a process of the job outlived tx"
    err = "".join(stderr)
    assert "Traceback" not in err, err[-4000:]
    assert [line for line in err.splitlines() if line.startswith("tx: interrupted: training stopped by SIGINT")]
    assert list((tmp_path / "out").glob("checkpoint-*")), "the workers saved before stopping"


def test_a_second_sigterm_kills_a_torchrun_job_at_once(tmp_path: Path) -> None:
    proc, stdout, stderr, job = start_long_torchrun_job(tmp_path / "out")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert proc.wait(timeout=120) == 143  # 128 + SIGTERM
    assert time.monotonic() - started < 30
    time.sleep(0.5)
    # torchrun's workers live in sessions of their own: they must be gone too
    assert not [p for p in job if alive(p)], "a process of the job outlived tx"


def test_two_standalone_torchrun_jobs_on_one_host_do_not_collide(tmp_path: Path) -> None:
    """Two jobs started together with the rendezvous flags tx uses on one node (no port given)."""
    script = tmp_path / "allreduce.py"
    script.write_text(
        "import os, time, torch, torch.distributed as dist\n"
        "dist.init_process_group('gloo')\n"
        "t = torch.tensor([float(dist.get_rank() + 1)])\n"
        "dist.all_reduce(t)\n"
        "time.sleep(3)\n"  # both jobs up at once
        "dist.barrier()\n"
        # one write(2) per line: the two ranks share the pipe, and print() may split a line
        "os.write(1, f'sum {int(t.item())} world {dist.get_world_size()}\\n'.encode())\n"
        "dist.destroy_process_group()\n")
    argv = [sys.executable, "-m", LAUNCHTOOL, "torch.distributed.run",
            *torchrun_args(TorchrunOptions(nproc_per_node="2")), str(script)]
    jobs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for job in jobs:
        out, err = job.communicate(timeout=300)
        assert job.returncode == 0, err[-3000:]
        assert out.count("sum 3 world 2") == 2, out
