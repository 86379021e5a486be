"""core/lengths.py: evaluation and prediction run over length-sorted rows, yet predictions, labels
and metrics come back in dataset order (checked with a real tiny T5 and the Trainer class tx
builds, against generate() called row by row); under several processes each row is evaluated
once and put back by position (the pure shard/assemble/loss functions here; the real
multi-process runs in tests/launchers/test_equivalence.py); length-grouped training batches come
in random order."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from tx.core.lengths import (
    GroupedSampler,
    Shard,
    assemble,
    grouped_indices,
    length_aware,
    length_order,
    mean_loss,
    real_part,
    row_losses,
    shard_rows,
)

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


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("batch", [1, 4, 16])
def test_shards_run_every_row_once_in_the_batches_of_one_process(world: int, batch: int) -> None:
    for n in [1, 2, 3, 5, 21, 25, 50, 64]:
        shards = [shard_rows(n, batch, world, rank) for rank in range(world)]
        # every process runs the same number of steps (the per-step collectives need it)
        assert len({len(s.batches) for s in shards}) == 1
        steps = len(shards[0].batches)
        assert steps == -(-(-(-n // batch)) // world)  # ceil(ceil(n / batch) / world)
        # the real rows of all processes are every row exactly once...
        rows = [r for s in shards for r in s.rows]
        assert sorted(rows) == list(range(n))
        # ...in exactly the batches one process would run (same padding, so the same numbers)
        local = shard_rows(n, batch, 1, 0)
        assert not local.stand_in and local.rows == list(range(n))
        in_step_order = [s.real_batches[k] for k in range(steps) for s in shards if k < len(s.real_batches)]
        assert in_step_order == list(local.batches)
        for s in shards:
            if s.stand_in:  # a one-row stand-in, at the last step only; its result is dropped
                assert s.batches[-1] == (n - 1,) and len(s.indices) == len(s.rows) + 1
            assert all(len(b) == batch for b in s.real_batches[:-1])


def test_shards_of_the_issue_case() -> None:
    """50 rows, batch 16, 2 processes: transformers ran 64 rows (the last batch filled up with rows
    0-13); tx runs 50 and one stand-in."""
    first, second = shard_rows(50, 16, 2, 0), shard_rows(50, 16, 2, 1)
    assert first == Shard((tuple(range(0, 16)), tuple(range(32, 48))))
    assert second == Shard((tuple(range(16, 32)), (48, 49)))
    seven = [shard_rows(25, 4, 2, rank) for rank in (0, 1)]  # 7 batches: process 1 gets a stand-in
    assert seven[0].batches[-1] == (24,) and not seven[0].stand_in
    assert seven[1].stand_in and seven[1].batches[-1] == (24,) and seven[1].rows[-1] == 23
    with pytest.raises(ValueError):
        shard_rows(0, 4, 2, 0)
    with pytest.raises(ValueError):
        shard_rows(5, 4, 2, 2)


def test_real_part_drops_the_stand_in_and_refuses_an_unplanned_count() -> None:
    import numpy as np

    shard = shard_rows(25, 4, 2, 1)  # rows 4-7, 12-15, 20-23 and the stand-in 24
    preds = np.arange(13 * 2).reshape(13, 2)
    assert real_part(preds, shard).tolist() == preds[:12].tolist()
    pair = real_part((preds, np.arange(13)), shard)
    assert isinstance(pair, tuple) and pair[1].tolist() == list(range(12))
    assert real_part(None, shard) is None
    with pytest.raises(ValueError, match="16"):  # e.g. accelerate's filled-up batches: never guessed away
        real_part(np.zeros((16, 2)), shard)


def test_assemble_puts_every_row_back_by_position() -> None:
    import numpy as np

    order = [3, 0, 4, 1, 2]  # sorted position p is dataset row order[p]
    # process 0 ran positions 0, 1 and 4; process 1 positions 2, 3 (its results are wider)
    zero = np.array([[30, 31], [0, 1], [20, 21]])
    one = np.array([[40, 41, 42], [10, 11, 12]])
    out = assemble([([0, 1, 4], zero), ([2, 3], one)], 5, order)
    assert out.tolist() == [[0, 1, -100], [10, 11, 12], [20, 21, -100], [30, 31, -100], [40, 41, 42]]
    # tuples are assembled member by member; None stays None
    pair = assemble([([0, 1, 4], (zero, np.array([3.0, 0.0, 2.0]))), ([2, 3], (one, np.array([4.0, 1.0])))], 5, order)
    assert pair[1].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert assemble([([0], None), ([1], None)], 2) is None
    # without an order, positions are dataset rows; a row two processes both ran is taken once
    assert assemble([([1, 0], np.array([1, 0])), ([0], np.array([0]))], 2).tolist() == [0, 1]
    # a missing row, or results that do not match their positions, are errors, never silent
    with pytest.raises(ValueError, match="missing positions \\[2\\]"):
        assemble([([0, 1], np.array([0, 1]))], 3)
    with pytest.raises(ValueError):
        assemble([([0, 1], np.array([0, 1, 0]))], 2)


def test_loss_is_the_mean_over_rows() -> None:
    import math

    import numpy as np

    # batches of 4, 4 and 1 rows: transformers weighs the last as 4 rows (2.0 here); tx as 1
    batches = [((0, 1, 2, 3), 1.0), ((4, 5, 6, 7), 1.0), ((8,), 10.0)]
    assert mean_loss(batches) == pytest.approx(18.0 / 9)
    assert mean_loss(batches + [((8,), 10.0)]) == pytest.approx(18.0 / 9)  # a batch run twice counts once
    assert mean_loss(batches + [((9, 10), math.nan)]) == pytest.approx(18.0 / 9)  # logging_nan_inf_filter
    assert math.isnan(mean_loss(batches + [((9, 10), math.nan)], drop_non_finite=False))
    assert mean_loss([((0,), None)]) is None and mean_loss([]) is None
    per_row = row_losses([((0, 1), 1.0), ((2,), 3.0)], 3, order=[2, 0, 1])
    assert per_row.tolist() == [1.0, 3.0, 1.0] and per_row.dtype == np.float32


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


def test_the_loss_counts_every_row_once(tiny: tuple[Any, Any, Any], tmp_path: Path) -> None:
    """predict_loss is the mean over the rows: each batch's loss weighs as many rows as it has.
    21 rows in batches of 4 leave one row in the last batch; transformers counts it as 4 rows."""
    import torch

    model, tokenizer, ds = tiny
    trainer = trainer_for(model, tokenizer, ds, tmp_path, [])
    output = trainer.predict(ds, metric_key_prefix="predict")
    rows, _ = trainer._tx_sorted(ds)
    model.eval()
    batch_losses = []
    with torch.no_grad():
        for k in range(0, len(rows), 4):
            batch = trainer.data_collator([rows[i] for i in range(k, min(k + 4, len(rows)))])
            batch_losses.append((float(model(**batch).loss), len(batch["input_ids"])))
    assert [n for _, n in batch_losses] == [4, 4, 4, 4, 4, 1]
    per_row = sum(loss * n for loss, n in batch_losses) / len(rows)
    per_batch = sum(loss for loss, _ in batch_losses) / len(batch_losses)  # transformers' weighting
    assert abs(per_row - per_batch) > 1e-3  # the two differ here, so the test can tell them apart
    assert output.metrics["predict_loss"] == pytest.approx(per_row, rel=1e-5)


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
