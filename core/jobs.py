"""Records of jobs handed to scheduler launchers (slurm, docker), so `tx status`, `tx logs`
and `tx cancel` work from any directory.

One JSON file per job under ``<tx cache>/jobs/``. A record holds at least ``job_id``,
``launcher``, ``task``, ``output_dir``, ``submitted``; each launcher adds its own keys (e.g.
``scheduler_id`` for the Slurm job id or the container id, ``log_path``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tx.core.errors import ConfigError
from tx.core.paths import jobs_dir


def save_record(record: dict[str, Any]) -> Path:
    """Write (or update) a job record atomically."""
    if not record.get("job_id") or not record.get("launcher"):
        raise ValueError("a job record needs job_id and launcher")
    folder = jobs_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{record['job_id']}.json"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)
    return path


def all_records() -> list[dict[str, Any]]:
    """Every record, newest first."""
    folder = jobs_dir()
    if not folder.is_dir():
        return []
    out = []
    for path in folder.glob("*.json"):
        try:
            out.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(out, key=lambda r: r.get("submitted", ""), reverse=True)


def find_record(ref: str) -> dict[str, Any]:
    """A record by tx job id, scheduler id (Slurm job id, container id) or a unique prefix."""
    records = all_records()
    exact = [r for r in records if ref in (r.get("job_id"), str(r.get("scheduler_id", "")))]
    if len(exact) == 1:
        return exact[0]
    matches = exact or [
        r for r in records
        if str(r.get("job_id", "")).startswith(ref) or str(r.get("scheduler_id", "")).startswith(ref)
    ]
    if not matches:
        raise ConfigError(f"no tx job {ref!r}", hint="`tx status` lists recent jobs")
    if len(matches) > 1:
        ids = ", ".join(r["job_id"] for r in matches[:5])
        raise ConfigError(f"{ref!r} matches several jobs ({ids})", hint="give more of the job id")
    return matches[0]
