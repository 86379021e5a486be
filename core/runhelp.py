"""`tx run TASK --help`: the task's own arguments apart from the generic training arguments."""

from __future__ import annotations

import textwrap
from typing import Any

from tx.core import hfargs, options


def _section(title: str, rows: list[tuple[str, str, str]]) -> list[str]:
    lines = ["", f"{title}:"]
    for flag, kind, help_text in rows:
        lines.append(f"  {flag}  {kind}")
        if help_text:
            lines.extend(textwrap.wrap(help_text, width=96, initial_indent="      ", subsequent_indent="      "))
    return lines


def render_help(plugins: Any, task_name: str | None, launcher_name: str | None) -> str:
    lines = [
        "usage: tx run TASK [--launcher NAME] [launcher flags] [--config FILE] [--from JOB_FILE] [--dry-run] [HF flags]",
        "",
        "tx flags:",
        "  --launcher NAME   where the workers run (default: local); one of " + ", ".join(plugins.launchers.names()),
        "  --config FILE     YAML or JSON with the same keys as the flags; flags on the command line win",
        "  --from JOB_FILE   rerun a tx-job.yaml written by an earlier tx run (flags given override it)",
        "  --dry-run         print the job spec and the launch plan; launch nothing",
    ]
    launcher = plugins.launchers.get(launcher_name or "local")
    rows = options.describe(launcher.options)
    lines += ["", f"launcher {launcher.name!r}: {launcher.description}"]
    reason = launcher.unavailable_reason()
    if reason:
        lines.append(f"  not usable here: {reason}")
    if rows:
        lines += _section(f"launcher {launcher.name!r} flags", rows)
    if not task_name:
        lines += ["", "tasks: " + ", ".join(plugins.tasks.names()), "`tx run TASK --help` lists a task's arguments."]
        return "\n".join(lines)
    task = plugins.tasks.get(task_name)
    model_cls, data_cls = task.argument_classes()
    lines[0] = lines[0].replace("TASK", task.name)
    lines += ["", f"{task.name}: {task.description}"]
    lines += _section("model arguments", hfargs.help_rows(model_cls))
    lines += _section("data arguments", hfargs.help_rows(data_cls))
    lines += _section("tx arguments", hfargs.help_rows(hfargs.TxArguments))
    training_cls = hfargs.training_arguments_class(task)
    lines += _section(f"training arguments (transformers {training_cls.__name__})", hfargs.help_rows(training_cls))
    return "\n".join(lines)
