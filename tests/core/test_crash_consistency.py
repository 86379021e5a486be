"""kill -9 at eleven points of a real training run (mid-step, during evaluation, seven inside a
checkpoint save), rerun after each: training resumes from the newest complete checkpoint and
ends with the same weights and per-step losses as an uninterrupted run with the same seed.

The kills come from a test-only plugin loaded with `-p` (tests/core/tx_fault_plugin.py) that
SIGKILLs its own worker at a given step and phase, tearing a file in half where a real kill
mid-write would. The first command and the final rerun go through the real `tx run` (the same
command line, only TX_FAULT differs). The other cycles run the exact
worker the local launcher starts (`tx.core.worker.main(<job file>)`), forked from one process
that imported torch/transformers once: the same code path, minus ten interpreter start-ups, so
the test stays within a few minutes on two busy CPUs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, read_json, run_tx
from tx.core.checkpoints import PARTIAL_DIR, last_checkpoint

pytestmark = pytest.mark.train

DATA = ROOT / "plugins" / "summarization" / "data"
PLUGIN_DIR = Path(__file__).resolve().parent  # holds tx_fault_plugin.py
CHECKPOINT_FILES = ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json")


def command(output_dir: Path) -> list[str]:
    """16 samples / batch 4 = 4 steps an epoch; 10 steps cross two epoch boundaries."""
    return [
        "-p", "tx_fault_plugin", "run", "summarization",
        "--model_name_or_path", "tx-builtin:t5-tiny-summarization-v1",
        "--train_file", str(DATA / "train.jsonl"), "--validation_file", str(DATA / "validation.jsonl"),
        "--do_train", "--do_eval", "--max_train_samples", "16", "--max_eval_samples", "4",
        "--max_source_length", "32", "--max_target_length", "8", "--per_device_train_batch_size", "4",
        "--max_steps", "10", "--learning_rate", "1e-3", "--logging_steps", "1",
        "--save_strategy", "steps", "--save_steps", "2", "--save_total_limit", "2",
        "--eval_strategy", "steps", "--eval_steps", "4", "--seed", "7",
        "--report_to", "none", "--disable_tqdm", "true", "--output_dir", str(output_dir),
    ]


# (fault, runner, checkpoint this run resumes from, newest complete checkpoint after the kill)
SCHEDULE = [
    ("1:step_begin", "tx", None, None),       # mid-step, before any checkpoint
    ("2:model_torn", "fork", None, None),     # weights half written
    ("2:state_saved", "fork", None, None),    # everything written, not yet fsynced/renamed
    ("2:fsynced", "fork", None, None),        # just before the rename
    ("2:published", "fork", None, 2),         # renamed, before rotation
    ("3:pre_optimizer", "fork", 2, 2),        # after backward, before the optimizer step
    ("4:eval", "fork", 2, 2),                 # during evaluation
    ("4:optimizer_torn", "fork", 2, 2),       # optimizer state half written
    ("6:rotating", "fork", 2, 6),             # checkpoint-2 half deleted by save_total_limit
    ("7:step_end", "fork", 6, 6),             # after the optimizer step, before logging/saving
    ("10:state_saved", "fork", 6, 8),         # the last save
]

ZYGOTE = r"""
import json, os, sys
import datasets, evaluate, torch, transformers
from transformers import Seq2SeqTrainer, T5ForConditionalGeneration
import tx.core.worker, tx.core.trainer, tx.plugins.summarization
print("ready", flush=True)
for line in sys.stdin:
    req = json.loads(line)
    pid = os.fork()
    if pid == 0:
        os.environ.update(req["env"])
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = 1
        try:
            code = tx.core.worker.main([req["job"]])
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    print(json.dumps({"exit": os.waitstatus_to_exitcode(status)}), flush=True)
"""


class Zygote:
    """One process with the heavy imports done; each request forks a fresh worker."""

    def __init__(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([sys.executable, "-c", ZYGOTE], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        assert self.proc.stdout.readline().strip() == "ready"

    def run(self, job: Path, log: Path, env: dict[str, str]) -> int:
        self.proc.stdin.write(json.dumps({"job": str(job), "log": str(log), "env": env}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["exit"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def fault_env(fault: str | None) -> dict[str, str]:
    path = os.pathsep.join([str(PLUGIN_DIR), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path, "TX_FAULT": fault or ""}


def tx_run(output_dir: Path, fault: str | None, log: Path) -> int:
    result = run_tx(*command(output_dir), env=fault_env(fault), timeout=600)
    log.write_text(result.stdout + result.stderr)
    return result.returncode


def resumed_from(log: str) -> int | None:
    for line in log.splitlines():
        if "resuming from" in line:
            return int(line.rsplit("checkpoint-", 1)[1].strip())
    return None


def assert_checkpoints_complete(output_dir: Path, reference: Path) -> None:
    """Every visible checkpoint-N is whole: all files, each as large as the reference's."""
    for ckpt in output_dir.glob("checkpoint-*"):
        for name in CHECKPOINT_FILES:
            f = ckpt / name
            assert f.is_file(), f"{f} missing after a crash"
            if name != "trainer_state.json":
                assert f.stat().st_size == (reference / name).stat().st_size, f"{f} is torn"


def losses(output_dir: Path) -> dict[int, float]:
    history = read_json(output_dir / "trainer_state.json")["log_history"]
    return {h["step"]: h["loss"] for h in history if "loss" in h}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "run"
    log = out.parent / "log.txt"
    assert tx_run(out, None, log) == 0, log.read_text()
    return out


def test_kill_minus_9_anywhere_then_rerun_gives_the_uninterrupted_result(reference: Path, tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    out = tmp_path / "run"
    job = out / "tx-job.yaml"
    zygote = Zygote()
    try:
        for i, (fault, runner, resume_expected, newest_expected) in enumerate(SCHEDULE):
            log = tmp_path / f"log-{i:02d}-{fault.replace(':', '-')}.txt"
            if runner == "tx":
                code = tx_run(out, fault, log)
                text = log.read_text()
                assert code == 137, text
                assert "tx: error: the run was killed (SIGKILL" in text, text
            else:
                code = zygote.run(job, log, {"TX_FAULT": fault})
                text = log.read_text()
                assert code == -9, text
            assert f"tx-fault: SIGKILL at {fault}" in text, f"the fault did not fire:\n{text}"
            assert resumed_from(text) == resume_expected, f"{fault}: wrong resume point\n{text}"
            newest = last_checkpoint(out)
            assert (int(newest.name.split("-")[1]) if newest else None) == newest_expected, fault
            assert_checkpoints_complete(out, reference / "checkpoint-10")
    finally:
        zygote.close()

    # The leftovers of killed saves are there (and ignored), then the rerun of the same command.
    assert (out / PARTIAL_DIR).is_dir()
    log = tmp_path / "log-final.txt"
    assert tx_run(out, None, log) == 0, log.read_text()
    assert resumed_from(log.read_text()) == 8
    assert not (out / PARTIAL_DIR).exists(), "the next save cleans up"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-8"]

    assert losses(out) == pytest.approx(losses(reference), rel=1e-5), "per-step losses differ"
    assert sorted(losses(out)) == list(range(1, 11))
    got, want = load_file(out / "model.safetensors"), load_file(reference / "model.safetensors")
    assert got.keys() == want.keys()
    for name in want:
        assert torch.allclose(got[name], want[name], rtol=1e-5, atol=1e-6), name
    assert read_json(out / "eval_results.json")["eval_loss"] == pytest.approx(
        read_json(reference / "eval_results.json")["eval_loss"], rel=1e-5)
