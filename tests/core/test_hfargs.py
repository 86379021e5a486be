"""HF-style argument parsing: syntax, precedence, legacy flags, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tx.core import hfargs
from tx.core.errors import ConfigError
from tx.core.run import RunFlags, given_keys, split_tx_flags
from tx.plugins.summarization import SummarizationTask

TASK = SummarizationTask()
BASE = ["--model_name_or_path", "m", "--train_file", "t.json", "--output_dir", "o"]


def parse(*argv: str, base: dict | None = None) -> hfargs.ParsedArgs:
    return hfargs.parse(TASK, [*BASE, *argv], base=base)


def test_equals_and_space_forms_and_bare_bools() -> None:
    p = parse("--per_device_train_batch_size=4", "--learning_rate", "0.01", "--do_train", "--predict_with_generate")
    t = p.run_args.training
    assert t.per_device_train_batch_size == 4 and t.learning_rate == 0.01
    assert t.do_train is True and t.predict_with_generate is True
    assert p.values["per_device_train_batch_size"] == 4


def test_explicit_bool_values_and_no_prefix() -> None:
    p = parse("--do_train", "false", "--no_use_fast_tokenizer", "--no_ignore_pad_token_for_loss")
    assert p.run_args.training.do_train is False
    assert p.run_args.model.use_fast_tokenizer is False
    assert p.run_args.data.ignore_pad_token_for_loss is False


def test_unambiguous_prefix_like_the_hf_script() -> None:
    p = parse("--dataset_config", "3.0.0")
    assert p.run_args.data.dataset_config_name == "3.0.0"


def test_repeated_flag_last_wins() -> None:
    p = parse("--output_dir", "a", "--output_dir", "b")
    assert p.run_args.training.output_dir == "b"


def test_legacy_flags_keep_the_guide_meaning() -> None:
    p = parse("--overwrite_output_dir", "--push_to_hub_model_id", "my-model", "--evaluation_strategy", "steps",
              "--no_cuda", "--group_by_length")
    t = p.run_args.training
    assert p.run_args.tx.overwrite_output_dir is True
    assert t.hub_model_id == "my-model"
    assert str(t.eval_strategy.value if hasattr(t.eval_strategy, "value") else t.eval_strategy) == "steps"
    assert t.use_cpu is True
    assert t.train_sampling_strategy == "group_by_length"
    for legacy in ("push_to_hub_model_id", "evaluation_strategy", "no_cuda", "group_by_length"):
        assert legacy not in p.values


def test_precedence_defaults_then_config_then_cli() -> None:
    base = {"learning_rate": 0.5, "num_train_epochs": 7.0}
    p = parse("--learning_rate", "0.25", base=base)
    assert p.run_args.training.learning_rate == 0.25
    assert p.run_args.training.num_train_epochs == 7.0


def test_only_chosen_values_are_stored() -> None:
    p = parse("--seed", "42")
    assert set(p.values) == {"model_name_or_path", "train_file", "output_dir"}  # 42 is the default
    p = parse("--seed", "7")
    assert p.values["seed"] == 7


def test_secrets_are_taken_out() -> None:
    p = parse("--token", "hf_secret_value_123", "--hub_token", "hf_other")
    assert "token" not in p.values and "hub_token" not in p.values
    assert p.secrets == {"token": "hf_secret_value_123", "hub_token": "hf_other"}


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--learnig_rate", "1"], "did you mean --learning_rate"),
        (["--num_train_epochs", "abc"], "--num_train_epochs"),
        (["--per_device_train_batch_size=x"], "invalid int value"),
        (["stray"], "unexpected argument 'stray'"),
        (["--dataset", "x"], "ambiguous"),
    ],
)
def test_errors_name_the_flag(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(*argv)
    assert needle in info.value.one_line()


def test_missing_required_model() -> None:
    with pytest.raises(ConfigError) as info:
        hfargs.parse(TASK, ["--train_file", "x.json"], base={})
    assert "--model_name_or_path" in info.value.one_line()


def test_unknown_config_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse(base={"learnin_rate": 1})
    assert "did you mean learning_rate" in info.value.one_line()


def test_split_tx_flags_keeps_order_and_task() -> None:
    flags = split_tx_flags(["summarization", "--launcher=local", "--x", "1", "--dry-run", "--config", "c.yaml", "--y"])
    assert flags == RunFlags(task="summarization", launcher="local", config="c.yaml", dry_run=True, rest=["--x", "1", "--y"])
    assert split_tx_flags(["--from", "j.yaml"]).from_job == "j.yaml"
    assert split_tx_flags(["summarization", "args.json"]).config == "args.json"


def test_given_keys() -> None:
    assert given_keys(["--a=1", "--b", "2", "--no_c", "x"]) == {"a", "b", "no_c", "c"}


def test_config_file_errors(tmp_path: Path) -> None:
    from tx.core.configfile import load_config

    bad = tmp_path / "c.yaml"
    bad.write_text("a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert "line" in info.value.one_line() and "c.yaml" in info.value.one_line()
    bad_json = tmp_path / "c.json"
    bad_json.write_text('{"a": 1,\n "b": }')
    with pytest.raises(ConfigError) as info:
        load_config(bad_json)
    assert "line 2" in info.value.one_line()
    good = tmp_path / "g.json"
    good.write_text('{"--learning_rate": 0.1, "do_train": true}')
    assert load_config(good) == {"learning_rate": 0.1, "do_train": True}
