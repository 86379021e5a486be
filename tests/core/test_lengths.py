"""core/lengths.py: evaluation and prediction run over length-sorted rows, yet predictions, labels
and metrics come back in dataset order (checked with a real tiny T5 and the Trainer class tx
builds, against generate() called row by row); length-grouped training batches come in random
order."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tx.core.lengths import GroupedSampler, grouped_indices, length_aware, length_order, restore

WORDS = "harbour council river station school market bridge garden library tower museum field".split()


def texts(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.choice([2, 3, 5, 9, 17, 30]))) for _ in range(n)]


def test_length_order_longest_first_ties_in_dataset_order() -> None:
    import datasets

    ds = datasets.Dataset.from_dict({"input_ids": [[1], [1, 2, 3], [1, 2], [4, 5, 6], [7]]})
    assert length_order(ds) == [1, 3, 2, 0, 4]
    # an indices mapping (select) is honoured
    assert length_order(ds.select([4, 0, 3])) == [2, 0, 1]
    assert length_order(datasets.Dataset.from_dict({"input_ids": [[1, 2], [1]]})) is None  # already sorted
    assert length_order(datasets.Dataset.from_dict({"text": ["a", "bb"]})) is None
    assert length_order([[1], [1, 2]]) is None


def test_restore_puts_rows_back() -> None:
    import numpy as np

    order = [2, 0, 1]
    sorted_rows = np.array([[20, 21], [0, 1], [10, 11]])  # rows 2, 0, 1 of the dataset
    assert restore(sorted_rows, order).tolist() == [[0, 1], [10, 11], [20, 21]]
    pair = restore((sorted_rows, np.array([2.0, 0.0, 1.0])), order)
    assert isinstance(pair, tuple) and pair[1].tolist() == [0.0, 1.0, 2.0]
    assert restore(None, order) is None
    assert restore(np.array([1, 2]), order).tolist() == [1, 2]  # another length: untouched


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, Any]:
    """A randomly initialised tiny T5 (initialised large enough that its outputs differ from row
    to row) and tokenized rows whose lengths are in no order."""
    import datasets
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    from tx.plugins.common import tiny_tokenizer

    sources, targets = texts(21), texts(21, seed=4)
    tokenizer = tiny_tokenizer(sources + targets, 120, {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
                               max_length=64)
    torch.manual_seed(0)
    model = T5ForConditionalGeneration(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_ff=64, d_kv=8, num_layers=1, num_decoder_layers=1, num_heads=2,
        dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id, initializer_factor=5.0))  # larger weights: outputs vary by row
    enc = tokenizer(sources, truncation=True, max_length=64)
    enc["labels"] = tokenizer(text_target=targets, truncation=True, max_length=16)["input_ids"]
    ds = datasets.Dataset.from_dict(dict(enc))
    assert length_order(ds) is not None  # the rows really are out of length order
    return model, tokenizer, ds


def trainer_for(model: Any, tokenizer: Any, ds: Any, out: Path, seen: list[Any], **extra: Any) -> Any:
    from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

    def compute(pred: Any) -> dict[str, float]:
        seen.append(pred)
        return {"first_label": float(pred.label_ids[0][0])}

    args = Seq2SeqTrainingArguments(output_dir=str(out), per_device_eval_batch_size=4, predict_with_generate=True,
                                    generation_max_length=12, report_to="none", use_cpu=True, **extra)
    cls = length_aware(Seq2SeqTrainer)
    return cls(model=model, args=args, eval_dataset=ds, processing_class=tokenizer, compute_metrics=compute,
               data_collator=DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100))


def tokens(row: Any, pad: int) -> list[int]:
    return [int(t) for t in row if t not in (pad, -100)]


@pytest.mark.parametrize("strategy", ["random", "group_by_length"])
def test_predictions_and_metrics_in_dataset_order(tiny: tuple[Any, Any, Any], tmp_path: Path, strategy: str) -> None:
    import torch

    model, tokenizer, ds = tiny
    seen: list[Any] = []
    trainer = trainer_for(model, tokenizer, ds, tmp_path, seen, train_sampling_strategy=strategy)
    output = trainer.predict(ds, metric_key_prefix="predict")

    pad = tokenizer.pad_token_id
    model.eval()
    expected = []
    with torch.no_grad():
        for ids in ds["input_ids"]:
            expected.append(tokens(model.generate(input_ids=torch.tensor([ids]), max_length=12)[0], pad))
    assert len({tuple(e) for e in expected}) > 8, "the model must answer differently per row for this test"
    got = [tokens(row, pad) for row in output.predictions]
    assert got == expected
    assert [tokens(row, pad) for row in output.label_ids] == [tokens(r, pad) for r in ds["labels"]]
    # compute_metrics saw the rows in dataset order as well
    assert [tokens(row, pad) for row in seen[-1].label_ids] == [tokens(r, pad) for r in ds["labels"]]
    assert [tokens(row, pad) for row in seen[-1].predictions] == expected
    assert output.metrics["predict_first_label"] == float(ds["labels"][0][0])

    metrics = trainer.evaluate()
    assert metrics["eval_first_label"] == float(ds["labels"][0][0])
    assert [tokens(row, pad) for row in seen[-1].predictions] == expected


def test_the_trainer_tx_runs_sorts(tiny: tuple[Any, Any, Any], tmp_path: Path) -> None:
    """The batches really are length-sorted: each batch the collator builds is pad-free but for
    the few rows of equal length bands, i.e. fewer padded tokens than in dataset order."""
    model, tokenizer, ds = tiny
    trainer = trainer_for(model, tokenizer, ds, tmp_path, [])
    rows, order = trainer._tx_sorted(ds)
    lengths = [len(x) for x in rows["input_ids"]]
    assert lengths == sorted(lengths, reverse=True)
    assert sorted(order) == list(range(len(ds)))

    def padded(batches: list[list[int]]) -> int:
        return sum(max(b) * len(b) for b in batches)

    in_file_order = [len(x) for x in ds["input_ids"]]
    chunks = lambda xs: [xs[i:i + 4] for i in range(0, len(xs), 4)]  # noqa: E731
    assert padded(chunks(lengths)) < padded(chunks(in_file_order))


def test_grouped_indices_similar_lengths_random_batch_order() -> None:
    import torch

    rng = random.Random(0)
    lengths = [rng.randint(5, 500) for _ in range(1003)]
    order = grouped_indices(lengths, 8, generator=torch.Generator().manual_seed(1))
    assert sorted(order) == list(range(1003))  # every row once
    batches = [order[k:k + 8] for k in range(0, len(order), 8)]
    assert len(batches[-1]) == 1003 % 8  # the short batch is last
    padded = sum(8 * max(lengths[i] for i in b) for b in batches[:-1])
    random_padded = sum(8 * max(lengths[i] for i in range(k, k + 8)) for k in range(0, 1000, 8))
    assert padded < 0.7 * random_padded  # grouped: far less padding than random batches
    assert max(lengths[i] for i in batches[0]) == max(lengths)  # out of memory at step 1, if at all
    # the batch order is shuffled: transformers' order would make every run of 50 batches go
    # from long to short; count how often a batch is longer than the one before it
    tops = [max(lengths[i] for i in b) for b in batches[1:-1]]
    rises = sum(b > a for a, b in zip(tops, tops[1:]))
    assert 0.3 < rises / (len(tops) - 1) < 0.7
    again = grouped_indices(lengths, 8, generator=torch.Generator().manual_seed(1))
    assert again == order and grouped_indices(lengths, 8, generator=torch.Generator().manual_seed(2)) != order


def test_group_by_length_trains_with_the_shuffled_sampler(tiny: tuple[Any, Any, Any], tmp_path: Path) -> None:
    model, tokenizer, ds = tiny
    trainer = trainer_for(model, tokenizer, ds, tmp_path, [], train_sampling_strategy="group_by_length",
                          per_device_train_batch_size=4)
    sampler = trainer._get_train_sampler(ds)
    assert isinstance(sampler, GroupedSampler)
    assert sampler.lengths == [len(x) for x in ds["input_ids"]] and sampler.batch_size == 4
    first = list(sampler)
    assert list(sampler) == first  # the same epoch gives the same order (all ranks, and a resumed run)
    sampler.set_epoch(1)
    assert sorted(sampler) == sorted(first) and list(sampler) != first  # a new order each epoch
    plain = trainer_for(model, tokenizer, ds, tmp_path, [], per_device_train_batch_size=4)
    assert not isinstance(plain._get_train_sampler(ds), GroupedSampler)
