"""Every shell command in the quick start and the task pages runs, so the docs stay true.

Which pages: ``docs/quickstart.md`` and every ``docs/tasks/*.md`` (found when the tests are
collected: a new task page is covered without editing this file). One test per page.

Which commands: the fenced blocks opened with ```` ```bash ````. Blocks fenced otherwise
(```` ```text ````, ```` ```yaml ````, ```` ```json ````) show output or file contents and are not run;
write commands a reader should type in ``bash`` blocks, and show expected errors in ``text``.

How a page runs:

1. Its blocks run in order, each as a ``bash -euo pipefail`` script, in one fresh temporary
   directory per page (later blocks see the files earlier ones wrote). Use relative paths for
   outputs. The environment is the suite's: offline, with a per-session tx cache.
2. A block may carry directives on a comment line, harmless for a reader who copies it:
   ``# tx-docs: dry-run`` and/or ``# tx-docs: checkout``, optionally followed by a reason in
   parentheses: ``# tx-docs: dry-run (downloads t5-small from the Hub)``.

   - ``dry-run``: the block needs what a test machine lacks (a cluster, a GPU, the network):
     each ``tx run`` in it gets ``--dry-run`` (resolved and validated, plan printed, nothing
     launched; the test checks that the plan was printed).
   - ``checkout``: the block runs in a copy of this repository (made once per page), for
     commands such as ``pip install -e .`` that expect to be run from a checkout.
3. Commands are reached through stand-ins first on ``PATH`` (no text is rewritten):

   - ``tx run`` (not ``--help``/``--help-all``/``--print-config``, not already ``--dry-run``) runs for real with small-size flags
     appended, which win over the page's own: :data:`SMALL_FLAGS` (+ :data:`SMALL_SEQ2SEQ_FLAGS`
     for seq2seq tasks). Every ``tx run`` must exit 0 (even inside ``if`` or ``||``), a real
     one must print tx's ``tx: finished`` line and a dry run its plan (checked on the way
     through, so piping into ``grep`` is fine). Other ``tx`` commands (``report``, ``env``,
     ``list``...) run unchanged.
   - ``pip install`` always runs as ``pip install --dry-run --no-deps --no-build-isolation``:
     the requirement and the project must resolve, and nothing installed changes.
   - ``python -m pytest`` runs with ``--collect-only -q`` (this test is part of that suite).
   - ``tensorboard`` runs with ``--inspect`` (reads the event files and exits instead of
     serving) and fails when it finds no event file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
THIS_FILE = Path(__file__).resolve()

SMALL_FLAGS = ("--max_train_samples", "32", "--max_eval_samples", "8", "--max_predict_samples", "8",
               "--max_steps", "4")
SMALL_SEQ2SEQ_FLAGS = ("--generation_max_length", "8")
DIRECTIVES = ("dry-run", "checkout")
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")
DIRECTIVE = re.compile(r"^\s*#\s*tx-docs:\s*(?P<words>[^(]*)")
COPY_IGNORE = shutil.ignore_patterns(".git", "__pycache__", "*.egg-info", ".pytest_cache", "tx-output", "build",
                                     "dist", ".venv", "*.pyc")


# -- pure: pages, blocks, directives, rewrites ------------------------------------------------
def doc_pages(docs: Path = DOCS) -> list[Path]:
    """The pages whose commands must run: the quick start and every task page."""
    pages = [docs / "quickstart.md"] + sorted((docs / "tasks").glob("*.md"))
    return [p for p in pages if p.is_file()]


@dataclass(frozen=True)
class Block:
    line: int  # 1-based line of the opening fence
    code: str
    directives: frozenset[str]


def bash_blocks(markdown: str) -> list[Block]:
    """The ```bash blocks of a markdown page, with their directives."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info, start = opening["fence"], opening["info"].strip().split(), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (lines[i].strip().startswith(fence) and set(lines[i].strip()) == {fence[0]}):
            body.append(lines[i])
            i += 1
        i += 1
        if info and info[0] == "bash":
            blocks.append(Block(line=start + 1, code="\n".join(body) + "\n", directives=directives_of(body)))
    return blocks


def directives_of(body: list[str]) -> frozenset[str]:
    found: set[str] = set()
    for line in body:
        match = DIRECTIVE.match(line)
        if match:
            words = [w for w in re.split(r"[\s,]+", match["words"]) if w]
            unknown = [w for w in words if w not in DIRECTIVES]
            if unknown:
                raise ValueError(f"unknown tx-docs directive {unknown[0]!r} (known: {', '.join(DIRECTIVES)})")
            found.update(words)
    return frozenset(found)


def rewrite_tx(argv: list[str], dry_run: bool, seq2seq: bool) -> list[str]:
    """The `tx` command line actually run for a docs command."""
    if not argv or argv[0] != "run" or any(a in ("--help", "-h", "--help-all", "--dry-run", "--print-config") for a in argv):
        return list(argv)
    if dry_run:
        return [*argv, "--dry-run"]
    return [*argv, *SMALL_FLAGS, *(SMALL_SEQ2SEQ_FLAGS if seq2seq else ())]


def rewrite_pip(argv: list[str]) -> list[str]:
    if argv and argv[0] == "install":
        return ["install", "--dry-run", "--no-deps", "--no-build-isolation", *argv[1:]]
    return list(argv)


def rewrite_python(argv: list[str]) -> list[str]:
    if argv[:2] == ["-m", "pytest"]:
        return [*argv, "--collect-only", "-q"]
    if argv[:2] == ["-m", "pip"]:
        return ["-m", "pip", *rewrite_pip(argv[2:])]
    return list(argv)


def task_of(argv: list[str]) -> str | None:
    """The task a `tx run` command line names (or its --from job's task)."""
    from tx.core.run import split_tx_flags

    flags = split_tx_flags(argv[1:])
    if flags.from_job:
        from tx.core.jobspec import read

        return read(flags.from_job).task
    return flags.task


# -- the stand-ins (run as scripts, first on PATH) ---------------------------------------------
def shim_main(name: str, argv: list[str]) -> None:
    """Entry of the `tx`, `pip`, `python` and `tensorboard` stand-ins: log, rewrite, exec."""
    dry_run = os.environ.get("TX_DOCS_MODE") == "dry-run"
    if name == "tx":
        seq2seq = False
        if argv[:1] == ["run"] and not dry_run:
            from tx.core import plugins

            task = task_of(argv)
            loaded = plugins.load()
            seq2seq = task in loaded.tasks and loaded.tasks.get(task).training_arguments == "seq2seq"
        new = [sys.executable, "-m", "tx.core.cli", *rewrite_tx(argv, dry_run, seq2seq)]
    elif name == "pip":
        new = [sys.executable, "-m", "pip", *rewrite_pip(argv)]
    elif name == "python":
        new = [sys.executable, *rewrite_python(argv)]
    elif name == "tensorboard":
        result = subprocess.run([sys.executable, "-m", "tensorboard.main", "--inspect", *argv],
                                capture_output=True, text=True)
        sys.stdout.write(result.stdout + result.stderr)
        sys.exit(1 if result.returncode or "No event files found" in result.stdout + result.stderr else 0)
    else:
        raise SystemExit(f"no stand-in for {name}")
    entry = {"name": name, "argv": argv, "run": new[1:], "dry_run": dry_run}
    if name == "tx" and argv[:1] == ["run"]:
        # watch tx's stdout on its way through (a page may pipe it into grep or head)
        entry.update(run_and_watch(new))
        log_call(entry)
        sys.exit(entry["rc"])
    log_call(entry)
    sys.stdout.flush()
    os.execv(new[0], new)


def log_call(entry: dict) -> None:
    with open(os.environ["TX_DOCS_LOG"], "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def run_and_watch(argv: list[str]) -> dict:
    """Run ``argv`` passing its stdout through; note its exit code and tx's closing lines."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    seen = b""
    assert proc.stdout is not None
    for chunk in iter(lambda: proc.stdout.read1(65536), b""):
        seen = (seen + chunk)[-1_000_000:]
        try:
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        except BrokenPipeError:  # `| head`: the reader is gone; keep draining, exit cleanly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    rc = proc.wait()
    return {"rc": rc, "planned": b"# plan for launcher" in seen, "finished": b"tx: finished in" in seen}


SHIM = """#!{python}
import importlib.util, sys
spec = importlib.util.spec_from_file_location("tx_docs_commands", {this!r})
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
module.shim_main({name!r}, sys.argv[1:])
"""


def make_shims(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tx", "pip", "pip3", "python", "python3", "tensorboard"):
        target = {"pip3": "pip", "python3": "python"}.get(name, name)
        path = folder / name
        path.write_text(SHIM.format(python=sys.executable, this=str(THIS_FILE), name=target))
        path.chmod(0o755)
    return folder


# -- fast checks of the rules themselves -------------------------------------------------------
def test_blocks_and_directives_are_found() -> None:
    page = (
        "intro\n\n```bash\ntx list\n```\n\n```text\ntx: error: not run\n```\n\n"
        "````bash\n# tx-docs: dry-run, checkout (needs a GPU)\ntx run x \\\n  --y 1\n````\n"
        "```yaml\nkey: value\n```\n"
    )
    blocks = bash_blocks(page)
    assert [(b.line, b.directives) for b in blocks] == [(3, frozenset()), (11, frozenset({"dry-run", "checkout"}))]
    assert blocks[1].code.endswith("tx run x \\\n  --y 1\n")
    with pytest.raises(ValueError, match="dryrun"):
        bash_blocks("```bash\n# tx-docs: dryrun\ntx list\n```\n")


def test_rewrites() -> None:
    assert rewrite_tx(["run", "summarization"], dry_run=True, seq2seq=True) == ["run", "summarization", "--dry-run"]
    assert rewrite_tx(["run", "t", "--lr", "1"], dry_run=False, seq2seq=True) == \
        ["run", "t", "--lr", "1", *SMALL_FLAGS, *SMALL_SEQ2SEQ_FLAGS]
    assert rewrite_tx(["run", "t"], dry_run=False, seq2seq=False) == ["run", "t", *SMALL_FLAGS]
    for unchanged in (["run", "t", "--help"], ["run", "t", "--dry-run"], ["report", "a"], ["env"]):
        assert rewrite_tx(unchanged, dry_run=True, seq2seq=True) == unchanged
    assert rewrite_pip(["install", "-e", "."]) == ["install", "--dry-run", "--no-deps", "--no-build-isolation", "-e", "."]
    assert rewrite_python(["-m", "pytest", "-x"]) == ["-m", "pytest", "-x", "--collect-only", "-q"]
    assert rewrite_python(["-c", "print(1)"]) == ["-c", "print(1)"]


def test_the_pages_exist_and_have_commands() -> None:
    pages = doc_pages()
    assert DOCS / "quickstart.md" in pages and DOCS / "tasks" / "summarization.md" in pages
    for page in pages:
        assert bash_blocks(page.read_text(encoding="utf-8")), f"{page} has no ```bash block"


# -- running the pages -----------------------------------------------------------------------
def page_id(page: Path) -> str:
    return str(page.relative_to(DOCS))


@pytest.mark.train
@pytest.mark.parametrize("page", doc_pages(), ids=page_id)
def test_page_commands_run(page: Path, tmp_path: Path) -> None:
    blocks = bash_blocks(page.read_text(encoding="utf-8"))
    workdir = tmp_path / "work"
    workdir.mkdir()
    checkout = tmp_path / "checkout"
    log = tmp_path / "commands.jsonl"
    shims = make_shims(tmp_path / "shims")
    real_path = os.environ.get("PATH", "")
    for block in blocks:
        if "checkout" in block.directives and not checkout.exists():
            shutil.copytree(ROOT, checkout, ignore=COPY_IGNORE, symlinks=True)
        cwd = checkout if "checkout" in block.directives else workdir
        env = dict(os.environ, PATH=f"{shims}{os.pathsep}{real_path}",
                   TX_DOCS_LOG=str(log), TX_DOCS_MODE="dry-run" if "dry-run" in block.directives else "real")
        env.pop("TX_DEBUG", None)
        before = len(log.read_text().splitlines()) if log.exists() else 0
        script = tmp_path / f"block-{block.line}.sh"
        script.write_text("set -euo pipefail\n" + block.code)
        result = subprocess.run(["bash", str(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
        output = result.stdout + result.stderr
        where = f"{page_id(page)}:{block.line}"
        assert result.returncode == 0, f"block at {where} failed ({result.returncode}):\n{block.code}\n--- output:\n{output[-6000:]}"
        assert "Traceback" not in output, f"block at {where} printed a traceback:\n{output[-6000:]}"
        calls = [json.loads(line) for line in log.read_text().splitlines()[before:]] if log.exists() else []
        runs = [c for c in calls if c["name"] == "tx" and c["argv"][:1] == ["run"]
                and not {"--help", "-h", "--help-all", "--print-config"} & set(c["argv"])]
        for call in runs:
            command = "tx " + " ".join(call["argv"])
            assert call["rc"] == 0, f"{where}: `{command}` exited {call['rc']}\n{output[-4000:]}"
            if "--dry-run" in call["run"]:
                assert call["planned"], f"{where}: `{command}` printed no plan\n{output[-4000:]}"
            else:
                assert not call["dry_run"], f"{where}: dry-run block ran `{command}`"
                assert call["finished"], f"{where}: `{command}` did not finish\n{output[-4000:]}"
    all_calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    assert any(c["name"] == "tx" for c in all_calls), f"{page_id(page)}: no tx command ran"
