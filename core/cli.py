"""The `tx` command line (Typer). Heavy libraries are imported only inside commands that
need them, so `tx --help` and `tx list` stay fast."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any, List, Optional

import typer

from tx.core import __version__
from tx.core.completion import RunCommand
from tx.core.errors import TxError

app = typer.Typer(
    name="tx",
    help="Train Hugging Face models with task plugins and launcher plugins "
    "(local, torchrun, deepspeed, xla, slurm, docker).",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass
class State:
    """Passed down from the callback; plugins load on first use, not for `--help`."""

    plugin_modules: list[str] = field(default_factory=list)
    _plugins: Any = None

    @property
    def plugins(self) -> Any:
        if self._plugins is None:
            from tx.core import plugins

            self._plugins = plugins.load(extra_modules=self.plugin_modules)
        return self._plugins


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tx {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    plugin: Optional[List[str]] = typer.Option(
        None, "-p", "--plugin", metavar="MODULE", help="Also load this plugin module (repeatable), e.g. -p mypkg.myplugin."
    ),
) -> None:
    modules = list(plugin or [])
    if modules:
        # workers (other processes) load the same modules
        from tx.core.plugins import EXTRA_PLUGINS_ENV

        existing = [m for m in os.environ.get(EXTRA_PLUGINS_ENV, "").split(",") if m]
        os.environ[EXTRA_PLUGINS_ENV] = ",".join(dict.fromkeys(existing + modules))
    ctx.obj = State(plugin_modules=modules)


def _state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State()


@app.command("list")
def list_cmd(ctx: typer.Context) -> None:
    """List tasks, launchers and plugins (with their distributions and versions)."""
    loaded = _state(ctx).plugins
    typer.echo("Tasks:")
    for task in loaded.tasks:
        typer.echo(f"  {task.name:<16} {task.description}")
    typer.echo("Launchers:")
    for launcher in loaded.launchers:
        typer.echo(f"  {launcher.name:<16} {launcher.description}")
    typer.echo("Plugins:")
    for info in loaded.infos.values():
        typer.echo(f"  {info.name:<16} {info.distribution} {info.version}  [{info.origin}: {info.module}]")


@app.command("env")
def env_cmd(ctx: typer.Context) -> None:
    """Versions, devices and usable launchers: a block to paste into bug reports."""
    from tx.core.envinfo import collect, render

    typer.echo(render(collect(_state(ctx).plugins)))


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
    cls=RunCommand,  # completes task/launcher names and flags from the raw words
)
def run_cmd(ctx: typer.Context) -> None:
    """Run TASK: tx run TASK [--launcher NAME] [--config FILE] [--dry-run] [--print-config] [HF flags...].

    HF flags are those of the Hugging Face example scripts (--model_name_or_path,
    --per_device_train_batch_size=4, --do_train ...). `tx run TASK --help` lists them.
    `tx run --from OUTPUT_DIR/tx-job.yaml` reruns a job exactly.
    """
    from tx.core import run as runner

    flags = runner.split_tx_flags(list(ctx.args))
    loaded = _state(ctx).plugins
    if flags.help:
        from tx.core.runhelp import render_help

        typer.echo(render_help(loaded, flags.task, flags.launcher, full=flags.help_all))
        return
    if flags.print_config:  # the resolved flags as a config file; nothing written or launched
        typer.echo(runner.print_config(runner.resolve(loaded, flags)).rstrip())
        return
    from tx.core import stage

    if runner.staged_launcher(loaded, flags) is not None and stage.output_reaches_child():
        # a process launcher: `tx` only waits, so validation and the job file happen in a child
        # and this process never imports torch (tx.core.stage)
        code = stage.run(loaded, list(ctx.args))
    else:  # --dry-run, schedulers (they return at once), other launchers: all here
        resolved = runner.resolve(loaded, flags)
        for note in resolved.notes:  # what the launcher changed in the HF arguments (Launcher.adjust_args)
            typer.echo(f"tx: note: {note}", err=True)
        the_plan = runner.plan(resolved)
        if flags.dry_run:
            typer.echo(f"# job spec ({resolved.job.job_file} is written at launch)")
            typer.echo(resolved.job.dump().rstrip())
            typer.echo(f"# plan for launcher {resolved.launcher.name!r}")
            typer.echo(the_plan.render())
            return
        code = runner.launch(resolved, the_plan)
    if code == 137:  # SIGKILL from outside (a stop tx forwards exits 130/143 with its own line)
        typer.echo("tx: error: the run was killed (SIGKILL; out of memory? see `dmesg`). Run the same command "
                   "again to resume from the last complete checkpoint.", err=True)
    if code != 0:
        raise typer.Exit(code)


from tx.core import cli_jobs  # noqa: E402  (commands defined in their own modules)

cli_jobs.register(app)
from tx.core import cli_scaffold; cli_scaffold.register(app)  # noqa: E402,E702
from tx.core import cli_docker; cli_docker.register(app)  # noqa: E402,E702
from tx.core import cli_report; cli_report.register(app)  # noqa: E402,E702


def main(argv: list[str] | None = None) -> int:
    """Console entry point: one line for user errors, never a traceback."""
    try:
        app(args=argv, prog_name="tx", standalone_mode=True)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except TxError as exc:
        typer.echo(f"tx: {exc.label}: {exc.one_line()}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("tx: interrupted", err=True)
        return 130
    except Exception as exc:  # a bug in tx or a plugin: one line unless asked for more
        if os.environ.get("TX_DEBUG"):
            raise
        typer.echo(f"tx: internal error: {type(exc).__name__}: {exc} (set TX_DEBUG=1 for the traceback)", err=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
