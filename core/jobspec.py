"""The job spec: one resolved, validated description of a run, saved as `<output_dir>/tx-job.yaml`.

It is the only thing a worker receives. Secrets are never part of it.
"""

from __future__ import annotations

import datetime as _dt
import os
import secrets as _secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tx.core import __version__
from tx.core.errors import ConfigError
from tx.core.hfargs import SECRET_FIELDS

JOB_FILE_NAME = "tx-job.yaml"
SCHEMA_VERSION = 1


def new_job_id(task: str, now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now()
    return f"{task}-{now:%Y%m%d-%H%M%S}-{_secrets.token_hex(2)}"


@dataclass(frozen=True)
class JobSpec:
    task: str
    launcher: str
    args: dict[str, Any]
    launcher_options: dict[str, Any] = field(default_factory=dict)
    plugins: tuple[str, ...] = ()
    job_id: str = ""
    tx_version: str = __version__
    created: str = ""
    schema: int = SCHEMA_VERSION

    @property
    def output_dir(self) -> Path:
        return Path(self.args["output_dir"])

    @property
    def job_file(self) -> Path:
        return self.output_dir / JOB_FILE_NAME

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["plugins"] = list(self.plugins)
        return data

    def dump(self) -> str:
        import yaml

        body = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=1000)
        header = (
            f"# tx job spec, written by tx {self.tx_version}. Rerun exactly with:\n"
            f"#   tx run --from {self.job_file}\n"
        )
        return header + body


def scrub(args: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in args.items() if k not in SECRET_FIELDS}


def write(spec: JobSpec, path: Path | None = None) -> Path:
    """Write atomically (temp file + rename) so a reader never sees half a job file."""
    path = path or spec.job_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(spec.dump(), encoding="utf-8")
    os.replace(tmp, path)
    return path


def read(path: str | Path) -> JobSpec:
    import yaml

    p = Path(path)
    if p.is_dir():
        p = p / JOB_FILE_NAME
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"job file {str(p)!r} does not exist", hint="pass a tx-job.yaml written by tx run") from None
    except yaml.YAMLError as exc:  # safe_load: a !!python tag is an error here, never code run
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"job file {str(p)!r} is not valid YAML{where}: {problem}",
                          hint="pass a tx-job.yaml written by tx run") from None
    if not isinstance(data, dict) or "task" not in data or "args" not in data:
        raise ConfigError(f"{str(p)!r} is not a tx job file (no task/args)")
    if data.get("schema", 1) > SCHEMA_VERSION:
        raise ConfigError(f"job file {str(p)!r} was written by a newer tx", hint="upgrade tx")
    known = JobSpec.__dataclass_fields__
    clean = {k: v for k, v in data.items() if k in known}
    clean["plugins"] = tuple(clean.get("plugins") or ())
    clean["args"] = scrub(dict(clean["args"] or {}))
    clean["launcher_options"] = dict(clean.get("launcher_options") or {})
    return JobSpec(**clean)
