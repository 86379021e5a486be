"""`tx run summarization --launcher X` with no launcher flag trains and evaluates the built-in
default on this CPU machine, for X = deepspeed, accelerate and torchrun: the process count (one
per CPU core here) and, for DeepSpeed, the config (the zero2 preset) are chosen by tx, announced
with a `tx: note:` line each and recorded in tx-job.yaml.

The runs are kept short with HF flags only (--max_steps, --max_train_samples, ...): no launcher
flag is given. The world size is checked by result: N processes with batch B must consume N x B
training rows per step.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import read_json, run_tx
from tx.core.options import local_process_count

SHORT = ("--max_train_samples", "16", "--max_eval_samples", "8", "--max_predict_samples", "8",
         "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "4", "--max_steps", "2",
         "--max_source_length", "32", "--max_target_length", "8", "--generation_max_length", "8",
         "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true")


@pytest.fixture(scope="module", autouse=True)
def builtin_model() -> Path:
    """Build the tiny model in one process before the multi-process runs use it."""
    from tx.core.builtin_models import cached_build
    from tx.plugins.summarization import SummarizationTask

    task = SummarizationTask()
    return cached_build(task.builtin_model, task._build_builtin)


@pytest.mark.train
@pytest.mark.parametrize("launcher", [
    pytest.param("deepspeed", marks=pytest.mark.deepspeed),
    pytest.param("accelerate", marks=pytest.mark.distributed),
    pytest.param("torchrun", marks=pytest.mark.distributed),
])
def test_a_launcher_with_no_flags_trains_and_evaluates_the_builtin_default(launcher: str, tmp_path: Path) -> None:
    count, why = local_process_count()
    assert count >= 2, "this test proves the default process count on a machine with 2+ cores"
    out = tmp_path / "run"
    result = run_tx("run", "summarization", "--launcher", launcher, "--output_dir", str(out), *SHORT)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    notes = [line for line in result.stderr.splitlines() if line.startswith("tx: note: --nproc-per-node")]
    assert notes == [f"tx: note: --nproc-per-node {count}: {why}; pass --nproc-per-node"
                     f"{' (or --num-gpus)' if launcher == 'deepspeed' else ''} to choose"], result.stderr[-3000:]
    job = yaml.safe_load((out / "tx-job.yaml").read_text())
    assert job["launcher"] == launcher and job["launcher_options"]["nproc_per_node"] in (count, str(count))
    if launcher == "deepspeed":
        assert sum(line.startswith("tx: note: --deepspeed zero2: no DeepSpeed config given")
                   for line in result.stderr.splitlines()) == 1
        assert job["args"]["deepspeed"].endswith("deepspeed_presets/zero2.json")
    else:
        assert "deepspeed" not in job["args"]
    # one job of `count` processes: every step took count x 2 rows of the 16
    assert f"the {count} processes train on CPUs" in result.stdout + result.stderr
    state = read_json(out / "trainer_state.json")
    assert state["global_step"] == 2 and state["epoch"] == pytest.approx(2 * count * 2 / 16)
    results = read_json(out / "all_results.json")
    assert "eval_loss" in results and "eval_rougeL" in results and "predict_rougeL" in results
