"""The launcher-equivalence matrix: one model, the same results under every process launcher.

For every built-in task a small model is trained once, locally. Then the same evaluation and
prediction runs locally (the reference) and with 2 processes under torchrun, DeepSpeed (ZeRO-2)
and accelerate. The row counts (21 to evaluate, 25 to predict, batches of 4) divide by neither
the process count nor the batch size, so the last step has a short batch on one process and, for
prediction, nothing on the other: exactly the case where transformers repeats rows (issue 13:
Seq2SeqTrainer wrote 64 predictions for 50 rows, partly out of order).

What must be equal to the local run:
- the row counts (``eval_samples``/``predict_samples``, lines of the prediction file);
- the prediction file, line by line. No line may differ: every process runs exactly the batches
  the local run runs (same rows, same padding) with one thread (tests/conftest.py sets
  OMP_NUM_THREADS=1), so there is no float noise to allow for. (Were a launcher to batch
  differently, greedy decoding of a near-tie could flip a token; that would be counted here.)
- every metric of all_results.json, losses included (relative 1e-6: the per-batch losses are the
  same numbers, only their sum may be added up in another order), apart from timings;
- the set of files in the output directory (no launcher writes files of its own today;
  LAUNCHER_FILES lists the exceptions, should one ever do).

Training under several processes (N x batch B = 1 x batch N*B) is covered by
test_multiprocess.py (torchrun, accelerate) and test_deepspeed_run.py.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.conftest import ROOT, read_json, run_tx

pytestmark = [pytest.mark.train, pytest.mark.distributed]

EVAL_ROWS, PREDICT_ROWS, BATCH = 21, 25, 4  # 6 and 7 batches: odd counts, short last batches
COMMON = ("--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true", "--seed", "3")


@dataclass(frozen=True)
class Task:
    name: str
    train: tuple[str, ...]  # training of the shared model (built-in model and data)
    evaluate: tuple[str, ...]  # data and flags of the evaluation runs (the trained model is added)
    predictions: str  # the file the prediction rows go to
    header_lines: int = 0


def data(task: str, name: str) -> str:
    return str(ROOT / "plugins" / task / "data" / name)


SEQ2SEQ_EVAL = ("--predict_with_generate", "--val_max_target_length", "16", "--max_target_length", "16")
TASKS = {
    # a few dozen steps: enough for predictions that differ from row to row (checked below)
    "summarization": Task(
        "summarization",
        train=("--max_train_samples", "400", "--learning_rate", "3e-3", "--max_source_length", "64",
               "--max_target_length", "16"),
        evaluate=("--validation_file", data("summarization", "validation.jsonl"),
                  "--test_file", data("summarization", "test.jsonl"), "--max_source_length", "64", *SEQ2SEQ_EVAL),
        predictions="generated_predictions.txt"),
    "translation": Task(
        "translation",
        train=("--max_train_samples", "400", "--learning_rate", "3e-3", "--max_source_length", "32",
               "--max_target_length", "16"),
        evaluate=("--source_lang", "en", "--target_lang", "xx", "--validation_file", data("translation", "validation.jsonl"),
                  "--test_file", data("translation", "test.jsonl"), "--max_source_length", "32", *SEQ2SEQ_EVAL),
        predictions="generated_predictions.txt"),
    "classification": Task(
        "classification",
        train=(),  # the 2000 built-in rows once: 63 steps of 32
        evaluate=("--validation_file", data("classification", "validation.csv"),
                  "--test_file", data("classification", "test.csv")),
        predictions="predict_results.txt", header_lines=1),
}
LAUNCHERS = {
    "torchrun": ("--launcher", "torchrun", "--nproc-per-node", "2"),
    "deepspeed": ("--launcher", "deepspeed", "--num-gpus", "2", "--deepspeed", "zero2"),
    "accelerate": ("--launcher", "accelerate", "--num-processes", "2"),
}
#: files a launcher may add to the output directory (none does)
LAUNCHER_FILES: dict[str, set[str]] = {name: set() for name in LAUNCHERS}
TIMINGS = ("_runtime", "_per_second", "_model_preparation_time")


def evaluate(task: Task, model: Path, out: Path, *launcher: str) -> subprocess.CompletedProcess[str]:
    return run_tx("run", task.name, *launcher, "--output_dir", str(out), "--model_name_or_path", str(model),
                  *task.evaluate, "--do_eval", "--do_predict", "--max_eval_samples", str(EVAL_ROWS),
                  "--max_predict_samples", str(PREDICT_ROWS), "--per_device_eval_batch_size", str(BATCH), *COMMON)


def ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def prediction_rows(task: Task, out: Path) -> list[str]:
    return (out / task.predictions).read_text(encoding="utf-8").splitlines()[task.header_lines:]


def metrics(out: Path) -> dict[str, Any]:
    return {k: v for k, v in read_json(out / "all_results.json").items() if not k.endswith(TIMINGS)}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Path]]:
    """Per task (made once, on first use): the model trained locally, and the local evaluation
    and prediction with it."""
    made: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in made:
            task, base = TASKS[name], tmp_path_factory.mktemp(name)
            ok(run_tx("run", name, "--output_dir", str(base / "model"), "--do_train", "--do_eval", "false",
                      "--do_predict", "false", "--num_train_epochs", "1", *task.train, *COMMON))
            ok(evaluate(task, base / "model", base / "local"))
            made[name] = (base / "model", base / "local")
        return made[name]

    return get


@pytest.mark.parametrize("name", list(TASKS))
def test_local_reference_has_one_varied_row_per_input_row(name: str, reference: Any) -> None:
    """The reference the launchers are held to: one prediction per row, and predictions that
    differ from row to row (so that rows out of place would show)."""
    _, local = reference(name)
    rows = prediction_rows(TASKS[name], local)
    assert len(rows) == PREDICT_ROWS
    assert len(set(rows)) >= 2
    results = metrics(local)
    assert results["eval_samples"] == EVAL_ROWS and results["predict_samples"] == PREDICT_ROWS


@pytest.mark.parametrize("launcher", [
    "torchrun",
    pytest.param("deepspeed", marks=pytest.mark.deepspeed),
    "accelerate",
])
@pytest.mark.parametrize("name", list(TASKS))
def test_two_processes_give_the_local_results(name: str, launcher: str, reference: Any, tmp_path: Path) -> None:
    task = TASKS[name]
    model, local = reference(name)
    out = tmp_path / "out"
    ok(evaluate(task, model, out, *LAUNCHERS[launcher]))

    expected, got = prediction_rows(task, local), prediction_rows(task, out)
    assert len(got) == len(expected) == PREDICT_ROWS  # one line per input row (not 32)
    differing = [k for k, (a, b) in enumerate(zip(expected, got)) if a != b]
    assert differing == [], f"{len(differing)} of {PREDICT_ROWS} lines differ, first: line {differing[0]}: " \
                            f"{got[differing[0]]!r} instead of {expected[differing[0]]!r}"

    want, have = metrics(local), metrics(out)
    assert sorted(have) == sorted(want)
    for key, value in want.items():
        assert have[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert have["eval_samples"] == EVAL_ROWS and have["predict_samples"] == PREDICT_ROWS

    files = {p.name for p in out.iterdir()}
    assert files - LAUNCHER_FILES[launcher] == {p.name for p in local.iterdir()}
