"""`tx report`: series, best metric, config diff and the markdown summary on synthetic
trainer states (fast), then two real tiny runs rendered and checked against their files
(train tier). TensorBoard logging is checked on the same two runs."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SMALL_SUMMARIZATION, assert_one_line_error, read_json, run_tx
from tx.core import report
from tx.core.errors import ConfigError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- helpers -----------------------------------------------------------------------------------
def synthetic_state(losses: list[float], evals: dict[int, dict[str, float]], lr0: float = 1e-3,
                    final: bool = True) -> dict[str, Any]:
    """A trainer_state.json as the Trainer writes it: a train log per step, eval logs at the
    given steps, and the closing train summary."""
    steps = len(losses)
    history: list[dict[str, Any]] = []
    for step, loss in enumerate(losses, start=1):
        history.append({"epoch": step / steps, "grad_norm": 1.0 / step, "learning_rate": lr0 * (1 - (step - 1) / steps),
                        "loss": loss, "step": step})
        if step in evals:
            history.append({"epoch": step / steps, "step": step, "eval_runtime": 0.5,
                            "eval_samples_per_second": 32.0, "eval_steps_per_second": 2.0,
                            **{f"eval_{k}": v for k, v in evals[step].items()}})
    if final:
        history.append({"epoch": 1.0, "step": steps, "total_flos": 1.0, "train_loss": sum(losses) / steps,
                        "train_runtime": 12.5, "train_samples_per_second": 40.0, "train_steps_per_second": 2.5})
    return {"global_step": steps, "epoch": 1.0, "log_history": history, "best_metric": None}


def make_run_dir(path: Path, state: dict[str, Any], results: dict[str, Any] | None = None,
                 args: dict[str, Any] | None = None) -> Path:
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps(state))
    if results is not None:
        (path / "all_results.json").write_text(json.dumps(results))
    if args is not None:
        job = {"task": "summarization", "launcher": "local", "args": {"output_dir": str(path), **args}}
        (path / "tx-job.yaml").write_text(yaml.safe_dump(job))
    return path


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def assert_real_picture(path: Path, min_px: int = 400, max_px: int = 4000) -> None:
    """A valid PNG of sane size whose pixels show something (not one flat colour)."""
    width, height = png_size(path)
    assert min_px <= width <= max_px and min_px // 2 <= height <= max_px, (width, height)
    import matplotlib.image

    pixels = matplotlib.image.imread(str(path))
    assert pixels.shape[0] == height and pixels.shape[1] == width
    rgb = pixels[..., :3]
    drawn = (rgb < 0.9).any(axis=-1).mean()  # share of non-white pixels: axes, lines, text
    assert 0.005 < drawn < 0.6, drawn


def markdown_rows(text: str) -> dict[str, dict[str, str]]:
    """The summary table as {run: {column: cell}}."""
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    out = {}
    for line in lines[1:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == len(header) and cells[0] not in ("argument",):
            out[cells[0]] = dict(zip(header, cells))
        if cells[0] == "argument":
            break
    return out


def seconds(cell: str) -> float:
    """`1h02m03s`, `2m05s`, `12.5s` -> seconds."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(\d+(?:\.\d+)?)s", cell)
    assert match, cell
    hours, minutes, secs = match.groups()
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + float(secs)


def diff_rows(text: str) -> dict[str, list[str]]:
    section = text.split("## Config differences", 1)[1]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| ")]
    return {r[0]: r[1:] for r in rows[1:]}


# -- pure functions on synthetic states (fast) -------------------------------------------------
def test_series_take_train_and_eval_logs_and_leave_out_speed() -> None:
    state = synthetic_state([4.0, 3.0, 2.5, 2.0], {2: {"loss": 3.1, "rougeL": 10.0}, 4: {"loss": 2.4, "rougeL": 12.5}})
    series = report.extract_series(state)
    assert series["loss"] == [(1, 4.0), (2, 3.0), (3, 2.5), (4, 2.0)]
    assert [s for s, _ in series["learning_rate"]] == [1, 2, 3, 4]
    assert series["learning_rate"][0][1] == pytest.approx(1e-3)
    assert series["eval_rougeL"] == [(2, 10.0), (4, 12.5)]
    assert "eval_runtime" not in series and "eval_samples_per_second" not in series
    assert "train_loss" not in series  # the closing summary is not a point of the curve


def test_final_eval_from_results_is_added_at_the_last_step_once() -> None:
    state = synthetic_state([3.0, 2.0, 1.5], {1: {"loss": 2.9, "rougeL": 5.0}})
    results = {"eval_loss": 1.7, "eval_rougeL": 9.0, "eval_runtime": 3.0, "eval_samples": 8, "train_loss": 2.1}
    series = report.extract_series(state, results)
    assert series["eval_rougeL"] == [(1, 5.0), (3, 9.0)]
    assert series["eval_loss"] == [(1, 2.9), (3, 1.7)]
    assert "eval_samples" not in series and "eval_runtime" not in series
    # already logged at the last step (eval_strategy steps/epoch): not doubled
    state = synthetic_state([3.0, 2.0], {2: {"loss": 1.9, "rougeL": 7.0}})
    series = report.extract_series(state, {"eval_loss": 1.9, "eval_rougeL": 7.0})
    assert series["eval_rougeL"] == [(2, 7.0)]


def test_non_numbers_and_non_finite_values_are_skipped() -> None:
    state = {"global_step": 2, "log_history": [
        {"step": 1, "loss": float("nan"), "learning_rate": 0.1},
        {"step": 2, "loss": 1.0, "learning_rate": "0.1", "eval_note": "x"},
        {"loss": 5.0},  # no step
    ]}
    series = report.extract_series(state)
    assert series == {"learning_rate": [(1, 0.1)], "loss": [(2, 1.0)]}


def test_train_totals_prefer_results_files_then_log_history() -> None:
    state = synthetic_state([2.0, 1.0], {})
    assert report.train_totals(state, {}) == {"train_runtime": 12.5, "train_samples_per_second": 40.0, "train_loss": 1.5}
    assert report.train_totals(state, {"train_runtime": 99.0})["train_runtime"] == 99.0
    assert report.train_totals(synthetic_state([2.0], {}, final=False), {}) == {}


def test_primary_metric_and_best_point_direction() -> None:
    series = {"eval_loss": [(1, 2.0), (2, 1.0), (3, 1.5)], "eval_rougeL": [(1, 3.0), (2, 9.0), (3, 9.0)],
              "eval_gen_len": [(1, 5.0)]}
    assert report.primary_metric(series, None) == "eval_rougeL"
    assert report.primary_metric(series, {"metric_for_best_model": "loss"}) == "eval_loss"
    assert report.primary_metric(series, {"metric_for_best_model": "loss"}, requested="gen_len") == "eval_gen_len"
    assert report.primary_metric({"eval_loss": [(1, 1.0)]}, None) == "eval_loss"
    assert report.primary_metric({"eval_zzz": [(1, 1.0)]}, None) == "eval_zzz"
    assert report.primary_metric({}, None) is None
    assert report.best_point(series["eval_loss"], "eval_loss") == (2, 1.0)
    assert report.best_point(series["eval_rougeL"], "eval_rougeL") == (2, 9.0)  # tie: earliest
    assert report.best_point(series["eval_rougeL"], "eval_rougeL", greater_is_better=False) == (1, 3.0)
    assert report.best_point([], "eval_loss") is None


def test_config_diff_lists_only_differing_arguments() -> None:
    diff = report.config_diff({
        "a": {"output_dir": "/a", "learning_rate": 1e-3, "seed": 42, "fp16": True},
        "b": {"output_dir": "/b", "learning_rate": 5e-4, "seed": 42},
        "c": None,  # no tx-job.yaml: left out
    })
    assert diff == [("fp16", [True, None]), ("learning_rate", [1e-3, 5e-4])]
    assert report.config_diff({"a": {"x": 1}, "b": None}) == []


def test_run_names_tell_runs_apart(tmp_path: Path) -> None:
    assert report.run_names([tmp_path / "x" / "run", tmp_path / "y" / "other"]) == ["run", "other"]
    assert report.run_names([tmp_path / "x" / "run", tmp_path / "y" / "run"]) == ["x/run", "y/run"]


def test_markdown_summary_numbers(tmp_path: Path) -> None:
    a = make_run_dir(tmp_path / "a", synthetic_state([4.0, 3.0, 2.0], {3: {"loss": 2.5, "rougeL": 11.25}}),
                     results={"train_runtime": 75.0, "train_samples_per_second": 12.34567, "train_loss": 3.0,
                              "eval_loss": 2.5, "eval_rougeL": 11.25},
                     args={"learning_rate": 0.001, "num_train_epochs": 1.0})
    b = make_run_dir(tmp_path / "b", synthetic_state([5.0, 4.0, 3.5], {1: {"loss": 4.5, "rougeL": 2.0},
                                                                       3: {"loss": 3.6, "rougeL": 1.0}}),
                     args={"learning_rate": 0.0005, "num_train_epochs": 1.0})
    text = report.render_markdown(report.read_runs([a, b]), image="cmp.png")
    rows = markdown_rows(text)
    assert rows["a"]["train time"] == "1m15s" and rows["a"]["train samples/s"] == "12.35"
    assert seconds("1h02m03s") == 3723 and seconds(rows["b"]["train time"]) == 12.5
    assert rows["a"]["best eval metric"] == "eval_rougeL 11.25 (step 3)"
    assert rows["a"]["final eval_loss"] == "2.5" and rows["a"]["steps"] == "3"
    assert rows["b"]["best eval metric"] == "eval_rougeL 2 (step 1)"  # higher is better
    assert rows["b"]["train time"] == "12.5s" and rows["b"]["final eval_loss"] == "-"
    assert diff_rows(text) == {"learning_rate": ["0.001", "0.0005"]}
    assert "![training curves](cmp.png)" in text


def test_plot_synthetic_runs(tmp_path: Path) -> None:
    a = make_run_dir(tmp_path / "a", synthetic_state([4.0, 3.0, 2.0, 1.8], {2: {"loss": 2.5, "rougeL": 4.0},
                                                                            4: {"loss": 2.0, "rougeL": 6.0}}))
    b = make_run_dir(tmp_path / "b", synthetic_state([4.5, 3.5, 3.0, 2.8], {4: {"loss": 3.0, "rougeL": 2.0}}))
    runs = report.read_runs([a, b])
    assert [m for m, _ in report.panels(runs)] == ["loss", "learning_rate", "eval_loss", "eval_rougeL"]
    out = report.plot(runs, tmp_path / "plots" / "cmp.png")
    assert_real_picture(out)


def test_state_of_the_newest_checkpoint_is_used_for_a_run_in_progress(tmp_path: Path) -> None:
    run = tmp_path / "run"
    for step in (2, 10, 4):
        make_run_dir(run / f"checkpoint-{step}", synthetic_state([1.0] * step, {}, final=False))
    loaded = report.read_run(run)
    assert loaded.state_file == run / "checkpoint-10" / "trainer_state.json"
    assert loaded.state["global_step"] == 10


def test_not_a_run_dir_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no trainer_state.json"):
        report.read_run(tmp_path)
    with pytest.raises(ConfigError, match="does not exist"):
        report.read_run(tmp_path / "missing")
    (tmp_path / "trainer_state.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        report.read_run(tmp_path)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    line = assert_one_line_error(run_tx("report", str(empty)), "no trainer_state.json", str(empty))
    assert "output_dir" in line  # says what to pass instead
    assert list(empty.iterdir()) == []  # nothing written
    good = make_run_dir(tmp_path / "good", synthetic_state([2.0, 1.0], {}))
    assert_one_line_error(run_tx("report", str(good), "--out", str(tmp_path / "x.txt")), "--out", ".png")


# -- two real tiny runs (train tier) -----------------------------------------------------------
REAL_FLAGS = (*SMALL_SUMMARIZATION, "--logging_steps", "1", "--eval_strategy", "steps", "--eval_steps", "2",
              "--max_eval_samples", "8", "--max_predict_samples", "8", "--generation_max_length", "8")


def _without_report_to(flags: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for flag in flags:
        if skip:
            skip = False
            continue
        if flag == "--report_to":
            skip = True
            continue
        out.append(flag)
    return out


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Run A logs to TensorBoard in an explicit --logging_dir; run B changes the learning rate
    and leaves report_to to tx's default (tensorboard, installed here)."""
    base = tmp_path_factory.mktemp("report-runs")
    a, b, tb = base / "lr-1e-3", base / "lr-5e-4", base / "tb-logs"
    result = run_tx("run", "summarization", *REAL_FLAGS, "--learning_rate", "1e-3", "--report_to", "tensorboard",
                    "--logging_dir", str(tb), "--output_dir", str(a))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    result = run_tx("run", "summarization", *_without_report_to(REAL_FLAGS), "--learning_rate", "5e-4",
                    "--output_dir", str(b))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"a": a, "b": b, "tb": tb, "base": base}


@pytest.mark.train
def test_report_of_two_real_runs_matches_their_files(real_runs: dict[str, Path]) -> None:
    out = real_runs["base"] / "compare" / "report.png"
    result = run_tx("report", str(real_runs["a"]), str(real_runs["b"]), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert_real_picture(out)
    summary = out.with_suffix(".md").read_text()
    assert summary in result.stdout

    rows = markdown_rows(summary)
    assert set(rows) == {"lr-1e-3", "lr-5e-4"}
    for name, run_dir in (("lr-1e-3", real_runs["a"]), ("lr-5e-4", real_runs["b"])):
        state = read_json(run_dir / "trainer_state.json")
        train = read_json(run_dir / "train_results.json")
        evals = read_json(run_dir / "eval_results.json")
        row = rows[name]
        assert row["task"] == "summarization"
        assert int(row["steps"]) == state["global_step"] > 1
        assert float(row["train samples/s"]) == pytest.approx(train["train_samples_per_second"], rel=1e-3)
        precision = 1.0 if "m" in row["train time"] else 0.051  # whole seconds from a minute on
        assert seconds(row["train time"]) == pytest.approx(train["train_runtime"], abs=precision)
        assert float(row["train loss"]) == pytest.approx(train["train_loss"], rel=1e-3)
        assert float(row["final eval_loss"]) == pytest.approx(evals["eval_loss"], rel=1e-3)
        # best ROUGE-L over the evals logged during training and the final one
        logged = [(e["step"], e["eval_rougeL"]) for e in state["log_history"] if "eval_rougeL" in e]
        assert len(logged) >= 2, state["log_history"]
        if state["global_step"] not in [s for s, _ in logged]:
            logged.append((state["global_step"], evals["eval_rougeL"]))
        best = max(logged, key=lambda p: p[1])
        first_best = min(s for s, v in logged if v == best[1])
        metric, value, step = row["best eval metric"].replace("(step ", "").rstrip(")").split()
        assert metric == "eval_rougeL"
        assert float(value) == pytest.approx(best[1], rel=1e-3, abs=1e-3) and int(step) == first_best
    diff = diff_rows(summary)
    assert diff["learning_rate"] == ["0.001", "0.0005"]
    assert "output_dir" not in diff and "logging_dir" not in diff


@pytest.mark.train
def test_report_of_one_run_defaults_into_its_folder(real_runs: dict[str, Path]) -> None:
    result = run_tx("report", str(real_runs["b"]))
    assert result.returncode == 0, result.stderr
    assert_real_picture(real_runs["b"] / "tx-report.png")
    assert (real_runs["b"] / "tx-report.md").read_text().startswith("# tx report")
    assert "Config differences" not in result.stdout


# -- TensorBoard on the same runs ----------------------------------------------------------------
def tensorboard_losses(log_dir: Path) -> dict[int, float]:
    """Step -> train/loss scalar as TensorBoard reads it from the event files under log_dir."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = sorted(log_dir.rglob("events.out.tfevents.*"))
    assert files, f"no TensorBoard event file under {log_dir}"
    out: dict[int, float] = {}
    for event_file in files:
        acc = EventAccumulator(str(event_file))
        acc.Reload()
        if "train/loss" in acc.Tags()["scalars"]:
            out.update({e.step: e.value for e in acc.Scalars("train/loss")})
    return out


def logged_losses(run_dir: Path) -> dict[int, float]:
    state = read_json(run_dir / "trainer_state.json")
    return {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}


@pytest.mark.train
def test_tensorboard_events_in_logging_dir(real_runs: dict[str, Path]) -> None:
    job = yaml.safe_load((real_runs["a"] / "tx-job.yaml").read_text())
    assert job["args"]["report_to"] == "tensorboard"
    losses = tensorboard_losses(real_runs["tb"])
    assert losses.keys() == logged_losses(real_runs["a"]).keys()
    for step, value in logged_losses(real_runs["a"]).items():
        assert losses[step] == pytest.approx(value, rel=1e-5)
    assert not (real_runs["a"] / "runs").exists()  # --logging_dir took them elsewhere


@pytest.mark.train
def test_tensorboard_is_the_default_when_installed(real_runs: dict[str, Path]) -> None:
    job = yaml.safe_load((real_runs["b"] / "tx-job.yaml").read_text())
    assert job["args"]["report_to"] == "tensorboard"  # tx's default, visible in the job spec
    losses = tensorboard_losses(real_runs["b"] / "runs")
    assert losses.keys() == logged_losses(real_runs["b"]).keys()
