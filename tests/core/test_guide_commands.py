"""The command lines of the HF "train with a script" guide, with the script path replaced by
`tx run summarization`. They are kept here verbatim (broken lines included: a missing
backslash, `--output_dir` given twice) and parsed the way the HF script parses them."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import read_json

SCRIPT = "python examples/pytorch/summarization/run_summarization.py"

GUIDE = {
    "basic": """python examples/pytorch/summarization/run_summarization.py \\
    --model_name_or_path google-t5/t5-small \\
    --do_train \\
    --do_eval \\
    --dataset_name cnn_dailymail \\
    --dataset_config "3.0.0" \\
    --source_prefix "summarize: " \\
    --output_dir /tmp/tst-summarization \\
    --per_device_train_batch_size=4 \\
    --per_device_eval_batch_size=4 \\
    --overwrite_output_dir \\
    --predict_with_generate""",
    "local_files": """python examples/pytorch/summarization/run_summarization.py \\
    --model_name_or_path google-t5/t5-small \\
    --do_train \\
    --do_eval \\
    --train_file path_to_csv_or_jsonlines_file \\
    --validation_file path_to_csv_or_jsonlines_file \\
    --text_column text_column_name \\
    --summary_column summary_column_name \\
    --source_prefix "summarize: " \\
    --output_dir /tmp/tst-summarization \\
    --overwrite_output_dir \\
    --per_device_train_batch_size=4 \\
    --per_device_eval_batch_size=4 \\
    --predict_with_generate""",
    "max_samples": """python examples/pytorch/summarization/run_summarization.py \\
    --model_name_or_path google-t5/t5-small \\
    --max_train_samples 50 \\
    --max_eval_samples 50 \\
    --max_predict_samples 50 \\
    --do_train \\
    --do_eval \\
    --dataset_name cnn_dailymail \\
    --dataset_config "3.0.0" \\
    --source_prefix "summarize: " \\
    --output_dir /tmp/tst-summarization \\
    --per_device_train_batch_size=4 \\
    --per_device_eval_batch_size=4 \\
    --overwrite_output_dir \\
    --predict_with_generate""",
    "output_dir_twice": """python examples/pytorch/summarization/run_summarization.py
    --model_name_or_path google-t5/t5-small \\
    --do_train \\
    --do_eval \\
    --dataset_name cnn_dailymail \\
    --dataset_config "3.0.0" \\
    --source_prefix "summarize: " \\
    --output_dir /tmp/tst-summarization \\
    --per_device_train_batch_size=4 \\
    --per_device_eval_batch_size=4 \\
    --output_dir previous_output_dir \\
    --predict_with_generate""",
    "resume": """python examples/pytorch/summarization/run_summarization.py
    --model_name_or_path google-t5/t5-small \\
    --do_train \\
    --do_eval \\
    --dataset_name cnn_dailymail \\
    --dataset_config "3.0.0" \\
    --source_prefix "summarize: " \\
    --output_dir /tmp/tst-summarization \\
    --per_device_train_batch_size=4 \\
    --per_device_eval_batch_size=4 \\
    --overwrite_output_dir \\
    --resume_from_checkpoint path_to_specific_checkpoint \\
    --predict_with_generate""",
    "push_to_hub": """python examples/pytorch/summarization/run_summarization.py
    --model_name_or_path google-t5/t5-small \\
    --do_train \\
    --do_eval \\
    --dataset_name cnn_dailymail \\
    --dataset_config "3.0.0" \\
    --source_prefix "summarize: " \\
    --push_to_hub \\
    --push_to_hub_model_id finetuned-t5-cnn_dailymail \\
    --output_dir /tmp/tst-summarization \\
    --per_device_train_batch_size=4 \\
    --per_device_eval_batch_size=4 \\
    --overwrite_output_dir \\
    --predict_with_generate""",
}


def tx_argv(command: str, **replace: str) -> list[str]:
    """The guide's command as one logical line (as the HF script receives it), script -> tx."""
    text = command.replace("\\\n", " ").replace("\n", " ")
    for old, new in replace.items():
        text = text.replace(old, new)
    argv = shlex.split(text)
    assert " ".join(argv[:2]) == SCRIPT
    return ["run", "summarization", *argv[2:]]


def spec_of(stdout: str) -> dict:
    text = stdout.split("# plan for launcher")[0]
    return yaml.safe_load("\n".join(line for line in text.splitlines() if not line.startswith("#")))


def _output(tmp_path: Path) -> dict[str, str]:
    return {"/tmp/tst-summarization": str(tmp_path / "tst-summarization"),
            "previous_output_dir": str(tmp_path / "previous_output_dir")}


@pytest.mark.parametrize("name", ["basic", "max_samples", "push_to_hub"])
def test_hub_dataset_commands_parse_verbatim(tx, tmp_path: Path, name: str) -> None:
    result = tx(*tx_argv(GUIDE[name], **_output(tmp_path)), "--dry-run")
    assert result.returncode == 0, result.stderr
    args = spec_of(result.stdout)["args"]
    assert args["model_name_or_path"] == "google-t5/t5-small"
    assert args["dataset_name"] == "cnn_dailymail"
    assert args["dataset_config_name"] == "3.0.0"  # `--dataset_config` is a prefix, as in argparse
    assert args["source_prefix"] == "summarize: "
    assert args["per_device_train_batch_size"] == 4 and args["predict_with_generate"] is True
    assert args["overwrite_output_dir"] is True
    assert "train_file" not in args  # the built-in default data stays out when a dataset is given
    if name == "max_samples":
        assert args["max_train_samples"] == args["max_eval_samples"] == args["max_predict_samples"] == 50
    if name == "push_to_hub":
        assert args["push_to_hub"] is True and args["hub_model_id"] == "finetuned-t5-cnn_dailymail"


def test_output_dir_given_twice_last_wins(tx, tmp_path: Path) -> None:
    result = tx(*tx_argv(GUIDE["output_dir_twice"], **_output(tmp_path)), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert spec_of(result.stdout)["args"]["output_dir"] == str(tmp_path / "previous_output_dir")


def test_resume_from_missing_checkpoint_is_one_line(tx, tmp_path: Path) -> None:
    result = tx(*tx_argv(GUIDE["resume"], **_output(tmp_path)), cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "path_to_specific_checkpoint" in result.stderr and "does not exist" in result.stderr


def test_help_flag(tx) -> None:
    result = tx("run", "summarization", "-h")
    assert result.returncode == 0 and "--max_source_length" in result.stdout


def _write_pairs(path: Path, n: int) -> None:
    import json

    rows = []
    for i in range(n):
        doc = f"Item {i} arrived at the dock on day {i % 7}. The crew unloaded it slowly. Nobody complained."
        rows.append(json.dumps({"body": doc, "headline": f"Item {i} arrived at the dock on day {i % 7}."}))
    path.write_text("\n".join(rows) + "\n")


@pytest.mark.train
def test_local_files_command_trains(tx, tmp_path: Path) -> None:
    data = tmp_path / "pairs.jsonl"
    _write_pairs(data, 24)
    argv = tx_argv(
        GUIDE["local_files"],
        **_output(tmp_path),
        **{"google-t5/t5-small": "tx-builtin:t5-tiny-summarization-v1",
           "path_to_csv_or_jsonlines_file": str(data),
           "text_column_name": "body", "summary_column_name": "headline"},
    )
    result = tx(*argv, "--max_steps", "3", "--report_to", "none", "--disable_tqdm", "true")
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "tst-summarization"
    results = read_json(out / "all_results.json")
    assert results["train_samples"] == 24 and results["eval_samples"] == 24
    assert "eval_rougeL" in results
