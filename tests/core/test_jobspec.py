"""The job spec: resolved once, validated before launch, written without secrets, rerunnable."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import SMALL_SUMMARIZATION, assert_one_line_error, read_json
from tx.core import jobspec
from tx.core.jobspec import JobSpec


def test_roundtrip(tmp_path: Path) -> None:
    spec = JobSpec(task="summarization", launcher="local", args={"output_dir": str(tmp_path), "seed": 3},
                   launcher_options={"x": 1}, plugins=("a.b",), job_id="j1", created="now")
    path = jobspec.write(spec)
    assert path == tmp_path / "tx-job.yaml"
    assert jobspec.read(path) == spec
    assert jobspec.read(tmp_path) == spec  # a run directory works too
    assert path.read_text().startswith("# tx job spec")


def test_read_refuses_non_job_files(tmp_path: Path) -> None:
    from tx.core.errors import ConfigError

    other = tmp_path / "x.yaml"
    other.write_text("a: 1\n")
    with pytest.raises(ConfigError):
        jobspec.read(other)
    with pytest.raises(ConfigError):
        jobspec.read(tmp_path / "missing.yaml")


def test_dry_run_prints_spec_and_plan_and_writes_nothing(tx, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = tx("run", "summarization", "--output_dir", str(out), "--dry-run", "--seed", "5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert not out.exists()
    spec_text = result.stdout.split("# plan for launcher")[0]
    spec = yaml.safe_load("\n".join(line for line in spec_text.splitlines() if not line.startswith("#")))
    assert spec["task"] == "summarization" and spec["launcher"] == "local"
    assert spec["args"]["seed"] == 5 and spec["args"]["output_dir"] == str(out)
    assert spec["args"]["train_file"].endswith("plugins/summarization/data/train.jsonl")
    assert "-m tx.core.worker " + str(out / "tx-job.yaml") in result.stdout


def test_relative_paths_become_absolute(tx, tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"document": "a b. c d.", "summary": "a b."}\n')
    result = tx("run", "summarization", "--model_name_or_path", "google-t5/t5-small", "--train_file", "d.jsonl",
                "--do_train", "--output_dir", "rel/out", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"train_file: {tmp_path / 'd.jsonl'}" in result.stdout
    assert f"output_dir: {tmp_path / 'rel' / 'out'}" in result.stdout
    assert "model_name_or_path: google-t5/t5-small" in result.stdout  # Hub ids stay as they are


def test_config_file_below_command_line(tx, tmp_path: Path) -> None:
    cfg = tmp_path / "job.yaml"
    cfg.write_text(f"learning_rate: 0.5\nseed: 9\noutput_dir: {tmp_path / 'o'}\n")
    result = tx("run", "summarization", "--config", str(cfg), "--seed", "11", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "learning_rate: 0.5" in result.stdout and "seed: 11" in result.stdout


def test_secrets_never_in_the_job_file(tx, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = tx("run", "summarization", "--output_dir", str(out), "--token", "hf_" "SECRETVALUE1234567890",
                "--hub_token", "hf_" "OTHERSECRET0987654321", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "SECRETVALUE" not in result.stdout and "OTHERSECRET" not in result.stdout


@pytest.mark.train
def test_from_reruns_the_job_exactly(tx, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = tx("run", "summarization", "--output_dir", str(out), *SMALL_SUMMARIZATION, "--seed", "3",
               "--token", "hf_" "SECRETVALUE1234567890")
    assert first.returncode == 0, first.stderr[-3000:]
    job_text = (out / "tx-job.yaml").read_text()
    assert "SECRETVALUE" not in job_text
    first_results = read_json(out / "all_results.json")
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    again = tx("run", "--from", str(out / "tx-job.yaml"), "--overwrite_output_dir", cwd=moved)
    assert again.returncode == 0, again.stderr[-3000:]
    second = read_json(out / "all_results.json")
    assert second["train_loss"] == pytest.approx(first_results["train_loss"], rel=1e-5)
    assert second["eval_rougeL"] == pytest.approx(first_results["eval_rougeL"], abs=1e-6)
    rerun_spec = yaml.safe_load((out / "tx-job.yaml").read_text())
    assert rerun_spec["args"]["seed"] == 3 and rerun_spec["args"]["overwrite_output_dir"] is True


def test_validation_fails_before_anything_is_written(tx, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = tx("run", "summarization", "--output_dir", str(out), "--max_source_length", "0")
    assert_one_line_error(result, "--max_source_length")
    assert not out.exists()
