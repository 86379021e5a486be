"""`--launcher docker`: run a tx job in a container through the Docker engine (docker SDK).

The container runs an inner process launcher (`--inner local|torchrun|deepspeed`) on a copy of
the job whose host paths are replaced by container paths. The run directory, the local files
named in the job, the tx cache and the Hugging Face cache are bind-mounted; the container runs
as the caller's uid:gid so its outputs belong to the caller. Secrets (HF_TOKEN...) go into the
container's runtime environment only: never into the plan, the job files, labels or records.

``plan()`` is pure; everything that talks to dockerd lives in ``launch``/``status``/``logs``/
``cancel``. The docker package is imported only there.
"""

from __future__ import annotations

import datetime as _dt
import os
import posixpath
import re
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from tx.core.errors import ConfigError, LaunchError
from tx.core.hookspecs import hookimpl
from tx.core.launcher import JobStatus, Launcher, Plan, ProcessPlan

if TYPE_CHECKING:
    from tx.core.jobspec import JobSpec
    from tx.core.registry import LauncherRegistry

DEFAULT_IMAGE = "tx:latest"
#: container paths (fixed, so a job file for the container never depends on the host layout)
C_OUTPUT = "/tx/output"
C_CACHE = "/tx/cache"
C_HF_HOME = "/tx/hf-home"
C_INPUTS = "/tx/inputs"
C_HOME = "/tmp"
RESERVED_TARGETS = (C_OUTPUT, C_CACHE, C_HF_HOME, C_INPUTS)
CONTAINER_JOB_NAME = "tx-job.docker.yaml"

#: host variables handed to the container at run time when they are set (values never stored)
SECRET_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
PASS_ENV = SECRET_ENV + (
    "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
    "HF_ENDPOINT", "TX_STOP_GRACE",
)
#: job arguments that are written to (mounted read-write, created when missing)
WRITABLE_ARGS = ("output_dir", "logging_dir", "cache_dir")
PATH_SUFFIXES = ("_file", "_dir", "_path", "_files")

_SIZE = re.compile(r"^\d+(\.\d+)?[bkmg]?$", re.IGNORECASE)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_USER = re.compile(r"^\d+(:\d+)?$")
_GPUS = re.compile(r"^(all|none|auto|[1-9]\d*)$")


@dataclass(frozen=True)
class DockerOptions:
    image: str = field(default=DEFAULT_IMAGE, metadata={
        "help": "Image to run (build one with `tx docker build`); a name with a registry is pulled if missing."})
    inner: str = field(default="auto", metadata={
        "help": "Process launcher run inside the container: local, torchrun, deepspeed..., or auto "
                "(torchrun for more than one process, else local)."})
    nproc_per_node: int | None = field(default=None, metadata={
        "help": "Worker processes in the container, passed to the inner launcher (default: its own)."})
    nnodes: int | None = field(default=None, metadata={
        "help": "Number of nodes, passed to the inner launcher (a multi-node torchrun also needs its "
                "rendezvous: --inner-option rdzv-endpoint=HOST:PORT)."})
    inner_option: tuple[str, ...] = field(default=(), metadata={
        "help": "NAME=VALUE option of the inner launcher, e.g. --inner-option nproc-per-node=2 (repeatable)."})
    gpus: str = field(default="auto", metadata={
        "help": "GPUs for the container: all, N, none, or auto (all when this host has NVIDIA devices)."})
    shm_size: str = field(default="8g", metadata={
        "help": "Size of /dev/shm (DataLoader workers and NCCL need more than docker's 64m)."})
    ipc: str = field(default="", metadata={"help": "IPC namespace: host shares the host's /dev/shm instead of --shm-size."})
    memory: str = field(default="", metadata={"help": "Memory limit, e.g. 16g (default: none)."})
    mount: tuple[str, ...] = field(default=(), metadata={
        "help": "Extra bind mount SRC:DST[:ro]; job paths under SRC are translated to DST (repeatable)."})
    env: tuple[str, ...] = field(default=(), metadata={
        "help": "Name of a host environment variable to pass to the container at run time (repeatable)."})
    network: str = field(default="", metadata={
        "help": "Container network: none, host, or a network name (default: the engine's default)."})
    user: str = field(default="", metadata={"help": "UID[:GID] to run as (default: yours, so outputs are yours)."})
    detach: bool = field(default=False, metadata={
        "help": "Start the container and return; follow with `tx logs -f JOB`, stop with `tx cancel JOB`."})


@dataclass(frozen=True)
class Mount:
    """One bind mount: host ``source`` at container ``target``."""

    source: str
    target: str
    read_only: bool = True
    #: create the host directory at launch when it does not exist (outputs and caches)
    create: bool = False
    why: str = ""

    def cli(self) -> str:
        return f"type=bind,src={self.source},dst={self.target}" + (",readonly" if self.read_only else "")


@dataclass(frozen=True)
class HostFacts:
    """What the plan needs to know about the calling host, gathered once (see :func:`host_facts`)."""

    uid: int
    gid: int
    cwd: str
    tx_cache: str
    hf_home: str
    python: str
    #: host directories whose executables (python, torchrun, deepspeed) the image has on PATH
    bin_dirs: tuple[str, ...] = ()


def host_facts(environ: dict[str, str] | None = None) -> HostFacts:
    """Read the caller's ids, cwd and cache locations (no file system access)."""
    from tx.core.paths import cache_home

    env = os.environ if environ is None else environ
    if env.get("HF_HOME"):
        hf_home = str(Path(env["HF_HOME"]).expanduser())
    else:
        xdg = env.get("XDG_CACHE_HOME")
        hf_home = str((Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "huggingface")
    bins = tuple(dict.fromkeys([os.path.dirname(sys.executable), os.path.join(sys.prefix, "bin")]))
    return HostFacts(
        uid=os.getuid(), gid=os.getgid(), cwd=os.getcwd(), tx_cache=str(cache_home().absolute()),
        hf_home=os.path.abspath(hf_home), python=sys.executable, bin_dirs=bins,
    )


@dataclass(frozen=True)
class DockerPlan(Plan):
    """Everything `launch` needs to create and run the container; secrets are only names."""

    job_id: str
    task: str
    image: str
    name: str
    command: tuple[str, ...]
    user: str
    mounts: tuple[Mount, ...]
    env: tuple[tuple[str, str], ...]
    pass_env: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    gpus: str
    shm_size: str
    ipc: str
    memory: str
    network: str
    #: the container's host name, and /etc/hosts entries: with --network none the name must
    #: still resolve (to loopback) or torchrun's rendezvous cannot find its own store
    hostname: str
    extra_hosts: tuple[tuple[str, str], ...]
    working_dir: str
    detach: bool
    inner: str
    output_dir: str
    #: the translated job: written next to the host job file at launch, read by the container
    container_job_host_path: str
    container_job_text: str

    def render(self) -> str:
        lines = [
            f"# docker launcher: container {self.name} from image {self.image}, inner launcher {self.inner!r}",
            f"# the container reads {self.container_job_host_path} (the job with container paths),",
            "# written at launch; variables given by name are read from your environment at launch.",
            "# tx talks to dockerd through the docker SDK; this is the equivalent command line:",
        ]
        parts = ["docker", "run", "--name", self.name, "--init", "--user", self.user]
        if self.detach:
            parts.append("--detach")
        if self.network:
            parts += ["--network", self.network]
        if self.hostname:
            parts += ["--hostname", self.hostname]
        for host, address in self.extra_hosts:
            parts += ["--add-host", f"{host}:{address}"]
        if self.ipc:
            parts += ["--ipc", self.ipc]
        elif self.shm_size:
            parts += ["--shm-size", self.shm_size]
        if self.memory:
            parts += ["--memory", self.memory]
        if self.gpus == "auto":
            lines.append("# --gpus auto: all GPUs if this host has NVIDIA devices at launch, else none")
        elif self.gpus != "none":
            parts += ["--gpus", self.gpus]
        for mount in self.mounts:
            parts += ["--mount", mount.cli()]
        for key, value in self.env:
            parts += ["--env", f"{key}={value}"]
        for name in self.pass_env:
            parts += ["--env", name]
        for key, value in self.labels:
            parts += ["--label", f"{key}={value}"]
        parts += ["--workdir", self.working_dir, "--entrypoint", self.command[0], self.image, *self.command[1:]]
        lines.append(" ".join(shlex.quote(p) for p in parts))
        return "\n".join(lines)


# -- pure helpers ------------------------------------------------------------------------------
def parse_mount(spec: str, cwd: str) -> Mount:
    """`SRC:DST[:ro|rw]` -> Mount (SRC made absolute against ``cwd``)."""
    parts = spec.split(":")
    mode = "rw"
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        mode = parts.pop()
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ConfigError(f"--mount {spec!r} is not SRC:DST[:ro]", hint="e.g. --mount /data/corpus:/data:ro")
    src, dst = parts
    if not posixpath.isabs(dst):
        raise ConfigError(f"--mount {spec!r}: the container path {dst!r} must be absolute")
    dst = posixpath.normpath(dst)
    for reserved in RESERVED_TARGETS:
        if _under(dst, reserved) or _under(reserved, dst):
            raise ConfigError(f"--mount {spec!r}: {dst} overlaps {reserved}, which tx uses",
                              hint="mount it somewhere else, e.g. under /data")
    source = os.path.normpath(os.path.join(cwd, os.path.expanduser(src)))
    return Mount(source=source, target=dst, read_only=mode == "ro", why="--mount")


def parse_inner_options(specs: tuple[str, ...]) -> dict[str, str]:
    """`("nproc-per-node=2",)` -> `{"nproc_per_node": "2"}` for the inner launcher's options."""
    out: dict[str, str] = {}
    for spec in specs:
        key, eq, value = spec.partition("=")
        key = key.strip().lstrip("-").replace("-", "_")
        if not eq or not key:
            raise ConfigError(f"--inner-option {spec!r} is not NAME=VALUE", hint="e.g. --inner-option nproc-per-node=2")
        out[key] = value
    return out


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def path_args(args: dict[str, Any]) -> list[tuple[str, str]]:
    """(key, host path) for every job argument that names a local path: the HF path arguments
    and any ``*_file``/``*_dir``/``*_path`` argument holding an absolute path (lists too)."""
    from tx.core.run import MAYBE_PATH_ARGS, PATH_ARGS

    known = set(PATH_ARGS) | set(MAYBE_PATH_ARGS)
    out = []
    for key, value in args.items():
        if key not in known and not key.endswith(PATH_SUFFIXES):
            continue
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str) and posixpath.isabs(item):
                out.append((key, posixpath.normpath(item)))
    return out


def translate(path: str, mounts: tuple[Mount, ...] | list[Mount]) -> str | None:
    """The container path of host ``path`` through the mount with the longest matching source."""
    best: Mount | None = None
    for mount in mounts:
        if _under(path, mount.source) and (best is None or len(mount.source) > len(best.source)):
            best = mount
    if best is None:
        return None
    rest = path[len(best.source):].lstrip("/")
    return posixpath.join(best.target, rest) if rest else best.target


def plan_mounts(job: JobSpec, options: DockerOptions, host: HostFacts) -> tuple[Mount, ...]:
    """The user's mounts, the run directory, the caches, then one mount per job path not yet
    reachable (files and model folders read-only, output-type folders read-write)."""
    mounts: list[Mount] = [parse_mount(spec, host.cwd) for spec in options.mount]
    output_dir = posixpath.normpath(str(job.output_dir))
    if not any(_under(output_dir, m.source) and not m.read_only for m in mounts):
        mounts.append(Mount(output_dir, C_OUTPUT, read_only=False, create=True, why="output_dir"))
    mounts.append(Mount(host.tx_cache, C_CACHE, read_only=False, create=True, why="tx cache"))
    mounts.append(Mount(host.hf_home, C_HF_HOME, read_only=False, create=True, why="Hugging Face cache"))
    used_targets = {m.target for m in mounts}
    for key, path in path_args(job.args):
        if translate(path, mounts) is not None:
            continue
        writable = key in WRITABLE_ARGS
        target = posixpath.join(C_INPUTS, key, posixpath.basename(path) or "root")
        n = 2
        while target in used_targets:
            target = posixpath.join(C_INPUTS, f"{key}-{n}", posixpath.basename(path) or "root")
            n += 1
        used_targets.add(target)
        mounts.append(Mount(path, target, read_only=not writable, create=writable, why=f"--{key}"))
    return tuple(mounts)


def translate_args(args: dict[str, Any], mounts: tuple[Mount, ...]) -> dict[str, Any]:
    """The job arguments with every host path replaced by its container path."""
    paths = {path for _, path in path_args(args)}

    def one(value: Any) -> Any:
        if isinstance(value, str) and posixpath.isabs(value) and posixpath.normpath(value) in paths:
            return translate(posixpath.normpath(value), mounts) or value
        return value

    out = {}
    for key, value in args.items():
        out[key] = [one(v) for v in value] if isinstance(value, list) else one(value)
    return out


def containerize_argv(argv: tuple[str, ...], host: HostFacts) -> tuple[str, ...]:
    """The inner launcher's command with host executables (python, torchrun...) replaced by the
    names the image has on its PATH."""
    out = []
    for arg in argv:
        if arg == host.python:
            out.append("python")
        elif posixpath.isabs(arg) and posixpath.dirname(arg) in host.bin_dirs:
            out.append(posixpath.basename(arg))
        else:
            out.append(arg)
    return tuple(out)


def container_name(job_id: str) -> str:
    return "tx-" + re.sub(r"[^a-zA-Z0-9_.-]", "-", job_id)


def container_hostname(job_id: str) -> str:
    """A valid host name (letters, digits, '-', at most 63) for the container of ``job_id``."""
    return ("tx-" + re.sub(r"[^a-zA-Z0-9-]", "-", job_id))[:63].rstrip("-")


def validate_options(options: DockerOptions) -> None:
    """Checks of the flags alone (no job, no engine)."""
    if not options.image.strip():
        raise ConfigError("--image must not be empty")
    if not _GPUS.match(options.gpus):
        raise ConfigError(f"--gpus must be all, none, auto or a number of GPUs, not {options.gpus!r}")
    for flag, value in (("--shm-size", options.shm_size), ("--memory", options.memory)):
        if value and not _SIZE.match(value):
            raise ConfigError(f"{flag} {value!r} is not a size", hint="use a number with b, k, m or g, e.g. 8g")
    if options.ipc not in ("", "host", "private", "shareable"):
        raise ConfigError(f"--ipc must be host, private or shareable, not {options.ipc!r}")
    if options.user and not _USER.match(options.user):
        raise ConfigError(f"--user {options.user!r} is not UID[:GID]", hint="give numbers, e.g. --user 1000:1000")
    for name in options.env:
        if "=" in name:
            raise ConfigError(
                f"--env {name.split('=', 1)[0]}=... gives a value",
                hint="give only the variable's name: its value is read from your environment at launch "
                     "and never written to the job file",
            )
        if not _ENV_NAME.match(name):
            raise ConfigError(f"--env {name!r} is not an environment variable name")
    parse_inner_options(options.inner_option)
    for flag, value in (("--nproc-per-node", options.nproc_per_node), ("--nnodes", options.nnodes)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be 1 or more, not {value}")


def inner_name(options: DockerOptions) -> str:
    """The inner launcher `--inner auto` stands for: torchrun for several processes or nodes."""
    if options.inner != "auto":
        return options.inner
    return "torchrun" if (options.nproc_per_node or 1) > 1 or (options.nnodes or 1) > 1 else "local"


class DockerLauncher(Launcher):
    name = "docker"
    description = "Run the job in a container (Docker engine): GPUs, mounts, tx status/logs/cancel."
    options = DockerOptions
    scheduler = True

    def __init__(self, launchers: LauncherRegistry | None = None) -> None:
        #: the registry the inner launcher comes from (filled by every plugin by plan time)
        self._launchers = launchers

    # -- checks --------------------------------------------------------------------------------
    def unavailable_reason(self) -> str | None:
        import importlib.util

        if importlib.util.find_spec("docker") is None:
            return "the docker Python package is missing (tx-train depends on it; install it with: pip install 'docker>=7')"
        host = os.environ.get("DOCKER_HOST", "")
        if not host and not os.path.exists("/var/run/docker.sock"):
            return "no Docker engine socket (/var/run/docker.sock) and DOCKER_HOST is not set"
        return None

    def check_usable(self, timeout: float = 3.0) -> str | None:
        """Usable when the Docker daemon answers a ping (a socket file alone says nothing about it)."""
        reason = self.unavailable_reason()
        if reason:
            return reason
        import docker

        client = None
        try:
            client = docker.from_env(timeout=max(1, round(timeout)))
            client.ping()
        except Exception as exc:  # the SDK raises several kinds (connection, permission, API version)
            text = " ".join(str(exc).split()) or type(exc).__name__
            return f"the Docker daemon does not answer ({text[:200]})"
        finally:
            if client is not None:
                client.close()
        return None

    def _inner(self, name: str) -> Launcher:
        if self._launchers is None:
            raise ConfigError("the docker launcher was created without a launcher registry")
        inner = self._launchers.get(name)
        if inner.scheduler or inner.name == self.name:
            raise ConfigError(
                f"--inner {name} is a placement launcher, not a process launcher",
                hint="use --inner local, torchrun or deepspeed",
            )
        return inner

    def _inner_options(self, inner: Launcher, options: DockerOptions) -> Any:
        from tx.core import options as launcher_options

        try:
            values = launcher_options.canonical(inner.options, parse_inner_options(options.inner_option))
            for key in launcher_options.LAYOUT:
                mine = getattr(options, key)
                if mine is None:
                    continue
                if key in values and str(values[key]) != str(mine):
                    raise ConfigError(f"--inner-option {key.replace('_', '-')}={values[key]} contradicts "
                                      f"--{key.replace('_', '-')} {mine}", hint=f"give --{key.replace('_', '-')} only")
                if inner.name == "local" and mine == 1:
                    continue  # one process on one node: what local does
                values[key] = str(mine)
            return launcher_options.build_options(inner.options, values)
        except ConfigError as exc:
            raise ConfigError(f"--inner-option for {inner.name!r}: {exc.message}", hint=exc.hint) from None

    def validate(self, job: JobSpec, options: Any) -> None:
        validate_options(options)
        cwd = os.getcwd()
        for spec in options.mount:
            mount = parse_mount(spec, cwd)
            if not os.path.exists(mount.source):
                raise ConfigError(f"--mount {spec!r}: {mount.source} does not exist")
        inner = self._inner(inner_name(options))
        inner.validate(job, self._inner_options(inner, options))

    def adjust_args(self, args: dict[str, Any], options: Any, *, known: set[str],
                    given: set[str]) -> tuple[dict[str, Any], list[str]]:
        """The inner launcher's changes (--inner deepspeed without --deepspeed: the zero2 preset)."""
        validate_options(options)
        inner = self._inner(inner_name(options))
        return inner.adjust_args(args, self._inner_options(inner, options), known=known, given=given)

    # -- plan ----------------------------------------------------------------------------------
    def plan(self, job: JobSpec, options: Any, job_file: Path) -> Plan:
        return self.plan_with(job, options, job_file, host_facts())

    def plan_with(self, job: JobSpec, options: DockerOptions, job_file: Path, host: HostFacts) -> DockerPlan:
        """Pure: the container for ``job`` given the caller's ``host`` facts."""
        from tx.core import __version__

        mounts = plan_mounts(job, options, host)
        host_job = posixpath.join(posixpath.dirname(str(job_file)), CONTAINER_JOB_NAME)
        container_job = translate(host_job, mounts)
        if container_job is None:  # the job file always lives in output_dir
            raise ConfigError(f"the job file {job_file} is not under output_dir {job.output_dir}")
        cjob = replace(job, args=translate_args(job.args, mounts))
        text = (
            f"# Container copy of {job_file}: the same job with container paths, for the docker launcher.\n"
            + cjob.dump()
        )
        inner = self._inner(inner_name(options))
        inner_plan = inner.plan(cjob, self._inner_options(inner, options), Path(container_job))
        if not isinstance(inner_plan, ProcessPlan):
            raise ConfigError(f"--inner {inner.name} does not run a process, so it cannot run in a container")
        env = {
            "HOME": C_HOME,
            "TX_CACHE_HOME": C_CACHE,
            "HF_HOME": C_HF_HOME,
            "PYTHONUNBUFFERED": "1",
            **dict(inner_plan.env),
        }
        pass_env = tuple(dict.fromkeys(n for n in (*PASS_ENV, *options.env) if n not in env))
        labels = (
            ("tx.job-id", job.job_id),
            ("tx.task", job.task),
            ("tx.launcher", self.name),
            ("tx.inner", inner.name),
            ("tx.version", __version__),
            ("tx.output-dir", str(job.output_dir)),
        )
        return DockerPlan(
            job_id=job.job_id,
            task=job.task,
            image=options.image,
            name=container_name(job.job_id),
            command=containerize_argv(inner_plan.argv, host),
            user=options.user or f"{host.uid}:{host.gid}",
            mounts=mounts,
            env=tuple(sorted(env.items())),
            pass_env=pass_env,
            labels=labels,
            gpus=options.gpus,
            shm_size="" if options.ipc == "host" else options.shm_size,
            ipc=options.ipc,
            memory=options.memory,
            network=options.network,
            hostname="" if options.network == "host" else container_hostname(job.job_id),
            extra_hosts=((container_hostname(job.job_id), "127.0.0.1"),) if options.network == "none" else (),
            working_dir=translate(posixpath.normpath(str(job.output_dir)), mounts) or C_OUTPUT,
            detach=options.detach,
            inner=inner.name,
            output_dir=str(job.output_dir),
            container_job_host_path=host_job,
            container_job_text=text,
        )

    # -- launch --------------------------------------------------------------------------------
    def launch(self, plan: Plan) -> int:
        assert isinstance(plan, DockerPlan)
        from tx.core.jobs import save_record

        client = _client()
        _ensure_image(client, plan.image)
        _write_atomic(Path(plan.container_job_host_path), plan.container_job_text)
        prepare_sources(plan.mounts, plan.user)
        container = _create(client, plan)
        try:
            container.start()
        except Exception as exc:
            _remove_quietly(container)
            raise LaunchError(f"docker could not start the container: {_api_message(exc)}", hint=_start_hint(exc)) from None
        record = {
            "job_id": plan.job_id,
            "launcher": self.name,
            "task": plan.task,
            "output_dir": plan.output_dir,
            "submitted": _now(),
            "scheduler_id": container.id,
            "container_name": plan.name,
            "image": plan.image,
            "inner": plan.inner,
        }
        save_record(record)
        short = container.id[:12]
        if plan.detach:
            from tx.core.submit_summary import submit_summary

            details = [("container", plan.name), ("image", plan.image), ("inner", plan.inner)]
            print(submit_summary(record, details), flush=True)
            return 0
        print(f"tx: container {short} ({plan.name}) started from {plan.image}; Ctrl-C stops it", file=sys.stderr, flush=True)
        return _follow(container, record)

    # -- scheduler methods ---------------------------------------------------------------------
    def status(self, record: dict[str, Any]) -> JobStatus:
        try:
            client = _client()
        except LaunchError as exc:
            return JobStatus(job_id=record["job_id"], state="UNKNOWN", extra={"reason": exc.message})
        container = _get_container(client, record, missing_ok=True)
        if container is None:
            return JobStatus(job_id=record["job_id"], state="UNKNOWN", extra={"reason": "container removed"})
        return container_status(record, container.attrs, _dt.datetime.now(_dt.timezone.utc))

    def logs(self, record: dict[str, Any], follow: bool = False) -> Iterator[str]:
        container = _get_container(_client(), record)
        if not follow:
            yield container.logs(stdout=True, stderr=True).decode("utf-8", errors="replace")
            return
        for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=True):
            yield chunk.decode("utf-8", errors="replace")

    def cancel(self, record: dict[str, Any]) -> str:
        from tx.core.jobs import save_record
        from tx.core.process import GRACE_SECONDS

        container = _get_container(_client(), record)
        state = container_status(record, container.attrs, _dt.datetime.now(_dt.timezone.utc))
        if state.state not in ("RUNNING", "PENDING"):
            return f"job {record['job_id']} already ended ({state.state}); nothing to cancel"
        record["cancelled"] = True
        save_record(record)
        container.stop(timeout=int(GRACE_SECONDS))
        return f"cancelled job {record['job_id']} (container {container.id[:12]} stopped)"


# -- engine side (docker SDK) --------------------------------------------------------------------
def _client() -> Any:
    try:
        import docker
    except ImportError:
        raise LaunchError(
            "the docker launcher needs the docker Python package", hint="tx-train depends on it; install it with: pip install 'docker>=7'"
        ) from None
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as exc:
        raise LaunchError(
            f"cannot reach the Docker engine ({_api_message(exc)})",
            hint="start dockerd (for development: bash scripts/docker-engine.sh up) or set DOCKER_HOST",
        ) from None
    return client


def _api_message(exc: BaseException) -> str:
    explanation = getattr(exc, "explanation", None)
    text = explanation if isinstance(explanation, str) and explanation else str(exc)
    return " ".join(text.split())[:400]


def _start_hint(exc: BaseException) -> str:
    text = _api_message(exc)
    if "device driver" in text or "gpu" in text.lower():
        return "install the NVIDIA Container Toolkit on this host, or pass --gpus none"
    return "see the message above; `tx run ... --dry-run` shows the container that was planned"


def _ensure_image(client: Any, image: str) -> None:
    import docker

    try:
        client.images.get(image)
        return
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise LaunchError(f"cannot inspect image {image!r}: {_api_message(exc)}") from None
    if "/" not in image.split(":")[0]:
        raise LaunchError(
            f"image {image!r} not found on this Docker engine",
            hint="build it with `tx docker build` (CPU: `tx docker build --cpu`), or pass --image",
        )
    print(f"tx: pulling {image}", file=sys.stderr, flush=True)
    try:
        client.images.pull(image)
    except docker.errors.APIError as exc:
        raise LaunchError(f"cannot pull image {image!r}: {_api_message(exc)}", hint="check the name and your registry login") from None


def prepare_sources(mounts: tuple[Mount, ...], user: str) -> None:
    """Create output and cache folders; every other mount source must exist.

    When root runs a container as another user (``--user``), the folders tx creates for it, and
    a run directory holding nothing but tx's job files, are handed to that user so the
    container can write there. Nothing else changes owner.
    """
    uid, _, gid = user.partition(":")
    owner = (int(uid), int(gid or uid))
    hand_over = os.getuid() == 0 and owner[0] != 0
    for mount in mounts:
        if os.path.exists(mount.source):
            if hand_over and mount.why == "output_dir":
                _hand_over_run_dir(Path(mount.source), owner)
            continue
        if not mount.create:
            raise LaunchError(f"{mount.source} ({mount.why}) does not exist on this host", hint="fix the path")
        missing = []
        path = Path(mount.source)
        while not path.exists():
            missing.append(path)
            path = path.parent
        os.makedirs(mount.source, exist_ok=True)
        if hand_over:
            for created in missing:
                os.chown(created, *owner)


def _hand_over_run_dir(folder: Path, owner: tuple[int, int]) -> None:
    from tx.core.checkpoints import user_content

    if folder.stat().st_uid != 0 or user_content(folder):
        return
    os.chown(folder, *owner)
    for child in folder.iterdir():
        if child.is_file() and child.stat().st_uid == 0:
            os.chown(child, *owner)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _has_nvidia() -> bool:
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0")


def device_requests(gpus: str, nvidia_present: bool) -> list[dict[str, Any]]:
    """--gpus -> the engine's DeviceRequests (as keyword arguments of docker.types.DeviceRequest)."""
    if gpus == "none" or (gpus == "auto" and not nvidia_present):
        return []
    count = -1 if gpus in ("all", "auto") else int(gpus)
    return [{"count": count, "capabilities": [["gpu"]]}]


def _create(client: Any, plan: DockerPlan) -> Any:
    import docker
    from docker.types import DeviceRequest, Mount as DockerMount

    env = dict(plan.env)
    for name in plan.pass_env:
        if name in os.environ:
            env[name] = os.environ[name]
    kwargs: dict[str, Any] = dict(
        image=plan.image,
        entrypoint=[plan.command[0]],
        command=list(plan.command[1:]),
        name=plan.name,
        user=plan.user,
        environment=env,
        labels=dict(plan.labels),
        mounts=[DockerMount(target=m.target, source=m.source, type="bind", read_only=m.read_only) for m in plan.mounts],
        working_dir=plan.working_dir,
        init=True,
        detach=True,
        device_requests=[DeviceRequest(**r) for r in device_requests(plan.gpus, _has_nvidia())],
    )
    if plan.network:
        kwargs["network_mode"] = plan.network
    if plan.hostname:
        kwargs["hostname"] = plan.hostname
    if plan.extra_hosts:
        kwargs["extra_hosts"] = dict(plan.extra_hosts)
    if plan.ipc:
        kwargs["ipc_mode"] = plan.ipc
    elif plan.shm_size:
        kwargs["shm_size"] = plan.shm_size
    if plan.memory:
        kwargs["mem_limit"] = plan.memory
    try:
        return client.containers.create(**kwargs)
    except docker.errors.APIError as exc:
        raise LaunchError(f"docker could not create the container: {_api_message(exc)}", hint=_start_hint(exc)) from None


def _remove_quietly(container: Any) -> None:
    try:
        container.remove(force=True)
    except Exception:
        pass


def _get_container(client: Any, record: dict[str, Any], missing_ok: bool = False) -> Any:
    import docker

    try:
        return client.containers.get(record["scheduler_id"])
    except docker.errors.NotFound:
        if missing_ok:
            return None
        raise LaunchError(
            f"the container of job {record['job_id']} ({str(record['scheduler_id'])[:12]}) no longer exists",
            hint="it was removed (docker rm / container prune); its logs went with it",
        ) from None


def _follow(container: Any, record: dict[str, Any]) -> int:
    """Stream the container's output until it exits; the first Ctrl-C/SIGTERM is forwarded to the
    worker (which saves a checkpoint and stops), a second one or the grace period kills it."""
    import signal

    from tx.core.jobs import save_record
    from tx.core.process import GRACE_SECONDS

    def pump() -> None:
        try:
            for chunk in container.logs(stdout=True, stderr=True, stream=True, follow=True):
                sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                sys.stdout.flush()
        except Exception:  # the engine went away; the main loop reports the state
            pass

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    stops: list[tuple[int, float]] = []

    def on_signal(signum: int, _frame: Any) -> None:
        stops.append((signum, time.monotonic()))

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in handled}
    forwarded = 0
    try:
        while True:
            try:
                container.reload()
            except Exception as exc:  # the engine went away or the container was removed
                raise LaunchError(
                    f"lost track of container {container.id[:12]}: {_api_message(exc)}",
                    hint=f"the job may still run: tx status {record['job_id']}",
                ) from None
            if container.attrs["State"]["Status"] not in ("created", "running", "restarting", "paused"):
                break
            if len(stops) > forwarded:
                if forwarded == 0:
                    record["cancelled"] = True
                    save_record(record)
                    sig = signal.Signals(stops[0][0]).name
                    print(f"\ntx: stopping container {container.id[:12]} ({sig}; again to kill)", file=sys.stderr, flush=True)
                    container.kill(signal=sig)
                else:
                    container.kill(signal="SIGKILL")
                forwarded = len(stops)
            elif stops and time.monotonic() - stops[0][1] > GRACE_SECONDS:
                container.kill(signal="SIGKILL")
                stops.append((signal.SIGKILL, time.monotonic()))
                forwarded = len(stops)
            time.sleep(0.5)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    reader.join(timeout=10)
    state = container.attrs["State"]
    code = int(state.get("ExitCode") or 0)
    if state.get("OOMKilled"):
        print(f"tx: error: the container ran out of memory and was killed (exit {code}). "
              "Raise --memory or lower the batch size.", file=sys.stderr, flush=True)
    elif code:
        print(f"tx: container {container.id[:12]} exited with code {code}; logs: tx logs {record['job_id']}",
              file=sys.stderr, flush=True)
    return code


# -- status mapping (pure) -----------------------------------------------------------------------
def _parse_time(value: str | None) -> _dt.datetime | None:
    """Docker's RFC 3339 times with nanoseconds; None for the zero time."""
    if not value or value.startswith("0001-"):
        return None
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", value)
    if not m:
        return None
    frac = (m.group(2) or ".0")[:7]
    tz = "+00:00" if m.group(3) == "Z" else m.group(3)
    return _dt.datetime.fromisoformat(m.group(1) + frac + tz)


def _elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def container_status(record: dict[str, Any], attrs: dict[str, Any], now: _dt.datetime) -> JobStatus:
    """A container's inspect data -> the state `tx status` shows."""
    state = attrs.get("State", {})
    status = state.get("Status", "")
    code = state.get("ExitCode")
    started = _parse_time(state.get("StartedAt"))
    finished = _parse_time(state.get("FinishedAt"))
    extra: dict[str, str] = {"container": attrs.get("Id", "")[:12], "image": attrs.get("Config", {}).get("Image", "")}
    if status in ("running", "restarting", "paused"):
        name = "RUNNING" if status != "paused" else "SUSPENDED"
        code = None
    elif status == "created":
        name, code = "PENDING", None
    elif status in ("exited", "dead"):
        if state.get("OOMKilled"):
            name = "FAILED"
            extra["reason"] = "out of memory (OOM killed)"
        elif record.get("cancelled"):
            name = "CANCELLED"
        elif code == 0:
            name = "COMPLETED"
        else:
            name = "FAILED"
        if state.get("Error"):
            extra["reason"] = state["Error"]
    else:
        name = status.upper() or "UNKNOWN"
    elapsed = ""
    if started:
        elapsed = _elapsed(((finished if finished and finished >= started else now) - started).total_seconds())
    return JobStatus(
        job_id=record["job_id"],
        state=name,
        elapsed=elapsed,
        nodes=attrs.get("Name", "").lstrip("/"),
        restarts=int(attrs.get("RestartCount") or 0),
        exit_code=code if name in ("FAILED", "CANCELLED", "COMPLETED") else None,
        extra=extra,
    )


def _now() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


@hookimpl
def tx_register_launchers(registry: Any) -> None:
    registry.add(DockerLauncher(registry))
