"""Real 2-process DeepSpeed ZeRO-2 training on CPU through `--launcher deepspeed --deepspeed zero2`,
saving DeepSpeed checkpoints and resuming from one.

The resume is checked by result, not by a log line: a run resumed from checkpoint-2 into a new
directory must end with the weights and the losses of the run that went straight on, which only
holds when the model, the ZeRO-partitioned optimizer state of both ranks, the scheduler and the
data position all came back. (The first DeepSpeed run on a machine also builds DeepSpeed's CPU
communication op; it is cached in ~/.cache/torch_extensions.)
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import read_json, run_tx

pytestmark = [pytest.mark.train, pytest.mark.deepspeed]

ARGS = (
    "--launcher", "deepspeed", "--num-gpus", "2", "--deepspeed", "zero2",
    "--do_train", "--do_eval", "false", "--do_predict", "false", "--max_train_samples", "16",
    "--max_source_length", "32", "--max_target_length", "8", "--per_device_train_batch_size", "2",
    "--max_steps", "4", "--save_strategy", "steps", "--save_steps", "2", "--logging_steps", "1",
    "--seed", "11", "--report_to", "none", "--disable_tqdm", "true",
)


@pytest.fixture(scope="module", autouse=True)
def builtin_model() -> Path:
    """Build the tiny model in one process before the multi-process runs use it."""
    from tx.core.builtin_models import cached_build
    from tx.plugins.summarization import SummarizationTask

    task = SummarizationTask()
    return cached_build(task.builtin_model, task._build_builtin)


def weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def losses(output_dir: Path) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in read_json(output_dir / "trainer_state.json")["log_history"] if "loss" in h}


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = tmp_path_factory.mktemp("ds") / "straight"
    return out, run_tx("run", "summarization", "--output_dir", str(out), *ARGS)


def test_zero2_trains_in_two_processes_and_saves_deepspeed_checkpoints(
    straight: tuple[Path, subprocess.CompletedProcess[str]]
) -> None:
    out, result = straight
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "tx: note: no CUDA device: the 2 processes train on CPUs with --use_cpu True --ddp_backend gloo" \
        in result.stderr
    state = read_json(out / "trainer_state.json")
    # 16 examples, 2 per process and step: one epoch is 4 steps only if both processes share the data
    assert state["global_step"] == 4 and state["epoch"] == pytest.approx(1.0)
    for step in (2, 4):
        engine = out / f"checkpoint-{step}" / f"global_step{step}"
        # ZeRO-2 splits the optimizer state between the two ranks: one file each
        for rank in (0, 1):
            assert (engine / f"zero_pp_rank_{rank}_mp_rank_00_optim_states.pt").is_file(), sorted(engine.iterdir())
        assert (engine / "mp_rank_00_model_states.pt").is_file()
    job = (out / "tx-job.yaml").read_text()
    assert "deepspeed_presets/zero2.json" in job  # the preset name became the shipped file


def test_resuming_from_a_deepspeed_checkpoint_continues_the_same_training(
    straight: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    out, first = straight
    assert first.returncode == 0, first.stderr[-4000:]
    resumed = tmp_path / "resumed"
    result = run_tx("run", "summarization", "--output_dir", str(resumed), *ARGS,
                    "--resume_from_checkpoint", str(out / "checkpoint-2"))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert f"resuming from {out / 'checkpoint-2'}" in result.stdout + result.stderr
    assert result.stdout.count("{'loss'") == 2  # it trained steps 3 and 4 only
    before, after = losses(out), losses(resumed)  # (the log of steps 1-2 comes with the checkpoint)
    assert sorted(after) == [1, 2, 3, 4]
    assert [after[s] for s in (1, 2, 3, 4)] == pytest.approx([before[s] for s in (1, 2, 3, 4)], rel=1e-5)
    a, b = weights(out), weights(resumed)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5
