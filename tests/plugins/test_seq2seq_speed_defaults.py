"""Speed defaults of the seq2seq tasks (issue 9): length-grouped training batches unless the
user picks a sampling strategy; the job spec says which one runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


def spec_args(tx, tmp_path: Path, *flags: str, task: str = "summarization") -> dict:
    result = tx("run", task, "--output_dir", str(tmp_path / "o"), "--dry-run", *flags)
    assert result.returncode == 0, result.stderr
    text = result.stdout.split("# plan for launcher")[0]
    return yaml.safe_load(text)["args"]


@pytest.mark.parametrize("task", ["summarization", "translation"])
def test_grouped_batches_by_default(tx, tmp_path: Path, task: str) -> None:
    assert spec_args(tx, tmp_path, task=task)["train_sampling_strategy"] == "group_by_length"


def test_grouped_batches_also_with_own_data(tx, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"text": "A long text. More.", "summary": "A long text."}\n' * 3)
    args = spec_args(tx, tmp_path, "--model_name_or_path", "google-t5/t5-small", "--train_file", str(data),
                     "--do_train")
    assert args["train_sampling_strategy"] == "group_by_length"


@pytest.mark.parametrize("flags,expected", [
    (("--train_sampling_strategy", "random"), None),  # the HF default: not stored in the spec
    (("--train_sampling_strategy", "sequential"), "sequential"),
    (("--group_by_length",), "group_by_length"),
])
def test_the_user_choice_wins(tx, tmp_path: Path, flags: tuple[str, ...], expected: str | None) -> None:
    assert spec_args(tx, tmp_path, *flags).get("train_sampling_strategy") == expected


def test_config_file_choice_wins(tx, tmp_path: Path) -> None:
    config = tmp_path / "job.yaml"
    config.write_text("train_sampling_strategy: random\n")
    assert "train_sampling_strategy" not in spec_args(tx, tmp_path, "--config", str(config))
