"""`tx report`: compare finished (or running) training runs from the files the Trainer writes.

Reading and plotting are the edges (:func:`read_run`, :func:`plot`); everything between is
pure functions over plain dicts (``trainer_state.json``'s ``log_history``, the ``*_results.json``
files, the ``args`` of ``tx-job.yaml``), so the numbers are testable without a run.

Works on any HF Trainer output dir: ``tx-job.yaml`` is optional (no config diff without it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from tx.core.errors import ConfigError

STATE_FILE = "trainer_state.json"
RESULT_FILES = ("all_results.json", "train_results.json", "eval_results.json", "predict_results.json")
#: eval keys that measure speed, not quality: not plotted, not candidates for "best"
SPEED_SUFFIXES = ("_runtime", "_samples_per_second", "_steps_per_second")
#: the metric shown as "best" when the job names none (first one present wins)
PREFERRED_METRICS = ("eval_rougeL", "eval_bleu", "eval_accuracy", "eval_f1", "eval_combined_score",
                     "eval_pearson", "eval_spearmanr", "eval_loss")
#: arguments that differ between any two runs by construction: left out of the config diff
NOT_CONFIG = ("output_dir", "logging_dir", "run_name")

Point = tuple[int, float]


@dataclass(frozen=True)
class Run:
    """What one run directory holds, as plain data."""

    name: str
    path: Path
    state: Mapping[str, Any]
    results: Mapping[str, Any] = field(default_factory=dict)
    args: Mapping[str, Any] | None = None  # tx-job.yaml `args`, None without a job file
    task: str | None = None
    state_file: Path | None = None


# -- edges: reading ----------------------------------------------------------------------------
def find_state_file(run_dir: Path) -> Path:
    """``trainer_state.json`` of the run, else of its newest checkpoint (a run in progress)."""
    direct = run_dir / STATE_FILE
    if direct.is_file():
        return direct
    checkpoints = [p for p in run_dir.glob(f"checkpoint-*/{STATE_FILE}") if p.parent.name[11:].isdigit()]
    if checkpoints:
        return max(checkpoints, key=lambda p: int(p.parent.name[11:]))
    raise ConfigError(
        f"no {STATE_FILE} in {str(run_dir)!r} (nor in a checkpoint-* folder under it)",
        hint="pass the --output_dir of a training run (one with --do_train that has logged at least once)",
    )


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{str(path)!r} is not valid JSON ({exc.msg} at line {exc.lineno})",
                          hint="the file may still be being written; try again") from None


def read_run(path: str | Path, name: str | None = None) -> Run:
    """Read one run directory (raises ConfigError for a path that is not one)."""
    run_dir = Path(path).expanduser()
    if not run_dir.exists():
        raise ConfigError(f"run directory {str(path)!r} does not exist", hint="pass the --output_dir of a run")
    if not run_dir.is_dir():
        raise ConfigError(f"{str(path)!r} is not a directory", hint="pass the --output_dir of a run")
    state_file = find_state_file(run_dir)
    state = _load_json(state_file)
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        raise ConfigError(f"{str(state_file)!r} has no log_history", hint="is it a Trainer's trainer_state.json?")
    results: dict[str, Any] = {}
    for file_name in RESULT_FILES:
        candidate = run_dir / file_name
        if candidate.is_file():
            data = _load_json(candidate)
            if isinstance(data, dict):
                results.update(data)
    args, task = None, None
    job_file = run_dir / "tx-job.yaml"
    if job_file.is_file():
        from tx.core import jobspec

        job = jobspec.read(job_file)
        args, task = dict(job.args), job.task
    return Run(name=name or run_dir.resolve().name, path=run_dir, state=state, results=results,
               args=args, task=task, state_file=state_file)


def read_runs(paths: Sequence[str | Path]) -> list[Run]:
    """Read several runs, named so that no two share a name (folder name, then more of the path)."""
    if not paths:
        raise ConfigError("no run directory given", hint="usage: tx report RUN_DIR [RUN_DIR...]")
    return [read_run(p, name) for p, name in zip(paths, run_names([Path(p) for p in paths]))]


def run_names(paths: Sequence[Path]) -> list[str]:
    """Pure-ish (resolves paths): the shortest path suffixes that tell the runs apart."""
    parts = [Path(p).expanduser().resolve().parts for p in paths]
    for depth in range(1, max((len(p) for p in parts), default=1) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [f"{n} ({i + 1})" for i, n in enumerate("/".join(p) for p in parts)]


# -- pure: series and summary ------------------------------------------------------------------
def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def is_quality_metric(key: str) -> bool:
    return key.startswith("eval_") and not key.endswith(SPEED_SUFFIXES) and key != "eval_samples"


def extract_series(state: Mapping[str, Any], results: Mapping[str, Any] | None = None) -> dict[str, list[Point]]:
    """Step-wise series from ``log_history``: ``loss`` (training loss), ``learning_rate``,
    ``grad_norm`` and every eval quality metric (``eval_loss``, ``eval_rougeL``...).

    The final evaluation that runs after training is saved only in ``eval_results.json``; when
    ``results`` has it, it is added at the last step unless an eval at that step is logged.
    """
    series: dict[str, list[Point]] = {}
    for entry in state.get("log_history", []):
        step = entry.get("step")
        if not isinstance(step, int):
            continue
        for key, raw in entry.items():
            if key in ("step", "epoch"):
                continue
            value = _number(raw)
            if value is None:
                continue
            if key in ("loss", "learning_rate", "grad_norm") or is_quality_metric(key):
                series.setdefault(key, []).append((step, value))
    final_step = state.get("global_step")
    if results and isinstance(final_step, int):
        logged_eval_steps = {s for s, _ in series.get("eval_loss", [])}
        if final_step not in logged_eval_steps:
            for key, raw in results.items():
                value = _number(raw)
                if value is not None and is_quality_metric(key):
                    series.setdefault(key, []).append((final_step, value))
    for points in series.values():
        points.sort(key=lambda p: p[0])
    return series


def train_totals(state: Mapping[str, Any], results: Mapping[str, Any]) -> dict[str, float]:
    """``train_runtime``, ``train_samples_per_second``, ``train_loss``: from the results
    files when present, else from the last summary entry of ``log_history``."""
    out: dict[str, float] = {}
    summary = next((e for e in reversed(state.get("log_history", [])) if "train_runtime" in e), {})
    for key in ("train_runtime", "train_samples_per_second", "train_loss"):
        value = _number(results.get(key, summary.get(key)))
        if value is not None:
            out[key] = value
    return out


def lower_is_better(metric: str) -> bool:
    name = metric.lower()
    return name.endswith(("loss", "perplexity", "mse", "mae", "rmse", "_ter", "wer", "cer"))


def primary_metric(series: Mapping[str, list[Point]], args: Mapping[str, Any] | None,
                   requested: str | None = None) -> str | None:
    """The metric to rank a run by: ``requested``, else the job's ``metric_for_best_model``,
    else the first of :data:`PREFERRED_METRICS` the run logged, else any eval metric."""
    for name in (requested, (args or {}).get("metric_for_best_model")):
        if name:
            return name if name.startswith("eval_") else f"eval_{name}"
    for name in PREFERRED_METRICS:
        if series.get(name):
            return name
    return next((k for k in sorted(series) if is_quality_metric(k)), None)


def best_point(points: Sequence[Point], metric: str, greater_is_better: bool | None = None) -> Point | None:
    """The best (step, value); ties go to the earliest step."""
    if not points:
        return None
    higher = (not lower_is_better(metric)) if greater_is_better is None else greater_is_better
    best = points[0]
    for point in points[1:]:
        if (point[1] > best[1]) if higher else (point[1] < best[1]):
            best = point
    return best


def config_diff(args_by_run: Mapping[str, Mapping[str, Any] | None]) -> list[tuple[str, list[Any]]]:
    """Arguments whose values differ between runs (``None`` where a run does not set it),
    sorted by name; runs without a job file are left out."""
    known = {name: args for name, args in args_by_run.items() if args is not None}
    if len(known) < 2:
        return []
    keys = sorted(set().union(*(set(a) for a in known.values())) - set(NOT_CONFIG))
    rows = []
    for key in keys:
        values = [args.get(key) for args in known.values()]
        if any(v != values[0] for v in values[1:]):
            rows.append((key, values))
    return rows


def fmt(value: Any) -> str:
    """Numbers as in the summary: 4 significant digits, no exponent for everyday sizes."""
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}h{minutes:02d}m{int(secs):02d}s"
    if minutes:
        return f"{minutes}m{int(secs):02d}s"
    return f"{secs:.1f}s"


@dataclass(frozen=True)
class RunSummary:
    name: str
    task: str | None
    steps: int | None
    epochs: float | None
    metric: str | None
    best: Point | None
    totals: dict[str, float]
    final: dict[str, float]


def summarize(run: Run, requested_metric: str | None = None) -> RunSummary:
    """Pure: the numbers of the summary table for one run."""
    series = extract_series(run.state, run.results)
    metric = primary_metric(series, run.args, requested_metric)
    greater = (run.args or {}).get("greater_is_better")
    best = best_point(series.get(metric, []), metric, greater) if metric else None
    final = {k: v for k, v in ((k, _number(v)) for k, v in run.results.items())
             if v is not None and is_quality_metric(k)}
    return RunSummary(
        name=run.name,
        task=run.task,
        steps=run.state.get("global_step"),
        epochs=_number(run.state.get("epoch")),
        metric=metric,
        best=best,
        totals=train_totals(run.state, run.results),
        final=final,
    )


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def render_markdown(runs: Sequence[Run], requested_metric: str | None = None, image: str | None = None) -> str:
    """Pure: the markdown summary: one row per run, then the config differences."""
    summaries = [summarize(r, requested_metric) for r in runs]
    lines = ["# tx report", ""]
    if image:
        lines += [f"![training curves]({image})", ""]
    rows = []
    for s in summaries:
        best = f"{s.metric} {fmt(s.best[1])} (step {s.best[0]})" if s.best and s.metric else "-"
        rows.append([
            s.name, s.task or "-", fmt(s.steps), fmt(s.epochs),
            fmt_seconds(s.totals.get("train_runtime")), fmt(s.totals.get("train_samples_per_second")),
            fmt(s.totals.get("train_loss")), best, fmt(s.final.get("eval_loss")),
        ])
    lines += _table(["run", "task", "steps", "epochs", "train time", "train samples/s", "train loss",
                     "best eval metric", "final eval_loss"], rows)
    lines.append("")
    diff = config_diff({r.name: r.args for r in runs})
    with_args = [r.name for r in runs if r.args is not None]
    if len(runs) > 1:
        lines += ["## Config differences", ""]
        if len(with_args) < 2:
            lines.append("(needs tx-job.yaml in at least two runs)")
        elif not diff:
            lines.append("(none: the jobs differ only in " + ", ".join(NOT_CONFIG) + ")")
        else:
            lines += _table(["argument", *with_args], ([k, *(fmt(v) for v in values)] for k, values in diff))
        lines.append("")
    return "\n".join(lines)


def panels(runs: Sequence[Run]) -> list[tuple[str, dict[str, list[Point]]]]:
    """Pure: what to draw: (metric, {run name: points}) for training loss, learning rate and each
    eval metric any run logged, in that order."""
    per_run = {r.name: extract_series(r.state, r.results) for r in runs}
    evals = sorted({k for s in per_run.values() for k in s if is_quality_metric(k)},
                   key=lambda k: (k != "eval_loss", k.lower()))
    out = []
    for metric in ["loss", "learning_rate", *evals]:
        lines = {name: s[metric] for name, s in per_run.items() if s.get(metric)}
        if lines:
            out.append((metric, lines))
    return out


TITLES = {"loss": "training loss", "learning_rate": "learning rate"}


# -- edge: plotting ----------------------------------------------------------------------------
def plot(runs: Sequence[Run], out: Path) -> Path:
    """Draw every panel (runs overlaid, legend by run name) into ``out`` (.png, .svg or .pdf)."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError("tx report needs matplotlib",
                          hint="pip install 'tx-train[report]' (or pip install matplotlib)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    todo = panels(runs)
    if not todo:
        names = ", ".join(r.name for r in runs)
        raise ConfigError(f"nothing to plot: no logged loss, learning rate or eval metric in {names}",
                          hint="train with a smaller --logging_steps")
    ncols = 1 if len(todo) == 1 else 2 if len(todo) <= 4 else 3
    nrows = math.ceil(len(todo) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.0 * ncols, 3.4 * nrows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color_of = {r.name: colors[i % len(colors)] for i, r in enumerate(runs)}
    for ax, (metric, lines) in zip(axes.flat, todo):
        for name, points in lines.items():
            xs, ys = zip(*points)
            ax.plot(xs, ys, marker="o" if len(points) < 30 else None, markersize=4,
                    color=color_of[name], label=name)
        ax.set_title(TITLES.get(metric, metric))
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if metric == "learning_rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    for ax in list(axes.flat)[len(todo):]:
        ax.set_visible(False)
    handles = [plt.Line2D([], [], color=color_of[r.name], marker="o", label=r.name) for r in runs]
    fig.legend(handles=handles, loc="upper center", ncol=min(len(runs), 4), frameon=False)
    top = 1 - 0.45 / fig.get_figheight() * math.ceil(len(runs) / 4)
    fig.tight_layout(rect=(0, 0, 1, top))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
