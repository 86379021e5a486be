"""The summarization task: data formats, columns, ROUGE offline, outputs, resume rules, and
that training really learns (ROUGE-L well above the untrained model's)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.conftest import SMALL_SUMMARIZATION, assert_one_line_error, read_json
from tx.plugins.summarization import SummarizationTask, split_sentences


def write_rows(path: Path, rows: list[dict[str, str]]) -> Path:
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def rows(n: int, text: str = "text", summary: str = "gist") -> list[dict[str, str]]:
    return [{text: f"Boat {i} sailed north at dawn. It carried fish. The sea was calm.",
             summary: f"Boat {i} sailed north at dawn."} for i in range(n)]


def test_split_sentences_for_rouge_lsum() -> None:
    assert split_sentences("One two. Three four! Five?") == "One two.\nThree four!\nFive?"


def test_rouge_module_loads_offline_from_the_plugin() -> None:
    import evaluate

    metric = evaluate.load(str(SummarizationTask.metric_dir))
    same = metric.compute(predictions=["the cat sat"], references=["the cat sat"])
    assert same["rougeL"] == pytest.approx(1.0)
    half = metric.compute(predictions=["the cat"], references=["the cat sat on mats"])
    assert 0 < half["rouge1"] < 1 and set(half) == {"rouge1", "rouge2", "rougeL", "rougeLsum"}


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl"])
def test_formats_and_column_mapping_validate(tx, tmp_path: Path, suffix: str) -> None:
    data = write_rows(tmp_path / f"d{suffix}", rows(3, "body", "headline"))
    common = ["run", "summarization", "--model_name_or_path", "google-t5/t5-small", "--train_file", str(data),
              "--do_train", "--output_dir", str(tmp_path / "o"), "--dry-run"]
    ok = tx(*common, "--text_column", "body", "--summary_column", "headline")
    assert ok.returncode == 0, ok.stderr
    bad = tx(*common, "--text_column", "body", "--summary_column", "summary")
    assert_one_line_error(bad, "--summary_column 'summary'", "available columns: body, headline")


def test_unsupported_extension(tx, tmp_path: Path) -> None:
    data = tmp_path / "d.parquet"
    data.write_text("x")
    result = tx("run", "summarization", "--model_name_or_path", "m", "--train_file", str(data), "--do_train",
                "--output_dir", str(tmp_path / "o"))
    assert_one_line_error(result, "unsupported extension '.parquet'", ".csv")


def test_non_empty_output_dir_refused_without_overwrite(tx, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = tx("run", "summarization", "--output_dir", str(out))
    assert_one_line_error(result, "already exists and is not empty", "--overwrite_output_dir")
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "precious"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small real run shared by the output tests."""
    from tests.conftest import run_tx

    out = tmp_path_factory.mktemp("summ") / "out"
    result = run_tx("run", "summarization", "--output_dir", str(out), *SMALL_SUMMARIZATION,
                    "--save_strategy", "steps", "--save_steps", "2")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "tx: finished in" in result.stdout
    return out


@pytest.mark.train
def test_outputs_are_where_hf_puts_them(trained_run: Path) -> None:
    out = trained_run
    for name in ("train_results.json", "eval_results.json", "predict_results.json", "all_results.json",
                 "trainer_state.json", "generated_predictions.txt", "config.json", "model.safetensors",
                 "tokenizer.json", "README.md", "tx-job.yaml", "training_args.bin"):
        assert (out / name).is_file(), name
    results = read_json(out / "all_results.json")
    for key in ("train_loss", "eval_loss", "eval_rouge1", "eval_rouge2", "eval_rougeL", "eval_rougeLsum",
                "eval_gen_len", "predict_rougeL", "predict_gen_len"):
        assert key in results, key
    assert results["train_samples"] == 64 and results["predict_samples"] == 16
    assert len((out / "generated_predictions.txt").read_text().splitlines()) == 16
    state = read_json(out / "trainer_state.json")
    assert state["global_step"] == 4 and state["log_history"]
    assert "summarization" in (out / "README.md").read_text()
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


@pytest.mark.train
def test_rerun_of_the_finished_job_leaves_it_alone(tx, trained_run: Path) -> None:
    """The same job again (only a logging flag differs) is recognised as finished (issue 13): it
    used to resume from the last checkpoint, train 0 steps and rewrite the results with zeros."""
    results = (trained_run / "all_results.json").read_bytes()
    result = tx("run", "--from", str(trained_run / "tx-job.yaml"), "--log_level", "info")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "tx: done:" in result.stderr and "resuming from" not in result.stdout + result.stderr
    assert (trained_run / "all_results.json").read_bytes() == results
    assert read_json(trained_run / "trainer_state.json")["global_step"] == 4


@pytest.mark.train
def test_resume_from_explicit_checkpoint(tx, trained_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    result = tx("run", "summarization", "--output_dir", str(out), *SMALL_SUMMARIZATION, "--num_train_epochs", "2",
                "--resume_from_checkpoint", str(trained_run / "checkpoint-4"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_json(out / "trainer_state.json")["global_step"] == 8  # 4 restored + 4 new


@pytest.mark.train
def test_tokenized_data_is_cached_between_runs(tx, tmp_path: Path) -> None:
    hf_home = tmp_path / "hf"
    env = {"HF_HOME": str(hf_home)}
    common = ["run", "summarization", *SMALL_SUMMARIZATION, "--do_train", "false", "--do_predict", "false",
              "--max_eval_samples", "8"]

    def cache_files() -> set[str]:
        return {p.name for p in hf_home.rglob("cache-*.arrow")}

    assert tx(*common, "--output_dir", str(tmp_path / "a"), env=env).returncode == 0
    first = cache_files()
    assert first
    assert tx(*common, "--output_dir", str(tmp_path / "b"), env=env).returncode == 0
    assert cache_files() == first
    assert tx(*common, "--output_dir", str(tmp_path / "c"), "--overwrite_cache", env=env).returncode == 0


@pytest.mark.train
def test_training_beats_the_untrained_model(tx, tmp_path: Path) -> None:
    """A shortened built-in default run: ROUGE-L clearly above the untrained model's."""
    eval_only = ["--max_eval_samples", "100", "--do_train", "false", "--do_predict", "false",
                 "--report_to", "none", "--disable_tqdm", "true"]
    before = tx("run", "summarization", "--output_dir", str(tmp_path / "untrained"), *eval_only)
    assert before.returncode == 0, before.stderr[-3000:]
    untrained = read_json(tmp_path / "untrained" / "eval_results.json")["eval_rougeL"]
    after = tx("run", "summarization", "--output_dir", str(tmp_path / "trained"), "--max_train_samples", "2400",
               "--num_train_epochs", "1", "--max_eval_samples", "100", "--do_predict", "false",
               "--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true")
    assert after.returncode == 0, after.stderr[-3000:]
    trained = read_json(tmp_path / "trained" / "eval_results.json")["eval_rougeL"]
    assert trained > untrained + 12, (untrained, trained)
