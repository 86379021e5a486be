"""The benchmark of issue 9 (bench/run.py) in --quick mode: one real run of the plain HF script,
`tx run` and the raw loop, plus the startup commands; every measurement lands in the JSON, with
sane values, and the chart is a real PNG."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.bench


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("bench")
    result = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, cwd=str(ROOT))
    return result, out


def test_quick_bench_runs_and_prints_every_target(quick: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, _ = quick
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    verdicts = [line for line in result.stdout.splitlines() if line.startswith(("PASS ", "FAIL "))]
    assert len(verdicts) == 6, result.stdout


def test_json_has_every_measurement(quick: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, out = quick
    assert result.returncode == 0, result.stderr[-3000:]
    data = json.loads((out / "latest.json").read_text())
    s = data["summary"]
    for kind in ("plain_hf", "tx", "raw_loop"):
        assert s[kind]["wall_s"] > 0 and s[kind]["train_s"] > 0 and s[kind]["tokens_per_s"] > 0, kind
        assert len(data["runs"][kind]) == data["meta"]["repetitions"] == 1
    for kind in ("plain_hf", "tx"):
        for key in ("eval_rougeL", "predict_rougeL"):
            assert 0 <= s[kind][key] <= 100, (kind, key)
        assert 0 < s[kind]["first_step_s"] < s[kind]["wall_s"], kind
        assert s[kind]["eval_s"] > 0 and s[kind]["predict_s"] > 0
        assert s[kind]["worker_peak_rss_mb"] > 100, kind  # torch + a model: hundreds of MB
    assert 0 < s["tx"]["launcher_peak_rss_mb"]
    assert isinstance(s["tx"]["launcher_imported_torch"], bool)
    for kind in ("plain_hf", "tx"):  # line i of generated_predictions.txt is the prediction for row i
        assert abs(s[kind]["predictions_file_rougeL"] - s[kind]["predict_rougeL"]) < 1.0, s[kind]
    assert data["runs"]["tx"][0]["predictions_lines"] == data["meta"]["size"]["test"]
    for key, value in data["ratios"].items():
        assert value > 0, key
    assert data["meta"]["training_tokens"] > 0 and data["meta"]["quick"] is True
    startup = data["startup"]
    assert set(startup) == {"tx --help", "tx list", "tx run --launcher slurm --dry-run", "accelerate launch --help",
                            "torchrun --help", "import TrainingArguments"}
    for name, row in startup.items():
        assert row["exit_code"] == 0 and row["median_s"] > 0, name  # a slurm dry-run works without slurm
    assert len(data["targets"]) == 6 and all(isinstance(t["pass"], bool) for t in data["targets"])


def test_chart_is_a_png(quick: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, out = quick
    assert result.returncode == 0, result.stderr[-3000:]
    png = (out / "latest.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
