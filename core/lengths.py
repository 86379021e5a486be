"""Batches of rows of similar length: less padding, same results.

A batch costs what its longest row costs: the collator pads every row to it, and generation
runs until the longest output of the batch ends. tx's Trainer classes (:func:`length_aware`)
use that in two places; bench/run.py measures both (README, "Performance").

**Evaluation and prediction** run over the rows sorted by input length (longest first, so a
batch that does not fit fails at once) and hand everything back in dataset order: the Trainer
runs on ``dataset.select(order)``, and before anything sees the results (``compute_metrics``, the
returned PredictionOutput, hence generated_predictions.txt and predict_results.txt) they are put
back. Metrics and predictions are those of an evaluation in file order.

**Training with** ``train_sampling_strategy="group_by_length"`` uses :func:`grouped_indices`
instead of transformers' ``LengthGroupedSampler``: both cut a random permutation into
mega-batches of 50 batches and sort each by length, but transformers then trains on the batches
in that sorted order (every 50 steps a sweep from the longest rows to the shortest), while tx
shuffles the batches. With transformers' order ROUGE-L came out lower than with random
batches; with the shuffled order it did not (measured, README "Performance").
With group_by_length transformers would also shuffle the *evaluation* rows into length groups in
an order nobody records (its prediction files came out shuffled); tx keeps the sorted order.

No heavy import at module level.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Sequence

LENGTH_COLUMN = "input_ids"
#: batches per mega-batch (transformers' LengthGroupedSampler uses the same)
MEGA_BATCH = 50
_CLASSES: dict[type, type] = {}


def row_lengths(dataset: Any, column: str = LENGTH_COLUMN) -> list[int] | None:
    """Length of ``column`` in every row of a ``datasets.Dataset`` (read through Arrow, without
    building Python lists of tokens); None when it is not one or lacks the column."""
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a dependency
        return None
    if not isinstance(dataset, datasets.Dataset) or column not in dataset.column_names:
        return None
    import pyarrow.compute as pc

    values = dataset.with_format("arrow")[:][column]  # honours an indices mapping (select)
    return [int(x) for x in pc.list_value_length(values).fill_null(0).to_pylist()]


def length_order(dataset: Any, column: str = LENGTH_COLUMN) -> list[int] | None:
    """Row indices sorted by the length of ``column``, longest first (ties keep dataset order);
    None when the rows cannot be sorted or already are."""
    lengths = row_lengths(dataset, column)
    if lengths is None or len(lengths) < 2:
        return None
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])  # stable
    return None if order == list(range(len(lengths))) else order


def restore(value: Any, order: Sequence[int]) -> Any:
    """``value`` (an array whose first axis follows ``order``, or a tuple/list of them) with its
    rows put back in dataset order: row k of the input is row ``order[k]`` of the output.
    Anything else (None, a scalar, an array of another length) is returned as it is."""
    import numpy as np

    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return type(value)(restore(v, order) for v in value)
    if isinstance(value, np.ndarray) and value.ndim >= 1 and value.shape[0] == len(order):
        out = np.empty_like(value)
        out[np.asarray(order)] = value
        return out
    return value


def grouped_indices(lengths: Sequence[int], batch_size: int, generator: Any = None) -> list[int]:
    """A training order whose consecutive ``batch_size`` slices hold rows of similar length, the
    batches in random order: a random permutation, cut into mega-batches of ``MEGA_BATCH``
    batches (fewer for small sets, as transformers does), each sorted by length and cut into
    batches; the batches are shuffled, the one holding the longest row first (an out-of-memory
    error shows at step 1) and a short last batch stays last."""
    import torch

    n = len(lengths)
    mult = max(1, min(n // (batch_size * 4), MEGA_BATCH))
    perm = torch.randperm(n, generator=generator).tolist()
    mega = mult * batch_size
    batches: list[list[int]] = []
    for start in range(0, n, mega):
        rows = sorted(perm[start:start + mega], key=lambda i: -lengths[i])
        batches.extend(rows[k:k + batch_size] for k in range(0, len(rows), batch_size))
    tail = [batches.pop()] if batches and len(batches[-1]) < batch_size else []
    shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    if shuffled:
        longest = max(range(len(shuffled)), key=lambda i: lengths[shuffled[i][0]])
        shuffled[0], shuffled[longest] = shuffled[longest], shuffled[0]
    return [i for batch in shuffled + tail for i in batch]


class GroupedSampler:
    """A torch Sampler over :func:`grouped_indices`, drawn from ``seed + epoch`` (the Trainer calls
    ``set_epoch``): every process of a multi-process run gets the same order, and a run resumed
    from a checkpoint the order the interrupted run had."""

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 0) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        import torch

        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(grouped_indices(self.lengths, self.batch_size, generator))


def length_aware(trainer_cls: type) -> type:
    """``trainer_cls`` (a Trainer or Seq2SeqTrainer subclass) with the length handling of this
    module (see its docstring)."""
    if trainer_cls not in _CLASSES:
        _CLASSES[trainer_cls] = type(trainer_cls.__name__, (LengthAware, trainer_cls), {})
    return _CLASSES[trainer_cls]


class LengthAware:
    """The mixin of :func:`length_aware` (put before a transformers Trainer class)."""

    # -- training ------------------------------------------------------------------------------
    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        args = self.args  # type: ignore[attr-defined]
        dataset = self.train_dataset if train_dataset is None else train_dataset  # type: ignore[attr-defined]
        if args.train_sampling_strategy == "group_by_length":
            lengths = None
            if args.length_column_name in getattr(dataset, "column_names", ()):
                lengths = [int(x) for x in dataset[args.length_column_name]]
            else:
                lengths = row_lengths(dataset)
            if lengths is not None:
                seed = args.data_seed if args.data_seed is not None else args.seed
                return GroupedSampler(lengths, args.train_batch_size * args.gradient_accumulation_steps, seed)
        return super()._get_train_sampler(train_dataset)  # type: ignore[misc]

    # -- evaluation and prediction -------------------------------------------------------------
    def _tx_sorted(self, dataset: Any) -> tuple[Any, list[int] | None]:
        cache = self.__dict__.setdefault("_tx_sorted_cache", {})
        key = getattr(dataset, "_fingerprint", None) or id(dataset)
        if key not in cache:
            order = length_order(dataset)
            cache[key] = (dataset.select(order) if order else dataset, order)
        return cache[key]

    @contextmanager
    def _tx_metrics_in_dataset_order(self, order: list[int] | None) -> Iterator[None]:
        original = getattr(self, "compute_metrics", None)
        if order is None or original is None or self.args.batch_eval_metrics:  # type: ignore[attr-defined]
            yield
            return
        from transformers import EvalPrediction

        def compute(pred: Any, **kwargs: Any) -> Any:
            restored = EvalPrediction(predictions=restore(pred.predictions, order),
                                      label_ids=restore(pred.label_ids, order),
                                      inputs=restore(getattr(pred, "inputs", None), order),
                                      losses=restore(getattr(pred, "losses", None), order))
            return original(restored, **kwargs)

        self.compute_metrics = compute
        try:
            yield
        finally:
            self.compute_metrics = original

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval",
                 **kwargs: Any) -> Any:
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset  # type: ignore[attr-defined]
        if dataset is None or isinstance(dataset, (str, dict)):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix, **kwargs)  # type: ignore[misc]
        rows, order = self._tx_sorted(dataset)
        with self._tx_metrics_in_dataset_order(order):
            return super().evaluate(rows, ignore_keys, metric_key_prefix, **kwargs)  # type: ignore[misc]

    def predict(self, test_dataset: Any, ignore_keys: Any = None, metric_key_prefix: str = "test",
                **kwargs: Any) -> Any:
        from transformers.trainer_utils import PredictionOutput

        rows, order = self._tx_sorted(test_dataset)
        with self._tx_metrics_in_dataset_order(order):
            output = super().predict(rows, ignore_keys, metric_key_prefix, **kwargs)  # type: ignore[misc]
        if order is None:
            return output
        return PredictionOutput(predictions=restore(output.predictions, order),
                                label_ids=restore(output.label_ids, order), metrics=output.metrics)

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        # group_by_length would shuffle the evaluation rows into length groups (see module doc)
        if getattr(self.args, "train_sampling_strategy", None) == "group_by_length":  # type: ignore[attr-defined]
            from torch.utils.data import SequentialSampler

            if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
                return None
            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None  # type: ignore[attr-defined]
        return super()._get_eval_sampler(eval_dataset)  # type: ignore[misc]
