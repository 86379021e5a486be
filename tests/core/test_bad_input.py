"""Bad input, table-driven: every case exits non-zero with one `tx: error:` line that names the
problem and the fix, prints no traceback, and changes nothing already on disk (a snapshot of
every file and directory of the test's world, with hashes, modes and mtimes, before and after).

Nearly all cases must fail before launch (in `tx run`'s validation) and run in-process through
the console entry point `tx.core.cli.main` (one interpreter for 50 cases). Cases that need
another process say why: dropped capabilities (root reads anything; without CAP_DAC_OVERRIDE a
mode-000 file is unreadable to it too) or a failure that can only show when the worker loads the
data (marked `train`).

Decided policy for empty text (see docs/troubleshooting.md): a text column that is empty in
every row is an error before launch; rows with an empty source or target are skipped by the
seq2seq tasks with a one-line count (test_empty_rows_are_skipped_with_a_count).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT, assert_one_line_error, run_tx

SUMMARIZATION_DATA = ROOT / "plugins" / "summarization" / "data"
CLASSIFICATION_DATA = ROOT / "plugins" / "classification" / "data"
NO_CAPS = ("setpriv", "--bounding-set=-all", "--inh-caps=-all")


# -- the world every case runs against ---------------------------------------------------------
def _head(src: Path, n: int) -> str:
    with open(src, encoding="utf-8") as fh:
        return "".join(next(fh) for _ in range(n))


def make_world(root: Path) -> None:
    """Data files good and bad, config files, a finished run with a checkpoint, a directory with
    someone's files, a file where a directory is expected, model folders."""
    d = root / "data"
    d.mkdir(parents=True)
    (d / "train.jsonl").write_text(_head(SUMMARIZATION_DATA / "train.jsonl", 20), encoding="utf-8")
    (d / "val.jsonl").write_text(_head(SUMMARIZATION_DATA / "validation.jsonl", 8), encoding="utf-8")
    (d / "cls.csv").write_text(_head(CLASSIFICATION_DATA / "train.csv", 20), encoding="utf-8")
    (d / "train.txt").write_text("just some text\n")
    (d / "train.parquet").write_bytes(b"PAR1....")
    (d / "bad_line4.jsonl").write_text('{"document": "a", "summary": "b"}\n' * 3 + '{"document": "c", "summary": \n')
    (d / "list_line2.jsonl").write_text('{"document": "a", "summary": "b"}\n["c", "d"]\n')
    (d / "bad_array.json").write_text('[\n  {"document": "a", "summary": "b"},\n  {"document": "c" "summary": "d"}\n]\n')
    (d / "extra_field.csv").write_text('document,summary\n"a, b",c\nd,e,f\ng,h\n')
    (d / "open_quote.csv").write_text('document,summary\na,b\n"c,d\ne,f\n')
    (d / "latin1.jsonl").write_bytes('{"document": "ok", "summary": "ok"}\n{"document": "caf\u00e9", "summary": "x"}\n'.encode("latin-1"))
    (d / "latin1.csv").write_bytes("document,summary\nna\u00efve,x\n".encode("latin-1"))
    (d / "empty.jsonl").write_text("")
    (d / "blank.jsonl").write_text("\n   \n\n")
    (d / "header_only.csv").write_text("document,summary\n")
    (d / "empty_array.json").write_text("[]\n")
    (d / "one_column.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    (d / "no_summaries.jsonl").write_text('{"document": "a", "summary": ""}\n{"document": "b", "summary": "   "}\n')
    (d / "unreadable.jsonl").write_text('{"document": "a", "summary": "b"}\n')
    (d / "unreadable.jsonl").chmod(0)
    (d / "a_dir.jsonl").mkdir()
    (d / "cls_nan.csv").write_text("sentence,label\ngood,positive\nbad,negative\nmeh,NaN\n")
    (d / "cls_missing.csv").write_text("sentence,label\ngood,positive\nbad,\nugly,negative\n")
    # row by row, each of these has one text empty: only loading shows that nothing is left
    (d / "all_rows_empty.jsonl").write_text('{"document": "a", "summary": ""}\n{"document": "", "summary": "b"}\n')
    # a broken line beyond what tx scans before launch (TX_SCAN_LIMIT_MB=0 in that case)
    (d / "late_bad.jsonl").write_text('{"document": "a", "summary": "b"}\n' * 5 + "{oops\n")

    c = root / "configs"
    c.mkdir()
    (c / "bad_indent.yaml").write_text("do_train: true\nlearning_rate: 1e-4\n  seed: 3\n")
    (c / "python_object.yaml").write_text("do_train: !!python/object/apply:os.system ['touch /tmp/tx-pwned']\n")
    (c / "typo.yaml").write_text("do_train: true\nlearnig_rate: 0.001\n")
    (c / "a_list.yaml").write_text("- do_train\n- do_eval\n")
    (c / "bad.json").write_text('{\n  "do_train": true,\n  "seed": 3,\n}\n')
    (c / "config.toml").write_text("do_train = true\n")
    (c / "wrong_type.yaml").write_text("num_train_epochs: three\n")

    prev = root / "prev"  # a run someone cares about: checkpoint, model, results, job file
    (prev / "checkpoint-2").mkdir(parents=True)
    (prev / "checkpoint-2" / "trainer_state.json").write_text(json.dumps({"global_step": 2}))
    (prev / "checkpoint-2" / "model.safetensors").write_bytes(os.urandom(4096))
    (prev / "model.safetensors").write_bytes(os.urandom(4096))
    (prev / "all_results.json").write_text('{"eval_loss": 1.5}\n')
    (prev / "tx-job.yaml").write_text("task: summarization\nlauncher: local\nargs: {output_dir: prev}\n")
    (prev / "not-a-checkpoint").mkdir()
    (prev / "not-a-checkpoint" / "notes.txt").write_text("mine\n")
    (prev / ".tx-partial" / "checkpoint-4").mkdir(parents=True)
    (prev / ".tx-partial" / "checkpoint-4" / "trainer_state.json").write_text("{}")

    (root / "someones_dir").mkdir()
    (root / "someones_dir" / "thesis.tex").write_text("\\documentclass{article}\n")
    (root / "a_file").write_text("not a directory\n")
    (root / "model_noconfig").mkdir()
    (root / "model_noconfig" / "tokenizer.json").write_text("{}")
    make_model_folders(root)


def make_model_folders(root: Path) -> None:
    """model_only: config + weights of the built-in tiny T5, saved without its tokenizer (what
    `model.save_pretrained(folder)` alone leaves); model_foreign_tokenizer: the same with a
    tokenizer of twelve words the data never uses."""
    import shutil

    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from tx.core.builtin_models import cached_build
    from tx.plugins.summarization import SummarizationTask

    task = SummarizationTask()
    built = cached_build(task.builtin_model, task._build_builtin)
    for name in ("model_only", "model_foreign_tokenizer"):
        (root / name).mkdir()
        for file in ("config.json", "generation_config.json", "model.safetensors"):
            shutil.copy(built / file, root / name / file)
    words = ["<unk>", "<pad>", "</s>"] + [f"zz{i}" for i in range(12)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="</s>").save_pretrained(
        root / "model_foreign_tokenizer")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under root: kind, mode, mtime and content hash."""
    out: dict[str, tuple] = {}
    for path in sorted(root.rglob("*")) + [root]:
        st = path.lstat()
        digest = ""
        if path.is_file() and not path.is_symlink():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        out[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, st.st_size, digest)
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("world")
    make_world(root)
    return root


# -- the table -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    problem: tuple[str, ...]  # the error line names the problem with these
    fix: str  # ... and says what to do with this
    where: str = "inproc"  # inproc | nocaps (subprocess without capabilities) | subproc (own environment) | worker
    env: dict[str, str] = field(default_factory=dict)


def summ(*args: str, train: str = "data/train.jsonl", out: str = "out") -> tuple[str, ...]:
    """A small summarization command on the world's files; ``args`` come last (and win)."""
    return ("run", "summarization", "--model_name_or_path", "tx-builtin:t5-tiny-summarization-v1",
            "--train_file", train, "--validation_file", "data/val.jsonl", "--do_train", "--do_eval",
            "--max_steps", "1", "--output_dir", out, *args)


def cls(train: str, *args: str) -> tuple[str, ...]:
    return ("run", "classification", "--model_name_or_path", "tx-builtin:bert-tiny-classification-v1",
            "--train_file", train, "--do_train", "--max_steps", "1", "--output_dir", "out", *args)


def cfg(name: str) -> tuple[str, ...]:
    return ("run", "summarization", "--config", f"configs/{name}", "--output_dir", "out")


CASES = [
    # names: tasks, launchers, flags, commands
    Case("unknown-task", ("run", "summarisation"), ("summarisation", "summarization"), "did you mean"),
    Case("unknown-launcher", summ("--launcher", "torchrn"), ("torchrn", "torchrun"), "did you mean"),
    Case("unknown-flag", summ("--learnig_rate", "1e-4"), ("--learnig_rate", "--learning_rate"), "did you mean"),
    Case("unknown-launcher-flag", summ("--launcher", "torchrun", "--nproc-per-nod", "2"),
         ("--nproc-per-nod", "torchrun"), "did you mean --nproc-per-node"),
    Case("flag-of-another-launcher", summ("--nproc-per-node", "2"), ("--nproc-per-node", "torchrun", "'local'"),
         "add --launcher torchrun"),
    Case("no-task", ("run",), ("no task",), "usage: tx run TASK"),
    # value types
    Case("float-not-a-number", summ("--learning_rate", "fast"), ("--learning_rate", "fast", "invalid float value"), "give a number"),
    Case("int-given-a-float", summ("--per_device_train_batch_size", "2.5"), ("--per_device_train_batch_size", "2.5", "invalid int value"), "whole number"),
    Case("bool-not-a-bool", summ("--do_predict", "maybe"), ("--do_predict", "maybe"), "true"),
    Case("choice-not-a-choice", summ("--lr_scheduler_type", "cosinus"), ("--lr_scheduler_type", "cosinus", "invalid choice"), "use one of the listed values"),
    Case("flag-without-value", summ("--seed"), ("--seed", "expected one argument"), "give a value after the flag"),
    Case("launcher-option-not-a-number", summ("--launcher", "torchrun", "--nproc-per-node", "zero"),
         ("--nproc-per-node", "zero"), "number"),
    # data files
    Case("missing-data-file", summ(train="data/nope.jsonl"), ("--train_file", "nope.jsonl", "does not exist"), "check the path"),
    Case("data-file-is-a-directory", summ(train="data/a_dir.jsonl"), ("a_dir.jsonl", "directory"), "pass a .csv"),
    Case("unreadable-data-file", summ(train="data/unreadable.jsonl"), ("unreadable.jsonl", "not readable"),
         "permissions", where="nocaps"),
    Case("unsupported-extension-txt", summ(train="data/train.txt"), ("train.txt", "'.txt'"), "use .csv, .tsv, .json or .jsonl"),
    Case("unsupported-extension-parquet", summ(train="data/train.parquet"), ("'.parquet'",), "use .csv"),
    Case("malformed-json-line", summ(train="data/bad_line4.jsonl"), ("bad_line4.jsonl", "line 4", "not valid JSON"),
         "one JSON object"),
    Case("json-line-not-an-object", summ(train="data/list_line2.jsonl"), ("line 2", "JSON list"), '{"column": value'),
    Case("malformed-json-array", summ(train="data/bad_array.json"), ("bad_array.json", "line 3"), "fix the JSON"),
    Case("csv-row-with-extra-field", summ(train="data/extra_field.csv"), ("extra_field.csv", "line 3", "3 comma-separated fields"),
         "quote fields"),
    Case("csv-unclosed-quote", summ(train="data/open_quote.csv"), ("open_quote.csv", "line 3", "not valid CSV"), "close the quote"),
    Case("non-utf8-jsonl", summ(train="data/latin1.jsonl"), ("latin1.jsonl", "not UTF-8", "line 2"), "iconv"),
    Case("non-utf8-csv", summ(train="data/latin1.csv"), ("latin1.csv", "not UTF-8", "line 2"), "iconv"),
    Case("empty-file", summ(train="data/empty.jsonl"), ("empty.jsonl", "is empty"), "at least one row"),
    Case("blank-lines-only", summ(train="data/blank.jsonl"), ("blank.jsonl", "no rows"), "add at least one row"),
    Case("csv-header-only", summ(train="data/header_only.csv"), ("header_only.csv", "no rows"), "a header"),
    Case("empty-json-array", summ(train="data/empty_array.json"), ("empty_array.json", "no rows"), "add at least one row"),
    Case("missing-column-named", summ("--text_column", "body"), ("--text_column", "'body'", "not a column"),
         "available columns: document, summary"),
    Case("missing-default-column", summ(train="data/one_column.jsonl"), ("'summary'", "one_column.jsonl"),
         "available columns: text"),
    Case("text-column-empty-everywhere", summ(train="data/no_summaries.jsonl"), ("'summary'", "empty in all 2 rows"),
         "--summary_column"),
    Case("label-nan", cls("data/cls_nan.csv"), ("line 4", "cls_nan.csv", "no label"), "fill in every label"),
    Case("label-missing", cls("data/cls_missing.csv"), ("line 3", "cls_missing.csv", "no label"), "fill in every label"),
    Case("no-data-at-all", ("run", "summarization", "--model_name_or_path", "tx-builtin:t5-tiny-summarization-v1",
                            "--do_train", "--output_dir", "out"), ("no data",), "--train_file"),
    Case("eval-without-eval-data", ("run", "summarization", "--model_name_or_path", "tx-builtin:t5-tiny-summarization-v1",
                                    "--train_file", "data/train.jsonl", "--do_eval", "--output_dir", "out"),
         ("--do_eval",), "--validation_file"),
    # metrics and lengths
    Case("unknown-metric", cls("data/cls.csv", "--metric_name", "nosuch_metric"), ("nosuch_metric",), "use accuracy"),
    Case("max-source-length-zero", summ("--max_source_length", "0"), ("--max_source_length", "got 0"), "positive"),
    Case("max-target-length-negative", summ("--max_target_length", "-5"), ("--max_target_length", "-5"), "positive"),
    Case("max-train-samples-zero", summ("--max_train_samples", "0"), ("--max_train_samples",), "positive"),
    Case("max-seq-length-zero", cls("data/cls.csv", "--max_seq_length", "0"), ("--max_seq_length",), "positive"),
    # conflicts
    Case("fp16-and-bf16", summ("--fp16", "--bf16"), ("--fp16", "--bf16"), "pick one"),
    Case("deepspeed-with-xla", summ("--deepspeed", "zero2", "--launcher", "xla"), ("--deepspeed", "--launcher xla"),
         "drop --deepspeed"),
    Case("nothing-to-do", summ("--do_train", "false", "--do_eval", "false"), ("nothing to do",), "--do_train"),
    Case("builtin-model-of-another-task", summ("--model_name_or_path", "tx-builtin:bert-tiny-classification-v1"),
         ("tx-builtin:bert-tiny-classification-v1",), "t5-tiny-summarization-v1"),
    # config files
    Case("yaml-bad-indent", cfg("bad_indent.yaml"), ("bad_indent.yaml", "invalid YAML", "line 3"), "fix the YAML there"),
    Case("yaml-python-object", cfg("python_object.yaml"), ("python_object.yaml", "python/object"), "remove the !!python tag"),
    Case("config-unknown-key", cfg("typo.yaml"), ("'learnig_rate'",), "did you mean learning_rate"),
    Case("config-not-a-mapping", cfg("a_list.yaml"), ("a_list.yaml", "mapping of flag names"), "flag_name: value"),
    Case("config-bad-json", cfg("bad.json"), ("bad.json", "invalid JSON", "line 4"), "fix the JSON there"),
    Case("config-unsupported-extension", cfg("config.toml"), ("config.toml", "'.toml'"), "use .yaml"),
    Case("config-missing", cfg("nope.yaml"), ("nope.yaml", "does not exist"), "--config"),
    Case("config-wrong-type", cfg("wrong_type.yaml"), ("num_train_epochs", "three"), "give a number"),
    Case("from-missing-job", ("run", "--from", "nowhere/tx-job.yaml"), ("tx-job.yaml", "does not exist"), "tx run"),
    # output dir, checkpoints, models
    Case("output-dir-is-a-file", summ(out="a_file"), ("a_file", "is a file"), "directory"),
    Case("output-dir-under-a-file", summ(out="a_file/run"), ("a_file", "is a file"), "--output_dir"),
    Case("output-dir-not-empty", summ(out="someones_dir"), ("someones_dir", "not empty"), "--overwrite_output_dir"),
    Case("checkpoint-does-not-exist", summ("--resume_from_checkpoint", "prev/checkpoint-9", out="prev"),
         ("checkpoint-9", "does not exist"), "checkpoint-N directory"),
    Case("checkpoint-is-not-one", summ("--resume_from_checkpoint", "prev/not-a-checkpoint", out="prev"),
         ("not-a-checkpoint", "not a complete checkpoint"), "checkpoint-N directory"),
    Case("checkpoint-half-written", summ("--resume_from_checkpoint", "prev/.tx-partial/checkpoint-4", out="prev"),
         ("checkpoint-4", "never finished"), "checkpoint-N directory"),
    Case("model-without-config", summ("--model_name_or_path", "./model_noconfig"), ("model_noconfig", "no config.json"),
         "save_pretrained"),
    Case("model-path-missing", summ("--model_name_or_path", "./no_such_model"), ("no_such_model", "does not exist"),
         "local model folder"),
    # numeric ranges of the training arguments (torch used to refuse them after loading everything)
    Case("learning-rate-negative", summ("--learning_rate=-1e-3"), ("--learning_rate", "zero or more", "got -0.001"),
         "learning rate such as 5e-5"),
    Case("learning-rate-negative-spaced", summ("--learning_rate", "-1e-3"), ("--learning_rate", "got -0.001"),
         "learning rate such as 5e-5"),
    Case("learning-rate-nan", summ("--learning_rate", "nan"), ("--learning_rate", "got nan"), "learning rate such as"),
    Case("train-batch-size-zero", summ("--per_device_train_batch_size", "0"),
         ("--per_device_train_batch_size", "at least 1", "got 0"), "change it"),
    Case("eval-batch-size-negative", summ("--per_device_eval_batch_size", "-4"), ("--per_device_eval_batch_size", "got -4"),
         "change it"),
    Case("gradient-accumulation-zero", summ("--gradient_accumulation_steps", "0"), ("--gradient_accumulation_steps", "got 0"),
         "change it"),
    Case("epochs-negative", summ("--num_train_epochs", "-1"), ("--num_train_epochs", "got -1"), "change it"),
    Case("epochs-zero-without-max-steps", cls("data/cls.csv", "--max_steps", "-1", "--num_train_epochs", "0"),
         ("--num_train_epochs 0", "nothing to train"), "--max_steps"),
    Case("max-steps-zero", summ("--max_steps", "0"), ("--max_steps", "got 0"), "leave it out"),
    Case("max-steps-below-minus-one", summ("--max_steps", "-5"), ("--max_steps", "got -5"), "leave it out"),
    Case("weight-decay-negative", summ("--weight_decay", "-0.1"), ("--weight_decay", "got -0.1"), "change it"),
    Case("max-grad-norm-negative", summ("--max_grad_norm", "-1"), ("--max_grad_norm", "got -1"), "0 turns gradient clipping off"),
    Case("adam-beta-above-one", summ("--adam_beta2", "1.5"), ("--adam_beta2", "[0, 1)", "got 1.5"), "change it"),
    Case("label-smoothing-above-one", summ("--label_smoothing_factor", "1.5"), ("--label_smoothing_factor", "got 1.5"),
         "change it"),
    Case("save-steps-zero", summ("--save_steps", "0"), ("--save_steps", "positive", "got 0"), "a number of steps"),
    Case("eval-steps-negative", summ("--eval_strategy", "steps", "--eval_steps", "-2"), ("--eval_steps", "got -2"),
         "a number of steps"),
    Case("logging-steps-negative", summ("--logging_steps", "-3"), ("--logging_steps", "got -3"), "a number of steps"),
    Case("seed-negative", summ("--seed", "-1"), ("--seed", "got -1"), "change it"),
    Case("seed-too-big", summ("--data_seed", str(2**32)), ("--data_seed", "got 4294967296"), "change it"),
    Case("dataloader-workers-negative", summ("--dataloader_num_workers", "-1"), ("--dataloader_num_workers", "got -1"),
         "change it"),
    Case("save-total-limit-negative", summ("--save_total_limit", "-1"), ("--save_total_limit", "got -1"), "change it"),
    Case("max-eval-samples-negative", summ("--max_eval_samples", "-3"), ("--max_eval_samples", "-3"), "positive"),
    # required arguments
    Case("no-model", ("run", "summarization", "--train_file", "data/train.jsonl", "--do_train", "--output_dir", "out"),
         ("missing required argument --model_name_or_path",), "add it to the command line"),
    # tokenizers that cannot read the data (transformers would build an empty one and train on <unk>)
    Case("model-folder-without-tokenizer", summ("--model_name_or_path", "./model_only"),
         ("model_only", "no tokenizer files", "<unk>"), "--tokenizer_name"),
    Case("tokenizer-folder-without-tokenizer", summ("--tokenizer_name", "./model_only"),
         ("--tokenizer_name", "model_only", "no tokenizer files"), "save that tokenizer into the folder"),
    Case("tokenizer-that-knows-none-of-the-words", summ("--model_name_or_path", "./model_foreign_tokenizer"),
         ("model_foreign_tokenizer", "tokens of the data into <unk>"), "--tokenizer_name"),
    # Hub ids: from the cache, or one quick request (no retries for half a minute)
    Case("hub-id-offline-not-cached", summ("--model_name_or_path", "someone/no-such-model"),
         ("'someone/no-such-model'", "not in the local Hugging Face cache", "HF_HUB_OFFLINE"), "pass a local model folder"),
    Case("hub-unreachable", summ("--model_name_or_path", "someone/no-such-model", out="../fresh-hub"),
         ("'someone/no-such-model'", "cannot reach http://127.0.0.1:9", "not in the local cache"), "check the network",
         where="subproc", env={"HF_HUB_OFFLINE": "", "TRANSFORMERS_OFFLINE": "", "HF_ENDPOINT": "http://127.0.0.1:9"}),
    # only the worker, loading the data, can tell
    Case("every-row-has-an-empty-text", summ(train="data/all_rows_empty.jsonl", out="../fresh-empty"),
         ("every row of the train split",), "check the data", where="worker"),
    Case("malformed-line-found-at-load", summ(train="data/late_bad.jsonl", out="../fresh-late"),
         ("late_bad.jsonl", "line 6", "not valid JSON"), "fix that line", where="worker",
         env={"TX_SCAN_LIMIT_MB": "0"}),
]


def run_inprocess(args: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess[str]:
    """The console entry point in this interpreter (imports paid once for the whole table)."""
    from tx.core.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(old)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def run_case(case: Case, world: Path) -> subprocess.CompletedProcess[str]:
    if case.where == "inproc":
        return run_inprocess(case.args, world)
    if case.where == "nocaps":
        return subprocess.run([*NO_CAPS, sys.executable, "-m", "tx.core.cli", *case.args], cwd=world,
                              capture_output=True, text=True, timeout=300, env={**os.environ, **case.env})
    return run_tx(*case.args, cwd=world, env=case.env, timeout=900)  # subproc, worker


def _param(case: Case) -> object:
    marks = [pytest.mark.train] if case.where == "worker" else []
    return pytest.param(case, id=case.id, marks=marks)


def test_the_table_is_big_enough() -> None:
    assert len(CASES) >= 80
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input(case: Case, world: Path) -> None:
    before = snapshot(world)
    result = run_case(case, world)
    line = assert_one_line_error(result, *case.problem)
    assert case.fix.lower() in line.lower(), f"no fix in: {line}"
    assert snapshot(world) == before, "something on disk changed"
    if case.where != "worker":  # refused before launch: not even a job file in a new output folder
        assert not (world.parent / "fresh-hub").exists()
    if case.where != "worker":
        assert "Traceback" not in result.stdout
    assert not Path("/tmp/tx-pwned").exists()


@pytest.mark.train
def test_empty_rows_are_skipped_with_a_count(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in _head(SUMMARIZATION_DATA / "train.jsonl", 12).splitlines()]
    rows[3]["summary"] = "   "
    rows[7]["document"] = ""
    with open(tmp_path / "train.jsonl", "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r) + "\n" for r in rows)
    result = run_tx("run", "summarization", "--model_name_or_path", "tx-builtin:t5-tiny-summarization-v1",
                    "--train_file", str(tmp_path / "train.jsonl"), "--do_train", "--max_steps", "1",
                    "--per_device_train_batch_size", "4", "--report_to", "none", "--output_dir", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "tx: skipped 2 of 12 rows of the train split with an empty source or target text" in result.stdout


def test_no_output_dir_writes_where_the_trainer_would(world: Path) -> None:
    """No --output_dir with one's own data: transformers' default (./trainer_output), said in a note
    (it was `tx: internal error: KeyError: 'output_dir'`)."""
    before = snapshot(world)
    result = run_inprocess(("run", "summarization", "--model_name_or_path", "tx-builtin:t5-tiny-summarization-v1",
                            "--train_file", "data/train.jsonl", "--do_train", "--dry-run"), world)
    assert result.returncode == 0, result.stderr
    assert "tx: note: no --output_dir given: writing to ./trainer_output" in result.stderr
    assert f"output_dir: {world / 'trainer_output'}" in result.stdout
    assert snapshot(world) == before
