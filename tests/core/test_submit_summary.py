"""The one-screen summary detaching launchers print at submit."""

from __future__ import annotations

import shlex

from tx.core.submit_summary import submit_summary

RECORD = {
    "job_id": "summarization-20250101-120000-ab12",
    "launcher": "slurm",
    "task": "summarization",
    "output_dir": "/scratch/runs/my run",
    "scheduler_id": "4242",
    "log_path": "/scratch/runs/my run/slurm-4242.out",
    "submitted": "2025-01-01T12:00:00+00:00",
}


def test_summary_says_what_where_and_how_to_follow() -> None:
    text = submit_summary(RECORD, details=[("partition", "gpu"), ("nodes", "2")])
    lines = text.splitlines()
    assert lines[0] == "tx: submitted summarization-20250101-120000-ab12 to slurm (Slurm job 4242)"
    rows = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:] if not line.startswith(("follow", "  tx "))}
    assert rows == {"task": "summarization", "outputs": "/scratch/runs/my run",
                    "log": "/scratch/runs/my run/slurm-4242.out", "partition": "gpu", "nodes": "2"}
    commands = [line.split("#")[0].strip() for line in lines if line.startswith("  tx ")]
    assert commands == [
        "tx logs -f summarization-20250101-120000-ab12",
        "tx status summarization-20250101-120000-ab12",
        "tx cancel summarization-20250101-120000-ab12",
        "tx report " + shlex.quote("/scratch/runs/my run"),
    ]
    assert shlex.split(commands[-1])[-1] == "/scratch/runs/my run"  # copy-pastable despite the space
    assert len(lines) <= 24 and max(len(line) for line in lines) <= 100  # one screen


def test_summary_without_optional_fields() -> None:
    text = submit_summary({"job_id": "j1", "launcher": "docker", "scheduler_id": "0123456789abcdef0123"})
    assert text.splitlines()[0] == "tx: submitted j1 to docker (container 0123456789ab)"
    assert "outputs" not in text and "tx report" not in text
    assert "tx logs -f j1" in text and "tx cancel j1" in text
    plain = submit_summary({"job_id": "j2", "launcher": "local"}, prog="python -m tx.core.cli")
    assert plain.splitlines()[0] == "python -m tx.core.cli: submitted j2 to local"
