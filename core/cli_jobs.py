"""`tx status`, `tx logs`, `tx cancel`: the same three commands for every scheduler launcher."""

from __future__ import annotations

from typing import Any, Optional

import typer

from tx.core.completion import complete_job_ids
from tx.core.jobs import all_records, find_record


def _launcher(plugins: Any, record: dict[str, Any]) -> Any:
    return plugins.launchers.get(record["launcher"])


def status_cmd(
    ctx: typer.Context,
    job: Optional[str] = typer.Argument(None, help="tx job id or scheduler id; omit to list recent jobs.", autocompletion=complete_job_ids),
    limit: int = typer.Option(20, "--limit", "-n", help="How many recent jobs to list."),
) -> None:
    """Show a job's state (state, elapsed, nodes, restarts), or list recent tx jobs."""
    from tx.core.cli import _state

    plugins = _state(ctx).plugins
    records = [find_record(job)] if job else all_records()[:limit]
    if not records:
        typer.echo("no tx jobs yet (scheduler launchers such as slurm and docker record theirs here)")
        return
    typer.echo(f"{'JOB':<40} {'LAUNCHER':<8} {'ID':<14} {'STATE':<12} {'ELAPSED':<10} {'RESTARTS':<8} NODES")
    for record in records:
        st = _launcher(plugins, record).status(record)
        state = st.state + (f" ({st.exit_code})" if st.exit_code not in (None, 0) else "")
        typer.echo(
            f"{record['job_id']:<40} {record['launcher']:<8} {str(record.get('scheduler_id', ''))[:14]:<14} "
            f"{state:<12} {st.elapsed:<10} {st.restarts:<8} {st.nodes}"
        )
    if job:
        typer.echo(f"output_dir: {records[0].get('output_dir', '')}")
        if records[0].get("log_path"):
            typer.echo(f"log: {records[0]['log_path']}")


def logs_cmd(
    ctx: typer.Context,
    job: str = typer.Argument(..., help="tx job id or scheduler id.", autocompletion=complete_job_ids),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new output until the job ends."),
) -> None:
    """Print a job's log (stdout and stderr of its workers)."""
    from tx.core.cli import _state

    record = find_record(job)
    for chunk in _launcher(_state(ctx).plugins, record).logs(record, follow=follow):
        typer.echo(chunk, nl=False)


def cancel_cmd(
    ctx: typer.Context,
    job: str = typer.Argument(..., help="tx job id or scheduler id.", autocompletion=complete_job_ids),
) -> None:
    """Cancel a job (idempotent: cancelling a finished job says so and exits 0)."""
    from tx.core.cli import _state

    record = find_record(job)
    typer.echo(_launcher(_state(ctx).plugins, record).cancel(record))


def register(app: typer.Typer) -> None:
    app.command("status")(status_cmd)
    app.command("logs")(logs_cmd)
    app.command("cancel")(cancel_cmd)
