"""Build tx images: assemble the build context and hand it to dockerd (docker SDK).

The context is made from what is installed, so it works the same from a source checkout
(editable install) and from a wheel: a tx wheel rebuilt from the installed package files and
metadata (``dist/``), ``requirements.txt`` from the distribution's requirements, the optional
wheelhouse (``wheels/``) and the shipped Dockerfile. Nothing is copied twice: the context is
streamed to dockerd as one tar built from a manifest.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

from tx.core.errors import ConfigError, LaunchError

DISTRIBUTION = "tx-train"
#: the tx subpackages the distribution ships (a unit test keeps this in step with pyproject)
SUBPACKAGES = ("core", "plugins", "launchers", "templates", "docker")
DEFAULT_TAG = "tx:latest"
DEFAULT_CPU_TAG = "tx:cpu"
LABEL_HASH = "tx.context-hash"
WHEEL_SUFFIXES = (".whl", ".tar.gz", ".zip")
_SKIP_DIRS = {"__pycache__", ".pytest_cache", ".git", ".mypy_cache"}
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Entry:
    """One file of the build context: bytes, or a host file (streamed, never copied)."""

    name: str
    data: bytes | None = None
    path: str | None = None
    size: int = 0

    @property
    def digest(self) -> str:
        """Content identity: a hash for generated files, name and size for wheels (immutable)."""
        if self.data is not None:
            return hashlib.sha256(self.data).hexdigest()
        return f"{os.path.basename(self.path or '')}:{self.size}"


def dockerfile_dir() -> Path:
    """Where the shipped Dockerfiles are (package data ``tx.docker``)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("tx.docker")
    except ModuleNotFoundError:
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "Dockerfile").is_file():
            return Path(location)
    import tx.core

    folder = Path(tx.core.__file__).resolve().parent.parent / "docker"
    if not (folder / "Dockerfile").is_file():
        raise LaunchError("tx's Dockerfiles are missing from this installation", hint="reinstall tx-train")
    return folder


# -- the tx wheel, rebuilt from the installed package ---------------------------------------------
def package_files() -> list[tuple[str, Path]]:
    """(archive name, file) of every file of the installed tx subpackages, sorted."""
    import importlib.util

    out: dict[str, Path] = {}
    for sub in SUBPACKAGES:
        spec = importlib.util.find_spec(f"tx.{sub}")
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            root = Path(location)
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.endswith(".egg-info"))
                for filename in filenames:
                    if filename.endswith((".pyc", ".pyo")) or filename.startswith(".#"):
                        continue
                    path = Path(dirpath) / filename
                    rel = path.relative_to(root).as_posix()
                    out.setdefault(f"tx/{sub}/{rel}", path)
    return sorted(out.items())


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(files: Iterable[tuple[str, bytes]], dist_metadata: str, entry_points: str, version: str) -> tuple[str, bytes]:
    """A py3-none-any wheel (file name, bytes) holding ``files``; identical input gives identical
    bytes (fixed timestamps, sorted entries), so an unchanged tx reuses the image's layer."""
    distinfo = f"tx_train-{version}.dist-info"
    wheel_meta = f"Wheel-Version: 1.0\nGenerator: tx docker build\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    members = sorted(files) + [
        (f"{distinfo}/METADATA", dist_metadata.encode()),
        (f"{distinfo}/WHEEL", wheel_meta.encode()),
        (f"{distinfo}/entry_points.txt", entry_points.encode()),
    ]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in members)
    record += f"{distinfo}/RECORD,,\n"
    members.append((f"{distinfo}/RECORD", record.encode()))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return f"tx_train-{version}-py3-none-any.whl", buf.getvalue()


def distribution() -> metadata.Distribution:
    """tx-train's installed metadata. A source checkout on sys.path (pytest, `python -m` from
    the checkout) also shows its ``*.egg-info``: prefer the installed ``.dist-info``."""
    found = list(metadata.distributions(name=DISTRIBUTION))
    if not found:
        raise LaunchError(f"{DISTRIBUTION} is not installed as a distribution", hint="pip install tx-train")
    return next((d for d in found if d.read_text("METADATA")), found[0])


def installed_wheel() -> tuple[str, bytes]:
    """The installed tx (editable or not) as a wheel."""
    dist = distribution()
    files = [(name, path.read_bytes()) for name, path in package_files()]
    if not any(name == "tx/core/cli.py" for name, _ in files):
        raise LaunchError("cannot find tx's own files to put in the image", hint="reinstall tx-train")
    meta = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or ""
    if not dist.version or f"\nVersion: {dist.version}\n" not in meta:
        raise LaunchError(f"the installed metadata of {DISTRIBUTION} has no version", hint="reinstall tx-train")
    return build_wheel(files, meta, dist.read_text("entry_points.txt") or "", dist.version)


def requirements(extras: Iterable[str] = ()) -> list[str]:
    """tx's requirements (with the given extras), as requirements.txt lines."""
    from packaging.requirements import Requirement

    dist = distribution()
    wanted = set(extras)
    known = set(dist.metadata.get_all("Provides-Extra") or [])
    unknown = wanted - known
    if unknown:
        raise ConfigError(f"unknown extra {sorted(unknown)[0]!r}", hint=f"extras of tx-train: {', '.join(sorted(known))}")
    out = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is not None:
            envs = [{"extra": e} for e in ("", *sorted(wanted))]
            if not any(req.marker.evaluate(env) for env in envs):
                continue
            req.marker = None
        out.append(str(req))
    return sorted(dict.fromkeys(out), key=str.lower)


# -- the build context ------------------------------------------------------------------------------
def wheelhouse_entries(wheelhouse: Path) -> list[Entry]:
    if not wheelhouse.is_dir():
        raise ConfigError(f"--wheelhouse {str(wheelhouse)!r} is not a directory",
                          hint="make one with: pip wheel -w DIR -r requirements.txt")
    entries = [
        Entry(name=f"wheels/{p.name}", path=str(p), size=p.stat().st_size)
        for p in sorted(wheelhouse.iterdir())
        if p.is_file() and p.name.endswith(WHEEL_SUFFIXES)
    ]
    if not any(e.name.endswith(".whl") for e in entries):
        raise ConfigError(f"--wheelhouse {str(wheelhouse)!r} holds no wheels",
                          hint="make one with: pip wheel -w DIR -r requirements.txt")
    return entries


def context_entries(cpu: bool, wheelhouse: Path | None, extras: Iterable[str] = ()) -> list[Entry]:
    """Every file of the build context, in a fixed order."""
    folder = dockerfile_dir()
    dockerfile = (folder / ("Dockerfile.cpu" if cpu else "Dockerfile")).read_bytes()
    ignore = (folder / ".dockerignore").read_bytes() if (folder / ".dockerignore").is_file() else b""
    wheel_name, wheel_bytes = installed_wheel()
    reqs = "".join(f"{r}\n" for r in requirements(extras))
    entries = [
        Entry("Dockerfile", data=dockerfile),
        Entry(".dockerignore", data=ignore),
        Entry("requirements.txt", data=reqs.encode()),
        Entry(f"dist/{wheel_name}", data=wheel_bytes),
        Entry("wheels/.keep", data=b""),
    ]
    if wheelhouse is not None:
        entries += wheelhouse_entries(wheelhouse)
    return entries


def context_hash(entries: list[Entry], build_args: dict[str, str], base_image_id: str = "") -> str:
    """Identity of a build: context files, build arguments and the base image's id."""
    h = hashlib.sha256()
    for entry in entries:
        h.update(f"{entry.name}\0{entry.digest}\n".encode())
    for key in sorted(build_args):
        h.update(f"arg {key}={build_args[key]}\n".encode())
    h.update(f"base {base_image_id}\n".encode())
    return h.hexdigest()[:16]


def write_tar(entries: list[Entry], fileobj: Any) -> None:
    with tarfile.open(fileobj=fileobj, mode="w") as tar:
        dirs = sorted({"/".join(e.name.split("/")[:i]) for e in entries for i in range(1, e.name.count("/") + 1)})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for entry in entries:
            info = tarfile.TarInfo(entry.name)
            info.mode, info.mtime = 0o644, 0
            if entry.data is not None:
                info.size = len(entry.data)
                tar.addfile(info, io.BytesIO(entry.data))
            else:
                assert entry.path is not None
                info.size = os.path.getsize(entry.path)
                with open(entry.path, "rb") as fh:
                    tar.addfile(info, fh)


def save_context(entries: list[Entry], target: Path) -> None:
    """Write the context as a folder (wheels are hard-linked when possible, else copied)."""
    import shutil

    if target.exists() and any(target.iterdir()):
        raise ConfigError(f"--save-context {str(target)!r} exists and is not empty", hint="give a new folder")
    for entry in entries:
        dest = target / entry.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if entry.data is not None:
            dest.write_bytes(entry.data)
        else:
            assert entry.path is not None
            try:
                os.link(entry.path, dest)
            except OSError:
                shutil.copy2(entry.path, dest)


# -- the build ----------------------------------------------------------------------------------------
def docker_client() -> Any:
    try:
        import docker
    except ImportError:
        raise LaunchError("`tx docker build` needs the docker Python package", hint="pip install 'tx-train[docker]'") from None
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:
        raise LaunchError(f"cannot reach the Docker engine ({' '.join(str(exc).split())[:300]})",
                          hint="start dockerd or set DOCKER_HOST") from None
    return client


def image_id(client: Any, name: str) -> str:
    import docker

    try:
        return str(client.images.get(name).id)
    except docker.errors.ImageNotFound:
        return ""


def up_to_date(client: Any, tag: str, digest: str) -> bool:
    import docker

    try:
        labels = client.images.get(tag).labels or {}
    except docker.errors.ImageNotFound:
        return False
    return labels.get(LABEL_HASH) == digest


def stream_build(
    client: Any,
    entries: list[Entry],
    *,
    tag: str,
    build_args: dict[str, str],
    labels: dict[str, str],
    offline: bool,
    no_cache: bool = False,
    echo: Callable[[str], None] = lambda s: (sys.stdout.write(s), sys.stdout.flush()),  # type: ignore[func-returns-value]
) -> str:
    """Send the context, print dockerd's progress as it comes, return the image id."""
    import tempfile

    with tempfile.TemporaryFile() as fh:
        write_tar(entries, fh)
        fh.seek(0)
        image = ""
        last_status = ""
        stream = client.api.build(
            fileobj=fh, custom_context=True, tag=tag, buildargs=build_args, labels=labels,
            network_mode="none" if offline else None, rm=True, forcerm=True, nocache=no_cache, decode=True,
        )
        for chunk in stream:
            if "error" in chunk:
                detail = chunk.get("errorDetail", {}).get("message") or chunk["error"]
                raise LaunchError(f"docker build failed: {' '.join(str(detail).split())[:600]}",
                                  hint="the build output above shows the failing step")
            if "stream" in chunk:
                echo(chunk["stream"])
            elif "status" in chunk:  # pulling the base image
                line = f"{chunk.get('id', '')} {chunk['status']}".strip()
                if line != last_status:
                    echo(line + "\n")
                    last_status = line
            aux = chunk.get("aux") or {}
            if isinstance(aux, dict) and aux.get("ID"):
                image = aux["ID"]
    if not image:
        image = image_id(client, tag)
    if not image:
        raise LaunchError("docker build ended without an image", hint="see the build output above")
    return image
