"""`tx report RUN_DIR [RUN_DIR...]`: curves (PNG) and a markdown summary of training runs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

DEFAULT_NAME = "tx-report.png"


def default_out(run_dirs: list[str]) -> Path:
    """One run: its own folder; several: the current folder (the comparison belongs to neither)."""
    if len(run_dirs) == 1:
        return Path(run_dirs[0]).expanduser() / DEFAULT_NAME
    return Path(DEFAULT_NAME)


def report_cmd(
    run_dirs: List[str] = typer.Argument(..., metavar="RUN_DIR...", help="Output dirs of training runs (tx or any HF Trainer)."),
    out: Optional[str] = typer.Option(
        None, "--out", "-o", metavar="PATH",
        help=f"Image to write (.png, .svg or .pdf); the summary goes next to it as .md. "
        f"Default: RUN_DIR/{DEFAULT_NAME} for one run, ./{DEFAULT_NAME} for several.",
    ),
    metric: Optional[str] = typer.Option(
        None, "--metric", help="Rank runs by this eval metric (e.g. rougeL); default: the job's "
        "metric_for_best_model, else the task's main metric.",
    ),
) -> None:
    """Plot training loss, learning rate and eval metrics over steps (runs overlaid) and
    summarize best metric, train time, samples/s and config differences."""
    from tx.core import report
    from tx.core.errors import ConfigError

    runs = report.read_runs(run_dirs)
    image = Path(out).expanduser() if out else default_out(run_dirs)
    if image.suffix.lower() not in (".png", ".svg", ".pdf"):
        raise ConfigError(f"--out {out!r} is not a .png, .svg or .pdf file", hint="e.g. --out report.png")
    if image.is_dir():
        raise ConfigError(f"--out {out!r} is a directory", hint=f"give a file name, e.g. {image / DEFAULT_NAME}")
    report.plot(runs, image)
    text = report.render_markdown(runs, requested_metric=metric, image=image.name)
    summary = image.with_suffix(".md")
    summary.write_text(text, encoding="utf-8")
    typer.echo(text)
    typer.echo(f"tx: wrote {image} and {summary}")


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
