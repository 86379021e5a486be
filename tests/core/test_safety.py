"""tx runs no code it was not told to run, and writes no secret anywhere.

- trust_remote_code is off unless passed; a local model folder with its own code is refused;
- config and job files are plain YAML (a !!python tag is refused, never executed), datasets never
  run loading scripts;
- plugins come from installed entry points or `-p MODULE` only, and `tx list` says which;
- HF_TOKEN, --token and --hub_token appear in no file of the run directory or tx's cache.

"Executed" is checked with marker files the planted code would create.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, SMALL_SUMMARIZATION, assert_one_line_error, run_tx
from tx.core.hfargs import parse
from tx.plugins.summarization import SummarizationTask

DATA = ROOT / "plugins" / "summarization" / "data"
PLANT = "import pathlib; pathlib.Path({marker!r}).write_text('ran')\n"


def small(*extra: str, out: Path) -> list[str]:
    return ["run", "summarization", "--model_name_or_path", "tx-builtin:t5-tiny-summarization-v1",
            "--train_file", str(DATA / "train.jsonl"), "--do_train", "--max_steps", "1",
            "--output_dir", str(out), *extra]


def dry_run_spec(result) -> dict:
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout.split("# plan for launcher")[0])


def test_trust_remote_code_is_off_unless_passed(tx, tmp_path: Path) -> None:
    spec = dry_run_spec(tx(*small("--dry-run", out=tmp_path / "a")))
    assert "trust_remote_code" not in spec["args"]  # only chosen values are stored...
    task = SummarizationTask()
    assert parse(task, [], base=spec["args"]).run_args.model.trust_remote_code is False  # ...the worker's view

    spec = dry_run_spec(tx(*small("--trust_remote_code", "--dry-run", out=tmp_path / "b")))
    assert spec["args"]["trust_remote_code"] is True


def _model_with_code(folder: Path, marker: Path) -> None:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "t5",
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig",
                     "AutoModelForSeq2SeqLM": "modeling_evil.EvilModel"},
    }))
    for name in ("configuration_evil.py", "modeling_evil.py"):
        (folder / name).write_text(PLANT.format(marker=str(marker)))


def test_model_folder_with_its_own_code_is_refused_without_trust_remote_code(tx, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    _model_with_code(tmp_path / "evil_model", marker)
    result = tx(*small("--model_name_or_path", str(tmp_path / "evil_model"), out=tmp_path / "out"))
    assert_one_line_error(result, "evil_model", "ships its own Python code", "auto_map", "--trust_remote_code")
    assert not marker.exists() and not (tmp_path / "out").exists()
    # passing it is the user's explicit decision (validation accepts it; nothing is loaded in a dry run)
    ok = tx(*small("--model_name_or_path", str(tmp_path / "evil_model"), "--trust_remote_code", "--dry-run",
                   out=tmp_path / "out"))
    assert ok.returncode == 0, ok.stderr
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["config", "job"])
def test_yaml_with_python_tags_is_refused_not_run(tx, tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "ran"
    evil = tmp_path / "evil.yaml"
    payload = f"!!python/object/apply:os.system ['touch {marker}']"
    if kind == "config":
        evil.write_text(f"do_train: true\nseed: {payload}\n")
        result = tx("run", "summarization", "--config", str(evil), "--dry-run")
    else:
        evil.write_text(f"task: summarization\nlauncher: local\nargs:\n  seed: {payload}\n")
        result = tx("run", "--from", str(evil), "--dry-run")
    assert_one_line_error(result, "evil.yaml", "python/object")
    assert not marker.exists()


def test_config_file_cannot_load_plugins(tx, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sneaky_plugin.py").write_text(PLANT.format(marker=str(marker)))
    config = tmp_path / "job.yaml"
    config.write_text("plugins: [sneaky_plugin]\ndo_train: true\n")
    result = tx("run", "summarization", "--config", str(config), "--dry-run", env={"PYTHONPATH": str(site)})
    assert result.returncode == 0, result.stderr
    assert not marker.exists()
    assert "plugins: []" in result.stdout


def test_plugins_come_from_entry_points_or_dash_p_and_list_says_which(tx, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    site = tmp_path / "site"
    site.mkdir()
    (site / "tx_lonely.py").write_text(PLANT.format(marker=str(marker)) + (
        "from tx.core.hookspecs import hookimpl\n"
        "@hookimpl\ndef tx_env_info():\n    return {'lonely': 'yes'}\n"))
    env = {"PYTHONPATH": str(site)}

    listed = tx("list", env=env)  # importable, but not installed as a plugin: never imported
    assert listed.returncode == 0, listed.stderr
    assert "tx_lonely" not in listed.stdout and not marker.exists()
    rows = listed.stdout.split("Plugins:")[1]
    assert "summarization    tx-train" in rows and "[built-in: tx.plugins.summarization]" in rows

    explicit = tx("-p", "tx_lonely", "list", env=env)
    assert explicit.returncode == 0, explicit.stderr
    assert marker.exists()
    line = [r for r in explicit.stdout.splitlines() if "tx_lonely" in r]
    assert line and "[command line (-p): tx_lonely]" in line[0], explicit.stdout


@pytest.mark.train
def test_dataset_loading_scripts_are_never_run(tx, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    ds = tmp_path / "evil_ds"
    ds.mkdir()
    (ds / "evil_ds.py").write_text(PLANT.format(marker=str(marker)))
    result = tx("run", "summarization", "--model_name_or_path", "tx-builtin:t5-tiny-summarization-v1",
                "--dataset_name", str(ds), "--do_train", "--max_steps", "1", "--output_dir", str(tmp_path / "out"))
    assert_one_line_error(result, "evil_ds")
    assert not marker.exists()


SECRETS = {"HF_TOKEN": "hf_" "envSECRETenv0123456789", "token": "hf_" "flagSECRETflag0123456789",
           "hub_token": "hf_" "hubSECREThub0123456789"}


def _files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


@pytest.mark.train
def test_tokens_appear_in_no_file_tx_writes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = run_tx(
        "run", "summarization", "--output_dir", str(out), *SMALL_SUMMARIZATION,
        "--max_train_samples", "8", "--max_eval_samples", "4", "--max_predict_samples", "4",
        "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "1", "--logging_steps", "1",
        "--token", SECRETS["token"], "--hub_token", SECRETS["hub_token"],
        env={"HF_TOKEN": SECRETS["HF_TOKEN"]},
    )
    assert result.returncode == 0, result.stderr
    written = _files(out) + _files(Path(os.environ["TX_CACHE_HOME"]))
    names = {p.name for p in written}
    assert {"tx-job.yaml", "trainer_state.json", "training_args.bin", "README.md", "all_results.json"} <= names
    assert any(p.parent.name == "checkpoint-2" for p in written)
    for path in written:
        data = path.read_bytes()
        for name, secret in SECRETS.items():
            assert secret.encode() not in data, f"{name} found in {path}"
            assert secret[3:15].encode() not in data, f"part of {name} found in {path}"
    for name, secret in SECRETS.items():
        assert secret not in result.stdout + result.stderr, f"{name} printed"
