"""`tx new-task` and `tx new-launcher`: generate an installable, tested plugin package."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer


def _taken(ctx: typer.Context, what: str) -> tuple[list[str], dict[str, str]]:
    """Registered names of ``what`` and the loaded plugins' names (a new plugin may use none)."""
    from tx.core.cli import _state

    loaded = _state(ctx).plugins
    registry = loaded.tasks if what == "task" else loaded.launchers
    return registry.names(), {name: info.describe() for name, info in loaded.infos.items()}


def _generate(ctx: typer.Context, what: str, name: str, directory: Path, kind: Optional[str],
              description: Optional[str], force: bool) -> None:
    from tx.core import __version__, scaffold

    registered, plugins = _taken(ctx, what)
    done = scaffold.generate(
        what, name, directory.expanduser(), kind=kind, description=description, force=force,
        registered=registered, plugins=plugins, tx_version=__version__,
    )
    _report(done, directory, what)


def _report(done: Any, directory: Path, what: str) -> None:
    plan, names = done.plan, done.names
    where = directory / names.directory if str(directory) != "." else Path(names.directory)
    made = f"{len(plan.create)} created" + (f", {len(plan.overwrite)} overwritten" if plan.overwrite else "")
    typer.echo(f"Generated {where}/ ({done.template}, {what} {names.name!r}): {made}.")
    for path in plan.edited:
        typer.echo(f"  overwrote {path} (it had local changes)")
    for path in plan.keep:
        typer.echo(f"  kept {path} (not made by tx)")
    for path in plan.stale:
        typer.echo(f"  left {path} (tx made it, the template no longer does)")
    typer.echo("Next:")
    typer.echo(f"  pip install -e {where}")
    if what == "task":
        typer.echo(f"  tx run {names.name}                 # its built-in default: sample data, tiny model, seconds")
    else:
        typer.echo(f"  tx run summarization --launcher {names.name} --dry-run")
    typer.echo(f"  cd {where} && python -m pytest")
    typer.echo(f"Then edit {names.module}/__init__.py ({where}/README.md says what to change).")


def new_task_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Task name, e.g. ner or my_task (my-task works too)."),
    directory: Path = typer.Option(Path("."), "--dir", metavar="PATH", help="Folder to create tx-NAME/ in."),
    kind: str = typer.Option(
        "seq2seq", "--kind", metavar="KIND", help="Starting point: seq2seq (text to text), classification, or custom (own build())."
    ),
    description: Optional[str] = typer.Option(None, "--description", metavar="TEXT", help="One line shown by `tx list`."),
    force: bool = typer.Option(
        False, "--force", help="Regenerate over an existing tx-NAME/: overwrites only the files tx made there."
    ),
) -> None:
    """Create tx-NAME/: an installable task plugin package with sample data, a metric and tests."""
    _generate(ctx, "task", name, directory, kind, description, force)


def new_launcher_cmd(
    ctx: typer.Context,
    name: str = typer.Argument(..., metavar="NAME", help="Launcher name, e.g. mycluster."),
    directory: Path = typer.Option(Path("."), "--dir", metavar="PATH", help="Folder to create tx-NAME/ in."),
    description: Optional[str] = typer.Option(None, "--description", metavar="TEXT", help="One line shown by `tx list`."),
    force: bool = typer.Option(
        False, "--force", help="Regenerate over an existing tx-NAME/: overwrites only the files tx made there."
    ),
) -> None:
    """Create tx-NAME/: an installable launcher plugin package (options, pure plan(), launch(), tests)."""
    _generate(ctx, "launcher", name, directory, None, description, force)


def register(app: typer.Typer) -> None:
    app.command("new-task")(new_task_cmd)
    app.command("new-launcher")(new_launcher_cmd)
