"""`tx new-task` / `tx new-launcher` without installing anything: name checks, copier's
rendering rules, the answers file and what --force may overwrite. Fast."""

from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import jinja2
import pytest
import yaml
from jinja2.sandbox import SecurityError

from tests.conftest import HEAVY_MODULES, assert_one_line_error
from tx.core import scaffold
from tx.core.errors import ConfigError

BUILTIN_TASKS = ["summarization", "translation"]
BUILTIN_PLUGINS = {"local": "plugin 'local' (distribution tx-train 0.1.0)"}


def gen(tmp_path: Path, name: str = "ner", what: str = "task", kind: str | None = None, force: bool = False,
        description: str | None = None) -> scaffold.Generated:
    return scaffold.generate(what, name, tmp_path, kind=kind, description=description, force=force,
                             registered=BUILTIN_TASKS, plugins=BUILTIN_PLUGINS, tx_version="0.1.0")


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def error_of(exc_info: pytest.ExceptionInfo[ConfigError]) -> str:
    return exc_info.value.one_line()


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "module", "dist", "directory", "class_name"),
    [
        ("ner", "tx_ner", "tx-ner", "tx-ner", "NerTask"),
        ("my_task", "tx_my_task", "tx-my-task", "tx-my_task", "MyTask"),
        ("my-task", "tx_my_task", "tx-my-task", "tx-my-task", "MyTask"),
        ("qa2", "tx_qa2", "tx-qa2", "tx-qa2", "Qa2Task"),
    ],
)
def test_names_are_normalised(raw: str, module: str, dist: str, directory: str, class_name: str) -> None:
    names = scaffold.names_for(raw, "task")
    assert (names.name, names.module, names.dist, names.directory, names.class_name) == (
        raw, module, dist, directory, class_name)


def test_launcher_class_name() -> None:
    assert scaffold.names_for("mycluster", "launcher").class_name == "MyclusterLauncher"
    assert scaffold.names_for("site_launcher", "launcher").class_name == "SiteLauncher"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("../x", "looks like a path"),
        ("a/b", "looks like a path"),
        ("..", "looks like a path"),
        ("~x", "looks like a path"),
        ("a\\b", "looks like a path"),
        ("", "name is empty"),
        ("NER", "upper-case letters. use 'ner'"),
        ("1abc", "is not a valid name"),
        ("a__b", "is not a valid name"),
        ("a-", "is not a valid name"),
        ("a b", "is not a valid name"),
        ("a.b", "is not a valid name"),
        ("x" * 41, "longer than 40 characters"),
    ],
)
def test_bad_names_are_one_clear_line(raw: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        scaffold.names_for(raw, "task")
    line = error_of(info)
    assert needle in line and "\n" not in line


@pytest.mark.parametrize(
    ("raw", "registered", "needle"),
    [
        ("summarization", ["summarization"], "task 'summarization' is already registered"),
        ("my-task", ["my_task"], "task 'my_task' is already registered"),
        ("local", [], "the name 'local' is already used by plugin 'local' (distribution tx-train"),
    ],
)
def test_taken_names_are_refused(raw: str, registered: list[str], needle: str) -> None:
    names = scaffold.names_for(raw, "task")
    with pytest.raises(ConfigError) as info:
        scaffold.check_free(names, "task", registered, BUILTIN_PLUGINS)
    assert needle in error_of(info)


def test_description_must_be_one_printable_line() -> None:
    with pytest.raises(ConfigError, match="one line"):
        scaffold.check_description("two\nlines")
    with pytest.raises(ConfigError, match="longer than"):
        scaffold.check_description("x" * 201)
    assert scaffold.check_description("  fine  ") == "fine"


# -- rendering rules ---------------------------------------------------------------------------


def make_template(root: Path) -> list[Path]:
    common, own = root / "common", root / "family"
    (own / "{{module}}").mkdir(parents=True)
    common.mkdir()
    (common / "plain.txt").write_text("{{ name }} stays as written\n")
    (common / "code.py.jinja").write_text("NAME = {{ name|pyrepr }}\n")
    (own / "{{module}}" / "inside.txt.jinja").write_text("module {{ module }}\n")
    (own / "{% if optional %}optional.txt{% endif %}").write_text("only when asked\n")
    (own / "{% if optional %}optional.py{% endif %}.jinja").write_text("{{ name }}\n")
    (own / "blob.bin").write_bytes(bytes(range(256)))
    return [common, own]


def test_only_jinja_files_are_rendered_and_names_are_templated(tmp_path: Path) -> None:
    dirs = make_template(tmp_path / "tpl")
    out = scaffold.render(dirs, {"name": "ner", "module": "tx_ner", "optional": False}, tmp_path / "tpl")
    by_path = {str(f.path): f.content for f in out}
    assert set(by_path) == {"plain.txt", "code.py", "tx_ner/inside.txt", "blob.bin"}
    assert by_path["plain.txt"] == b"{{ name }} stays as written\n"  # not a .jinja file: verbatim
    assert by_path["code.py"] == b"NAME = 'ner'\n"
    assert by_path["tx_ner/inside.txt"] == b"module tx_ner\n"
    assert by_path["blob.bin"] == bytes(range(256))
    with_optional = scaffold.render(dirs, {"name": "n", "module": "m", "optional": True}, tmp_path / "tpl")
    assert {"optional.txt", "optional.py"} <= {str(f.path) for f in with_optional}


def test_undefined_names_are_errors(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "x.jinja").write_text("{{ not_an_answer }}")
    with pytest.raises(jinja2.UndefinedError):
        scaffold.render([tmp_path / "t"], {}, tmp_path)


def test_templates_run_sandboxed(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "x.jinja").write_text("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(SecurityError):
        scaffold.render([tmp_path / "t"], {}, tmp_path)


def test_a_name_rendering_to_a_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "{{ where }}").write_text("x")
    with pytest.raises(ConfigError, match="unsafe name"):
        scaffold.render([tmp_path / "t"], {"where": ".."}, tmp_path)
    with pytest.raises(ConfigError, match="unsafe name"):
        scaffold.render([tmp_path / "t"], {"where": "a/../../b"}, tmp_path)


def test_answers_are_data_never_code(tmp_path: Path) -> None:
    nasty = "{{ 7*7 }} \"\"\" ' \\ ; import os; os.system('echo pwned') # {% raw %}"
    done = gen(tmp_path, "quoted", description=nasty)
    pkg = tmp_path / done.names.directory
    module = (pkg / "tx_quoted" / "__init__.py").read_text()
    tree = ast.parse(module)  # still valid Python
    literal = next(
        node.value.value for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DESCRIPTION"
    )
    assert literal == nasty.strip()
    assert tomllib.loads((pkg / "pyproject.toml").read_text())["project"]["description"] == nasty.strip()
    assert "{{ 7*7 }}" in (pkg / "README.md").read_text() and "49" not in (pkg / "README.md").read_text()
    assert yaml.safe_load((pkg / scaffold.ANSWERS_FILE).read_text())["answers"]["description"] == nasty.strip()


# -- what each command makes ----------------------------------------------------------------------

COMMON = {".gitignore", ".tx-answers.yml", "pyproject.toml", "README.md", "tests/conftest.py"}
EXPECTED = {
    "seq2seq": COMMON | {
        "tests/test_tx_ner.py", "tx_ner/__init__.py", "tx_ner/preprocess.py", "tx_ner/metrics/word_f1/word_f1.py",
        "tx_ner/data/train.jsonl", "tx_ner/data/validation.jsonl", "tx_ner/data/test.jsonl"},
    "classification": COMMON | {
        "tests/test_tx_ner.py", "tx_ner/__init__.py", "tx_ner/preprocess.py", "tx_ner/metric.py",
        "tx_ner/data/train.jsonl", "tx_ner/data/validation.jsonl", "tx_ner/data/test.jsonl"},
    "custom": COMMON | {
        "tests/test_tx_ner.py", "tx_ner/__init__.py", "tx_ner/preprocess.py", "tx_ner/metric.py",
        "tx_ner/data/train.jsonl", "tx_ner/data/validation.jsonl"},
}


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_each_kind_makes_exactly_its_files(tmp_path: Path, kind: str) -> None:
    done = gen(tmp_path, "ner", kind=kind)
    pkg = tmp_path / "tx-ner"
    assert files_under(pkg) == EXPECTED[kind]
    assert [str(f.path) for f in done.plan.create] == sorted(EXPECTED[kind] - {".tx-answers.yml"})
    project = tomllib.loads((pkg / "pyproject.toml").read_text())
    assert project["project"]["name"] == "tx-ner"
    assert project["project"]["entry-points"]["tx"] == {"ner": "tx_ner"}
    for path in pkg.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")  # every generated module is valid Python
    init = (pkg / "tx_ner" / "__init__.py").read_text()
    assert "from tx.core.hookspecs import hookimpl" in init and "def tx_register_tasks(" in init
    assert "import torch" not in init.split("class ")[0]  # nothing heavy at module level


def test_launcher_makes_exactly_its_files(tmp_path: Path) -> None:
    gen(tmp_path, "site", what="launcher")
    pkg = tmp_path / "tx-site"
    assert files_under(pkg) == COMMON | {"tests/test_tx_site.py", "tx_site/__init__.py"}
    project = tomllib.loads((pkg / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["tx"] == {"site": "tx_site"}
    assert "tool" in project and "package-data" not in project["tool"]["setuptools"]
    assert "def tx_register_launchers(" in (pkg / "tx_site" / "__init__.py").read_text()


def test_kind_is_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        gen(tmp_path, "ner", kind="regression")
    assert "--kind must be one of seq2seq, classification, custom, not 'regression'" in error_of(info)
    assert list(tmp_path.iterdir()) == []


# -- answers file and --force ------------------------------------------------------------------


def test_answers_file_records_template_answers_and_files(tmp_path: Path) -> None:
    gen(tmp_path, "my-task", kind="custom", description="Mine.")
    pkg = tmp_path / "tx-my-task"
    data = yaml.safe_load((pkg / scaffold.ANSWERS_FILE).read_text())
    assert data["template"] == "task-custom"
    assert data["template_version"] == scaffold.TEMPLATE_VERSION
    assert data["tx_version"] == "0.1.0"
    assert data["answers"] == {"name": "my-task", "kind": "custom", "description": "Mine.", "module": "tx_my_task",
                               "dist": "tx-my-task", "class_name": "MyTask"}
    assert set(data["files"]) == files_under(pkg) - {scaffold.ANSWERS_FILE}
    for path, sha in data["files"].items():
        assert hashlib.sha256((pkg / path).read_bytes()).hexdigest() == sha


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_existing_folder_is_refused_without_force(tmp_path: Path) -> None:
    gen(tmp_path, "ner")
    (tmp_path / "tx-ner" / "tx_ner" / "__init__.py").write_text("# mine\n")
    before = snapshot(tmp_path)
    with pytest.raises(ConfigError) as info:
        gen(tmp_path, "ner")
    assert "folder" in error_of(info) and "already exists" in error_of(info) and "--force" in error_of(info)
    assert snapshot(tmp_path) == before


def test_force_needs_an_answers_file(tmp_path: Path) -> None:
    (tmp_path / "tx-ner").mkdir()
    (tmp_path / "tx-ner" / "README.md").write_text("someone else's project\n")
    with pytest.raises(ConfigError) as info:
        gen(tmp_path, "ner", force=True)
    assert "has no .tx-answers.yml" in error_of(info)
    assert (tmp_path / "tx-ner" / "README.md").read_text() == "someone else's project\n"
    assert files_under(tmp_path / "tx-ner") == {"README.md"}


def test_force_overwrites_only_what_tx_made(tmp_path: Path) -> None:
    gen(tmp_path, "ner")
    pkg = tmp_path / "tx-ner"
    answers_path = pkg / scaffold.ANSWERS_FILE
    answers = yaml.safe_load(answers_path.read_text())
    # the user edits a generated file, adds their own, deletes a generated one, and owns README.md
    (pkg / "tx_ner" / "preprocess.py").write_text("# edited\n")
    (pkg / "notes.txt").write_text("my notes\n")
    (pkg / "tx_ner" / "data" / "test.jsonl").unlink()
    del answers["files"]["README.md"]
    answers_path.write_text(yaml.safe_dump(answers))
    (pkg / "README.md").write_text("my readme\n")

    done = gen(tmp_path, "ner", force=True)

    assert (pkg / "notes.txt").read_text() == "my notes\n"
    assert (pkg / "README.md").read_text() == "my readme\n"
    assert "def source_target(" in (pkg / "tx_ner" / "preprocess.py").read_text()
    assert (pkg / "tx_ner" / "data" / "test.jsonl").is_file()
    assert done.plan.keep == ["README.md"]
    assert done.plan.edited == ["tx_ner/preprocess.py"]
    assert [str(f.path) for f in done.plan.create] == ["tx_ner/data/test.jsonl"]
    recorded = yaml.safe_load(answers_path.read_text())["files"]
    assert "README.md" not in recorded and "tx_ner/preprocess.py" in recorded


def test_force_never_writes_through_a_symlink(tmp_path: Path) -> None:
    gen(tmp_path / "a", "ner")
    outside = tmp_path / "outside.py"
    outside.write_text("precious\n")
    target = tmp_path / "a" / "tx-ner" / "tx_ner" / "preprocess.py"
    target.unlink()
    target.symlink_to(outside)
    done = gen(tmp_path / "a", "ner", force=True)
    assert outside.read_text() == "precious\n"
    assert "tx_ner/preprocess.py" in done.plan.keep


def test_force_never_writes_into_a_symlinked_folder(tmp_path: Path) -> None:
    gen(tmp_path / "a", "ner")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    data = tmp_path / "a" / "tx-ner" / "tx_ner" / "data"
    for path in data.iterdir():
        path.unlink()
    data.rmdir()
    data.symlink_to(outside)
    done = gen(tmp_path / "a", "ner", force=True)
    assert list(outside.iterdir()) == []
    assert {"tx_ner/data/train.jsonl", "tx_ner/data/validation.jsonl", "tx_ner/data/test.jsonl"} <= set(done.plan.keep)


def test_force_refuses_another_family_or_name(tmp_path: Path) -> None:
    gen(tmp_path, "site", what="launcher")
    with pytest.raises(ConfigError) as info:
        gen(tmp_path, "site", force=True)
    assert "was made by `tx new-launcher`, not `tx new-task`" in error_of(info)


def test_force_reports_files_the_new_kind_no_longer_makes(tmp_path: Path) -> None:
    gen(tmp_path, "ner", kind="seq2seq")
    done = gen(tmp_path, "ner", kind="custom", force=True)
    assert "tx_ner/metrics/word_f1/word_f1.py" in done.plan.stale
    assert (tmp_path / "tx-ner" / "tx_ner" / "metrics" / "word_f1" / "word_f1.py").exists()  # left in place


# -- the CLI -----------------------------------------------------------------------------------


def test_cli_generates_and_says_what_next(tx, tmp_path: Path) -> None:
    result = tx("new-task", "my-task", "--dir", str(tmp_path / "sub"), "--kind", "custom")
    assert result.returncode == 0, result.stderr
    assert "Generated" in result.stdout and "pip install -e" in result.stdout and "tx run my-task" in result.stdout
    assert (tmp_path / "sub" / "tx-my-task" / "tx_my_task" / "__init__.py").is_file()


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["new-task", "../evil"], "task name '../evil' looks like a path"),
        (["new-task", "summarization"], "task 'summarization' is already registered"),
        (["new-task", "ok", "--kind", "nope"], "--kind must be one of"),
        (["new-launcher", "local"], "launcher 'local' is already registered"),
        (["new-launcher", "a/b"], "launcher name 'a/b' looks like a path"),
    ],
)
def test_cli_refusals_are_one_line(tx, tmp_path: Path, argv: list[str], needle: str) -> None:
    result = tx(*argv, "--dir", str(tmp_path))
    assert_one_line_error(result, needle)
    assert list(tmp_path.iterdir()) == []


def test_cli_refuses_existing_folder(tx, tmp_path: Path) -> None:
    assert tx("new-launcher", "site", "--dir", str(tmp_path)).returncode == 0
    assert_one_line_error(tx("new-launcher", "site", "--dir", str(tmp_path)), "already exists", "--force")
    again = tx("new-launcher", "site", "--dir", str(tmp_path), "--force")
    assert again.returncode == 0 and "overwritten" in again.stdout


def test_new_task_imports_nothing_heavy(tmp_path: Path) -> None:
    probe = (
        "import json, sys\nfrom tx.core.cli import main\n"
        f"rc = main(['new-task', 'light', '--dir', {str(tmp_path)!r}])\n"
        f"print('@@' + json.dumps({{'rc': rc, 'heavy': [m for m in {HEAVY_MODULES!r} if m in sys.modules]}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    result = json.loads([line for line in out.stdout.splitlines() if line.startswith("@@")][-1][2:])
    assert result == {"rc": 0, "heavy": []}
