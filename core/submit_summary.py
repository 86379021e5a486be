"""The one screen a detaching launcher (slurm, docker) prints once it has handed a job over:
what was submitted, where its logs and outputs go, and the commands to follow it.

Pure: the launcher saves its job record (`tx.core.jobs.save_record`) and prints
``submit_summary(record)``; nothing here touches the scheduler or the disk.
"""

from __future__ import annotations

import shlex
from typing import Any, Mapping, Sequence

#: record keys shown in this order when present (label, key)
_SHOWN = (
    ("task", "task"),
    ("outputs", "output_dir"),
    ("log", "log_path"),
)


def submit_summary(record: Mapping[str, Any], details: Sequence[tuple[str, str]] = (), prog: str = "tx") -> str:
    """Text to print after a submission.

    :param record: the job record the launcher saved (``job_id``, ``launcher``, ``task``,
        ``output_dir`` and, when known, ``scheduler_id`` and ``log_path``).
    :param details: extra launcher-specific lines, e.g. ``[("partition", "gpu"), ("nodes", "2")]``
        or ``[("container", name), ("image", image)]``.
    :param prog: the command name shown in the follow-up commands.
    """
    job_id = str(record["job_id"])
    launcher = record.get("launcher", "?")
    scheduler_id = record.get("scheduler_id")
    head = f"{prog}: submitted {job_id} to {launcher}"
    if scheduler_id not in (None, ""):
        kind = {"slurm": "Slurm job", "docker": "container"}.get(str(launcher), "id")
        head += f" ({kind} {str(scheduler_id)[:12] if launcher == 'docker' else scheduler_id})"
    rows: list[tuple[str, str]] = []
    for label, key in _SHOWN:
        value = record.get(key)
        if value not in (None, ""):
            rows.append((label, str(value)))
    rows += [(str(k), str(v)) for k, v in details]
    width = max((len(label) for label, _ in rows), default=0)
    lines = [head]
    lines += [f"  {label:<{width}}  {value}" for label, value in rows]
    ref = shlex.quote(job_id)
    follow = [
        (f"{prog} logs -f {ref}", "stream its output"),
        (f"{prog} status {ref}", "state, elapsed time, nodes"),
        (f"{prog} cancel {ref}", "stop it"),
    ]
    if record.get("output_dir"):
        follow.append((f"{prog} report {shlex.quote(str(record['output_dir']))}", "curves and summary once it has logged"))
    cmd_width = max(len(cmd) for cmd, _ in follow)
    lines.append("follow it with:")
    lines += [f"  {cmd:<{cmd_width}}  # {why}" for cmd, why in follow]
    return "\n".join(lines)
