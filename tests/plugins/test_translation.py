"""The translation task: WMT and one-column-per-language data, language-key errors, sacreBLEU
offline, mBART-style language codes and forced BOS applied as the HF script does, and that
training really learns (BLEU clearly above the untrained model's)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import assert_one_line_error, read_json
from tx.core import hfargs
from tx.core.errors import ConfigError, DataError
from tx.core.task import RunContext, TaskParts
from tx.plugins.translation import TranslationTask, data_key, describe_keys, first_row

TASK = TranslationTask()
PAIRS = [
    ("the cat sleeps", "pisica doarme"),
    ("the dog runs", "cainele alearga"),
    ("a bird sings", "o pasare canta"),
    ("the cat runs", "pisica alearga"),
]


def wmt_rows(pairs: list[tuple[str, str]] = PAIRS, src: str = "en", tgt: str = "ro") -> list[dict[str, Any]]:
    return [{"translation": {src: s, tgt: t}} for s, t in pairs]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def build(*argv: str) -> TaskParts:
    """Run the task's worker-side build in this process (model, tokenizer, tokenized splits)."""
    parsed = hfargs.parse(TASK, list(argv))
    return TASK.build(RunContext(args=parsed.run_args, job=None))  # type: ignore[arg-type]


# -- pure helpers ----------------------------------------------------------------------------------
def test_data_key_uses_the_code_or_its_language_part() -> None:
    assert data_key("en", ["en", "de"]) == "en"
    assert data_key("en_XX", ["en", "ro"]) == "en"  # mBART code, WMT data key (as HF splits on '_')
    assert data_key("en_XX", ["en_XX", "ro_RO"]) == "en_XX"  # data keyed by the full code
    assert describe_keys({"en": "a", "fr": "b", "de": None}) == "en, fr"


def test_first_row_reads_only_json_lines(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", wmt_rows())
    assert first_row(str(path)) == {"translation": {"en": "the cat sleeps", "ro": "pisica doarme"}}
    (tmp_path / "d.csv").write_text("en,ro\na,b\n")
    assert first_row(str(tmp_path / "d.csv")) is None


def test_sacrebleu_module_loads_offline_from_the_plugin() -> None:
    import evaluate

    metric = evaluate.load(str(TranslationTask.metric_dir))
    same = metric.compute(predictions=["the cat sat on the mat"], references=[["the cat sat on the mat"]])
    assert same["score"] == pytest.approx(100.0)
    none = metric.compute(predictions=["a b c d"], references=[["w x y z"]])
    assert none["score"] == pytest.approx(0.0)
    two_refs = metric.compute(predictions=["the cat sat on the mat"],
                              references=[["a dog stood", "the cat sat on the mat"]])
    assert two_refs["score"] == pytest.approx(100.0)
    assert TASK.score(metric, *TASK.postprocess([" the cat sat on the mat "], ["the cat sat on the mat"])) == \
        {"bleu": pytest.approx(100.0)}


# -- the CLI: listing, help, errors before launch --------------------------------------------------
def test_listed_with_a_description(tx) -> None:
    result = tx("list")
    assert result.returncode == 0, result.stderr
    line = next(x for x in result.stdout.splitlines() if x.strip().startswith("translation"))
    assert "sacreBLEU" in line


def test_help_lists_the_task_arguments_apart_from_training(tx) -> None:
    result = tx("run", "translation", "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    data = text[text.index("data arguments:"):text.index("tx arguments:")]
    for flag in ("--source_lang", "--target_lang", "--source_prefix", "--forced_bos_token", "--max_source_length",
                 "--num_beams", "--ignore_pad_token_for_loss", "--max_predict_samples"):
        assert flag in data, flag
    training = text[text.index("training arguments"):]
    assert "--learning_rate" in training and "--source_lang" not in training
    assert "--per_device_train_batch_size" not in data


def test_builtin_default_is_english_to_xx(tx, tmp_path: Path) -> None:
    result = tx("run", "translation", "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "source_lang: en" in result.stdout and "target_lang: xx" in result.stdout
    assert "model_name_or_path: tx-builtin:t5-tiny-translation-v1" in result.stdout


def test_missing_language_key_is_one_line_naming_the_row_keys(tx, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", wmt_rows(src="en", tgt="fr"))
    result = tx("run", "translation", "--model_name_or_path", "google-t5/t5-small", "--train_file", str(data),
                "--do_train", "--source_lang", "en", "--target_lang", "de", "--output_dir", str(tmp_path / "o"))
    assert_one_line_error(result, "line 1 of", "no 'de' text", "its keys: en, fr", "--target_lang")
    assert not (tmp_path / "o").exists()


def test_languages_are_required_with_own_data(tx, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", wmt_rows())
    result = tx("run", "translation", "--model_name_or_path", "google-t5/t5-small", "--train_file", str(data),
                "--do_train", "--output_dir", str(tmp_path / "o"))
    assert_one_line_error(result, "--source_lang and --target_lang", "have the keys en, ro")


def resolve_error(tmp_path: Path, *argv: str) -> str:
    from tx.core import plugins, run

    flags = run.split_tx_flags(["translation", "--output_dir", str(tmp_path / "o"), *argv])
    with pytest.raises((ConfigError, DataError)) as info:
        run.resolve(plugins.load(), flags, cwd=tmp_path)
    return info.value.one_line()


def test_csv_without_a_language_column_names_the_columns(tmp_path: Path) -> None:
    data = tmp_path / "train.csv"
    data.write_text("en,xx\nThe cat.,Mo pletrainar.\n")
    message = resolve_error(tmp_path, "--model_name_or_path", "google-t5/t5-small", "--train_file", str(data),
                            "--do_train", "--source_lang", "en", "--target_lang", "de")
    assert "neither a 'translation' column nor a 'de' column (its columns: en, xx)" in message


# -- the worker side: formats, keys in every row, multilingual tokenizers --------------------------
def test_wmt_jsonl_and_one_column_per_language_csv_give_the_same_pairs(tmp_path: Path) -> None:
    """The shipped sample_columns.csv is the first 50 validation rows, one column per language."""
    shipped = TASK.data_dir
    common = ["--model_name_or_path", "tx-builtin:t5-tiny-translation-v1", "--source_lang", "en",
              "--target_lang", "xx", "--do_train", "--max_train_samples", "5", "--output_dir", str(tmp_path / "o")]
    from_csv = build("--train_file", str(shipped / "sample_columns.csv"), *common)
    from_wmt = build("--train_file", str(shipped / "validation.jsonl"), *common)
    tok = from_csv.tokenizer
    with open(shipped / "sample_columns.csv", encoding="utf-8", newline="") as fh:
        first = next(csv.DictReader(fh))
    row = from_csv.train_dataset[0]
    assert tok.decode(row["input_ids"], skip_special_tokens=True) == first["en"]
    assert tok.decode(row["labels"], skip_special_tokens=True) == first["xx"]
    assert from_csv.train_dataset[:5] == from_wmt.train_dataset[:5]
    # the reverse direction reads the other side of the same rows
    back = build("--train_file", str(shipped / "sample_columns.csv"), *common, "--source_lang", "xx",
                 "--target_lang", "en")
    assert tok.decode(back.train_dataset[0]["input_ids"], skip_special_tokens=True) == first["xx"]


@pytest.mark.parametrize("layout", ["other keys", "null value", "empty csv cell"])
def test_a_row_lacking_a_language_deep_in_the_file_is_named(tmp_path: Path, layout: str) -> None:
    rows = wmt_rows(src="en", tgt="de")
    if layout == "other keys":  # rows with differing keys: datasets loads them as JSON values
        rows.insert(2, {"translation": {"en": "the fish swims", "fr": "le poisson nage"}})
        data, keys = write_jsonl(tmp_path / "train.jsonl", rows), "en, fr"
    elif layout == "null value":  # one key set: an Arrow struct column with a null
        rows.insert(2, {"translation": {"en": "the fish swims", "de": None}})
        data, keys = write_jsonl(tmp_path / "train.jsonl", rows), "en"
    else:
        data, keys = tmp_path / "train.csv", "en"
        data.write_text("en,de\nthe cat,die Katze\nthe dog,der Hund\nthe fish,\n")
    with pytest.raises(DataError) as info:
        build("--model_name_or_path", "tx-builtin:t5-tiny-translation-v1", "--train_file", str(data),
              "--source_lang", "en", "--target_lang", "de", "--do_train", "--output_dir", str(tmp_path / "o"))
    assert f"row 3 of the train split has no 'de' text (its keys: {keys})" in info.value.one_line()


def make_mbart(out: Path) -> Path:
    """A tiny mBART built here: an MBartTokenizer (with its en_XX/ro_RO... language codes) over
    a Unigram vocabulary trained on the test pairs, and a 1-layer model. Nothing from the Hub."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import MBartConfig, MBartForConditionalGeneration, MBartTokenizer

    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=80, special_tokens=["<s>", "<pad>", "</s>", "<unk>"],
                                      unk_token="<unk>", show_progress=False)
    unigram.train_from_iterator([text for pair in PAIRS for text in pair] * 20, trainer=trainer)
    vocab = [(piece, score) for piece, score in json.loads(unigram.to_str())["model"]["vocab"]]
    tokenizer = MBartTokenizer(vocab=vocab)
    config = MBartConfig(vocab_size=len(tokenizer), d_model=16, encoder_layers=1, decoder_layers=1,
                         encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                         decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=tokenizer.pad_token_id,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    assert config.decoder_start_token_id is None  # as for facebook/mbart-large-cc25: set from --target_lang
    MBartForConditionalGeneration(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def mbart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mbart(tmp_path_factory.mktemp("mbart") / "model")


def test_mbart_language_codes_and_forced_bos_as_hf_does(mbart: Path, tmp_path: Path) -> None:
    import torch

    data = write_jsonl(tmp_path / "train.jsonl", wmt_rows())
    parts = build("--model_name_or_path", str(mbart), "--train_file", str(data), "--validation_file", str(data),
                  "--source_lang", "en_XX", "--target_lang", "ro_RO", "--forced_bos_token", "ro_RO",
                  "--do_train", "--do_eval", "--predict_with_generate", "--output_dir", str(tmp_path / "o"))
    tok, model = parts.tokenizer, parts.model
    assert type(tok).__name__ == "MBartTokenizer" and (tok.src_lang, tok.tgt_lang) == ("en_XX", "ro_RO")
    en, ro = tok.lang_code_to_id["en_XX"], tok.lang_code_to_id["ro_RO"]
    row = parts.train_dataset[0]
    # sources end in </s> + source code, targets in </s> + target code (data keys en/ro from en_XX/ro_RO)
    assert row["input_ids"][-2:] == [tok.eos_token_id, en]
    assert row["labels"][-2:] == [tok.eos_token_id, ro]
    assert tok.decode(row["input_ids"], skip_special_tokens=True) == PAIRS[0][0]
    assert tok.decode(row["labels"], skip_special_tokens=True) == PAIRS[0][1]
    # decoding starts with the target code (the config had none) and the forced BOS follows it
    assert model.config.decoder_start_token_id == ro
    assert model.generation_config.forced_bos_token_id == ro
    out = model.generate(input_ids=torch.tensor([row["input_ids"]]), max_length=4, do_sample=False)
    assert out[0][:2].tolist() == [ro, ro]
    model.save_pretrained(tmp_path / "saved")  # transformers 5 refuses generation settings in config.json
    assert read_json(tmp_path / "saved" / "generation_config.json")["forced_bos_token_id"] == ro
    # without --forced_bos_token the HF script clears it
    parts = build("--model_name_or_path", str(mbart), "--train_file", str(data), "--source_lang", "en_XX",
                  "--target_lang", "ro_RO", "--do_train", "--output_dir", str(tmp_path / "o"))
    assert parts.model.generation_config.forced_bos_token_id is None


def test_unknown_language_code_lists_the_tokenizer_codes(mbart: Path, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", wmt_rows())
    with pytest.raises(ConfigError) as info:
        build("--model_name_or_path", str(mbart), "--train_file", str(data), "--source_lang", "en_XX",
              "--target_lang", "ro", "--do_train", "--output_dir", str(tmp_path / "o"))
    line = info.value.one_line()
    assert "--target_lang 'ro' is not a language code of the MBartTokenizer tokenizer" in line
    assert "ro_RO" in line or "ar_AR" in line


# -- real training ---------------------------------------------------------------------------------
@pytest.mark.train
def test_training_beats_the_untrained_model(tx, tmp_path: Path) -> None:
    """A shortened built-in default run (en -> xx, ~375 steps): BLEU on the same validation rows,
    generated the same way, before training (eval_on_start) and after."""
    out = tmp_path / "out"
    result = tx("run", "translation", "--output_dir", str(out), "--num_train_epochs", "1.5",
                "--lr_scheduler_type", "constant", "--eval_on_start", "--max_eval_samples", "64",
                "--max_predict_samples", "16", "--val_max_target_length", "32", "--save_strategy", "no",
                "--report_to", "none", "--disable_tqdm", "true", "--logging_steps", "50")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    history = read_json(out / "trainer_state.json")["log_history"]
    untrained = next(h for h in history if "eval_bleu" in h and h.get("step", 0) == 0)["eval_bleu"]
    results = read_json(out / "all_results.json")
    for key in ("train_loss", "eval_loss", "eval_bleu", "eval_gen_len", "predict_bleu", "predict_gen_len"):
        assert key in results, key
    assert results["eval_bleu"] > untrained + 2.5, (untrained, results["eval_bleu"])
    lines = (out / "generated_predictions.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 16
    card = (out / "README.md").read_text(encoding="utf-8")
    assert "translation" in card and "- en" in card and "- xx" in card
