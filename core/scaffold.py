"""Render the `tx new-task` / `tx new-launcher` templates into a plugin package.

The rules are copier's: a template file whose name ends in ``.jinja`` is rendered (the suffix
is dropped), every other file is copied byte for byte; file and folder names may hold Jinja
expressions (``{{module}}``), and a name that renders empty drops that file or folder.
Rendering is plain Jinja2 in a sandboxed environment with ``StrictUndefined``: the answers are
data, never code, and any value inserted into Python or TOML goes through an escaping filter.

The answers file (``.tx-answers.yml``) records the template, its version, the answers and the
files tx wrote, so ``--force`` overwrites those files and nothing else.

Everything here is pure except :func:`write`; nothing is written before every check passed.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from tx.core.errors import ConfigError

#: bump when the generated files change in a way a user would want to know about
TEMPLATE_VERSION = 1
ANSWERS_FILE = ".tx-answers.yml"
TASK_KINDS = ("seq2seq", "classification", "custom")
JINJA_SUFFIX = ".jinja"
MAX_NAME_LENGTH = 40
MAX_DESCRIPTION_LENGTH = 200
_NAME_RE = re.compile(r"[a-z][a-z0-9]*(?:[_-][a-z0-9]+)*")
_SKIP_NAMES = {"__pycache__", ".DS_Store"}


@dataclass(frozen=True)
class Names:
    """Every name derived from the one the user typed (``my-task``)."""

    name: str  # the task/launcher name and entry-point name: my-task
    module: str  # the import package: tx_my_task
    dist: str  # the distribution: tx-my-task
    directory: str  # the folder made: tx-my-task
    class_name: str  # MyTaskTask / MyTaskLauncher


def names_for(raw: str, what: str) -> Names:
    """Check ``raw`` and derive the names; ``what`` is "task" or "launcher". Pure."""
    if not raw or not raw.strip():
        raise ConfigError(f"the {what} name is empty", hint="pass a name such as 'ner' or 'my_task'")
    if "/" in raw or "\\" in raw or ".." in raw or raw.startswith((".", "~")):
        raise ConfigError(
            f"{what} name {raw!r} looks like a path",
            hint="pass a plain name such as 'ner' and choose the parent folder with --dir",
        )
    if raw != raw.lower() and _NAME_RE.fullmatch(raw.lower()):
        raise ConfigError(f"{what} name {raw!r} has upper-case letters", hint=f"use {raw.lower()!r}")
    if len(raw) > MAX_NAME_LENGTH:
        raise ConfigError(f"{what} name {raw!r} is longer than {MAX_NAME_LENGTH} characters", hint="pick a shorter name")
    if not _NAME_RE.fullmatch(raw):
        raise ConfigError(
            f"{what} name {raw!r} is not a valid name",
            hint="use lower-case letters, digits and single '_' or '-' between them, starting with a letter "
            "(e.g. 'ner', 'my_task', 'my-task')",
        )
    stem = raw.replace("-", "_")
    camel = "".join(part.capitalize() for part in stem.split("_"))
    suffix = what.capitalize()
    return Names(
        name=raw,
        module=f"tx_{stem}",
        dist=f"tx-{raw.replace('_', '-')}",
        directory=f"tx-{raw}",
        class_name=camel if camel.endswith(suffix) else camel + suffix,
    )


def check_free(names: Names, what: str, registered: Iterable[str], plugins: dict[str, str]) -> None:
    """The name must not be a registered task/launcher nor the name of a loaded plugin
    (``plugins`` maps plugin name -> description), or the new plugin could never load."""
    taken = set(registered)
    for candidate in dict.fromkeys((names.name, names.name.replace("-", "_"), names.name.replace("_", "-"))):
        if candidate in taken:
            raise ConfigError(f"{what} {candidate!r} is already registered", hint="pick another name (see `tx list`)")
        if candidate in plugins:
            raise ConfigError(
                f"the name {candidate!r} is already used by {plugins[candidate]}",
                hint="pick another name (see `tx list`)",
            )


def check_description(text: str) -> str:
    """One printable line; it is inserted into Python, TOML and Markdown (escaped where needed)."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise ConfigError("--description must be one line of printable text", hint="remove newlines and control characters")
    if len(text) > MAX_DESCRIPTION_LENGTH:
        raise ConfigError(f"--description is longer than {MAX_DESCRIPTION_LENGTH} characters", hint="shorten it")
    return text.strip()


# -- rendering ---------------------------------------------------------------------------------


def templates_root() -> Path:
    """The shipped templates (package data of ``tx.templates``; a real folder in editable and
    wheel installs)."""
    import tx.templates

    return Path(tx.templates.__file__).resolve().parent


def template_dirs(template: str, root: Path | None = None) -> list[Path]:
    """``task-seq2seq`` -> [common, task, task-seq2seq]: what every package gets, what every
    task gets, what the kind adds. ``launcher`` -> [common, launcher]."""
    root = root or templates_root()
    family = template.split("-", 1)[0]
    dirs = [root / "common"] + ([root / family] if family != template else []) + [root / template]
    missing = [d for d in dirs if not d.is_dir()]
    if missing:
        raise ConfigError(f"template folder {str(missing[0])!r} is missing", hint="reinstall tx-train")
    return dirs


def _toml_string(value: Any) -> str:
    # a JSON string is a valid TOML basic string (same escapes, \uXXXX for the rest)
    return json.dumps(str(value), ensure_ascii=True)


def _py_string(value: Any) -> str:
    return repr(str(value))


def make_environment(root: Path) -> Any:
    """Sandboxed Jinja2: no attribute tricks, an undefined name is an error, output kept as is."""
    from jinja2 import FileSystemLoader, StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(
        loader=FileSystemLoader(str(root)),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["toml"] = _toml_string
    env.filters["pyrepr"] = _py_string
    return env


@dataclass(frozen=True)
class RenderedFile:
    path: PurePosixPath  # relative to the new package's folder
    content: bytes
    source: str  # the template file it came from, for messages


def _render_name(env: Any, part: str, context: dict[str, Any], source: str) -> str:
    if "{" not in part:
        return part
    out = env.from_string(part).render(context)
    if out in (".", "..") or "/" in out or "\\" in out or "\x00" in out:
        raise ConfigError(f"template path {source!r} renders to an unsafe name {out!r}")
    return out


def render(dirs: list[Path], context: dict[str, Any], root: Path | None = None) -> list[RenderedFile]:
    """Render template folders (later ones may add files, never replace) in memory. Pure."""
    root = root or (dirs[0].parent if dirs else templates_root())
    env = make_environment(root)
    out: dict[PurePosixPath, RenderedFile] = {}
    for base in dirs:
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(base)
            if path.is_dir() or any(p in _SKIP_NAMES for p in rel.parts) or path.suffix == ".pyc":
                continue
            source = f"{base.name}/{rel.as_posix()}"
            parts = [_render_name(env, part, context, source) for part in rel.parts]
            rendered = parts[-1].endswith(JINJA_SUFFIX)
            if rendered:
                parts[-1] = parts[-1][: -len(JINJA_SUFFIX)]
            if any(not p for p in parts):
                continue  # a name rendered empty: copier's way to make a file conditional
            if rendered:
                template = env.get_template(path.relative_to(root).as_posix())
                content = template.render(context).encode("utf-8")
            else:
                content = path.read_bytes()
            target = PurePosixPath(*parts)
            if target in out:
                raise ConfigError(f"templates {out[target].source!r} and {source!r} both make {str(target)!r}")
            out[target] = RenderedFile(path=target, content=content, source=source)
    return [out[k] for k in sorted(out)]


# -- answers file and writing ------------------------------------------------------------------


def digest(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def answers_text(template: str, answers: dict[str, Any], files: list[RenderedFile], tx_version: str) -> str:
    """The answers file: how the package was made and which files tx wrote (with hashes)."""
    import yaml

    body = {
        "template": template,
        "template_version": TEMPLATE_VERSION,
        "tx_version": tx_version,
        "answers": answers,
        "files": {str(f.path): digest(f.content) for f in files},
    }
    header = (
        "# Written by tx when it generated this package. Keep it: regenerating with --force\n"
        "# overwrites only the files listed here (the ones tx made), never your own files.\n"
    )
    return header + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=1000)


def read_answers(target: Path) -> dict[str, Any]:
    """The previous answers file of ``target``, or a ConfigError saying why it cannot be used."""
    import yaml

    path = target / ANSWERS_FILE
    if not path.is_file():
        raise ConfigError(
            f"{str(target)!r} has no {ANSWERS_FILE}, so tx did not make it and will not overwrite anything in it",
            hint="move it away or choose another --dir",
        )
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{str(path)!r} is not a valid answers file: {type(exc).__name__}", hint="restore it or move the folder away") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), dict) or not isinstance(data.get("answers"), dict):
        raise ConfigError(f"{str(path)!r} is not a valid answers file", hint="restore it or move the folder away")
    return data


@dataclass
class WritePlan:
    """What :func:`write` will do, decided before anything is touched."""

    target: Path
    create: list[RenderedFile] = field(default_factory=list)
    overwrite: list[RenderedFile] = field(default_factory=list)
    edited: list[str] = field(default_factory=list)  # overwritten files that had local changes
    keep: list[str] = field(default_factory=list)  # exist, not made by tx: left alone
    stale: list[str] = field(default_factory=list)  # made by tx before, no longer in the template

    @property
    def written(self) -> list[RenderedFile]:
        return sorted(self.create + self.overwrite, key=lambda f: f.path)


def plan_write(target: Path, files: list[RenderedFile], template: str, names: Names, force: bool) -> WritePlan:
    """Decide per file: create, overwrite (only files the previous answers list) or keep."""
    plan = WritePlan(target=target)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{str(target)!r} exists and is not a folder", hint="choose another name or --dir")
    if not target.exists() or not any(target.iterdir()):
        plan.create = list(files)
        return plan
    if not force:
        raise ConfigError(
            f"folder {str(target)!r} already exists",
            hint="choose another name or --dir, or pass --force to regenerate only the files tx made there",
        )
    previous = read_answers(target)
    family, prev_family = template.split("-", 1)[0], str(previous.get("template", "")).split("-", 1)[0]
    if prev_family != family:
        raise ConfigError(
            f"{str(target)!r} was made by `tx new-{prev_family or '?'}`, not `tx new-{family}`",
            hint="choose another name or --dir",
        )
    if previous["answers"].get("name") != names.name:
        raise ConfigError(
            f"{str(target)!r} was made for {previous['answers'].get('name')!r}, not {names.name!r}",
            hint="choose another --dir",
        )
    made = {str(k): str(v) for k, v in previous["files"].items()}
    root = target.resolve()
    for f in files:
        dest = target / f.path
        if not _inside(dest, root):  # a folder on the way is a link out of the package: not ours
            plan.keep.append(str(f.path))
            continue
        if not (dest.exists() or dest.is_symlink()):
            plan.create.append(f)
            continue
        if str(f.path) in made and not dest.is_symlink() and dest.is_file():
            plan.overwrite.append(f)
            if digest(dest.read_bytes()) != made[str(f.path)]:
                plan.edited.append(str(f.path))
        else:
            plan.keep.append(str(f.path))
    rendered = {str(f.path) for f in files}
    plan.stale = sorted(p for p in made if p not in rendered and (target / p).exists())
    return plan


def _inside(dest: Path, root: Path) -> bool:
    """Whether the closest existing folder above ``dest`` really lies inside ``root``."""
    parent = dest.parent
    while not parent.exists():
        parent = parent.parent
    return parent.resolve().is_relative_to(root)


def write(plan: WritePlan, answers: str) -> None:
    """Write the planned files and the answers file (the only function here that touches disk)."""
    for f in plan.written:
        dest = plan.target / f.path
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.tx-tmp")
        tmp.write_bytes(f.content)
        os.replace(tmp, dest)
    plan.target.mkdir(parents=True, exist_ok=True)
    (plan.target / ANSWERS_FILE).write_text(answers, encoding="utf-8")


# -- the two commands, minus the CLI -----------------------------------------------------------


@dataclass(frozen=True)
class Generated:
    names: Names
    template: str
    plan: WritePlan


def generate(
    what: str,
    raw_name: str,
    parent: Path,
    *,
    kind: str | None,
    description: str | None,
    force: bool,
    registered: Iterable[str],
    plugins: dict[str, str],
    tx_version: str,
    dry_run: bool = False,
) -> Generated:
    """Check everything, render in memory, then write ``parent/tx-NAME`` (unless ``dry_run``)."""
    names = names_for(raw_name, what)
    check_free(names, what, registered, plugins)
    if what == "task":
        kind = kind or TASK_KINDS[0]
        if kind not in TASK_KINDS:
            raise ConfigError(f"--kind must be one of {', '.join(TASK_KINDS)}, not {kind!r}")
        template = f"task-{kind}"
    else:
        if kind is not None:
            raise ConfigError("--kind is for tx new-task only")
        template = "launcher"
    text = check_description(description) if description is not None else ""
    text = text or default_description(names, what, kind)
    answers = {
        "name": names.name,
        "kind": kind if what == "task" else "launcher",
        "description": text,
        "module": names.module,
        "dist": names.dist,
        "class_name": names.class_name,
    }
    context = {**answers, "tx_version": tx_version, "template_version": TEMPLATE_VERSION}
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"--dir {str(parent)!r} is not a folder", hint="pass a folder to create the package in")
    files = render(template_dirs(template), context, templates_root())
    target = parent / names.directory
    plan = plan_write(target, files, template, names, force)
    if not dry_run:
        write(plan, answers_text(template, answers, plan.written, tx_version))
    return Generated(names=names, template=template, plan=plan)


def default_description(names: Names, what: str, kind: str | None) -> str:
    """What `tx list` shows until the user writes their own (--description)."""
    if what == "launcher":
        return f"Runs the tx worker through a script, under nice, with extra env (from tx new-launcher {names.name})."
    return {
        "seq2seq": "Text to text with a seq2seq model, scored with word F1 (from tx new-task --kind seq2seq).",
        "classification": "Text classification, scored with accuracy and F1 (from tx new-task --kind classification).",
        "custom": "Causal language modelling on your own text (from tx new-task --kind custom).",
    }[kind or TASK_KINDS[0]]
