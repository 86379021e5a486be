"""Batches of rows of similar length: less padding, same results.

A batch costs what its longest row costs: the collator pads every row to it, and generation
runs until the longest output of the batch ends. tx's Trainer classes (:func:`length_aware`)
use that in two places; bench/run.py measures both (README, "Performance").

**Evaluation and prediction** run over the rows sorted by input length (longest first, so a
batch that does not fit fails at once) and hand everything back in dataset order: the Trainer
runs on ``dataset.select(order)``, and before anything sees the results (``compute_metrics``, the
returned PredictionOutput, hence generated_predictions.txt and predict_results.txt) they are put
back. Metrics and predictions are those of an evaluation in file order.

**Under several processes** tx shards the rows itself (:func:`shard_rows`): the sorted rows are
cut into the batches one process would run, batch k goes to process k % N, and a process without
a batch at the last step runs a one-row stand-in whose result is dropped. Each process keeps its
results; at the end they are gathered once with the positions they came from and put together
(:func:`assemble`), which fails loudly unless there is exactly one result per row. transformers
instead lets accelerate fill the last step up with duplicates of the first rows; Trainer drops
them again by count (``gather_for_metrics``), Seq2SeqTrainer keeps them (it gathers with plain
``gather``), so 50 rows became 64 predictions and the sorted order could not be restored. The
loss is the mean over the rows (:func:`mean_loss`): every batch counts with its row count, where
transformers counts a short last batch as a full one and, under N processes, its duplicates.
So the same model gives the same predictions, metrics and loss on 1 or N processes.

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
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Shard:
    """What one data-parallel process evaluates: ``batches`` of positions in the (sorted) rows, in
    the order it runs them. When ``stand_in`` is true the last batch is a one-row stand-in whose
    results are thrown away: it only keeps the processes in step (every process must run as many
    forward passes as the others, for DDP buffers, ZeRO-3 and the per-step collectives)."""

    batches: tuple[tuple[int, ...], ...]
    stand_in: bool = False

    @property
    def indices(self) -> list[int]:
        """Every position the process runs, stand-in included (what its sampler yields)."""
        return [i for batch in self.batches for i in batch]

    @property
    def real_batches(self) -> tuple[tuple[int, ...], ...]:
        return self.batches[:-1] if self.stand_in else self.batches

    @property
    def rows(self) -> list[int]:
        """The positions whose results count, in the order the process produces them."""
        return [i for batch in self.real_batches for i in batch]


def shard_rows(n: int, batch_size: int, world: int, rank: int) -> Shard:
    """The evaluation batches of process ``rank`` of ``world``: the rows are cut into consecutive
    batches of ``batch_size`` (the batches one process would run) and batch ``k`` goes to process
    ``k % world``. No row is run twice, so no duplicate has to be guessed away afterwards, and
    every batch holds the same rows as in a one-process run (the same padding, so the same
    numbers). A process left without a batch at the last step runs the last row (the shortest
    after sorting, so it widens nothing) as a stand-in."""
    if n < 1 or batch_size < 1 or world < 1 or not 0 <= rank < world:
        raise ValueError(f"cannot shard {n} rows in batches of {batch_size} for process {rank} of {world}")
    batches = [tuple(range(k, min(k + batch_size, n))) for k in range(0, n, batch_size)]
    steps = -(-len(batches) // world)
    mine = batches[rank::world]
    if len(mine) < steps:
        return Shard(tuple(mine) + ((n - 1,),), stand_in=True)
    return Shard(tuple(mine))


def real_part(value: Any, shard: Shard) -> Any:
    """``value`` (the results of one process: an array with a row per position of ``shard.indices``,
    or a tuple/list of them) without the stand-in rows. Raises ValueError when the row count is
    not the one planned: then it is not known which row is which."""
    if value is None:
        return None
    if isinstance(value, (tuple, list)):
        return type(value)(real_part(v, shard) for v in value)
    planned = len(shard.indices)
    if getattr(value, "ndim", 0) < 1 or value.shape[0] != planned:
        raise ValueError(f"a process returned {getattr(value, 'shape', None)} results for {planned} planned rows")
    return value[:len(shard.rows)]


def assemble(pieces: Sequence[tuple[Sequence[int], Any]], n: int, order: Sequence[int] | None = None,
             pad: int = -100) -> Any:
    """The results of all processes as one, in dataset order: ``pieces`` holds, per process, the
    positions its rows came from and the rows (an array, or a tuple/list of arrays). Position
    ``p`` is dataset row ``order[p]`` (``p`` without ``order``). Arrays whose later dimensions
    differ are padded with ``pad`` (as transformers does between batches). A position two
    processes both ran (tensor-parallel peers share their data) is taken once. Raises
    ValueError unless every one of the ``n`` rows is there: a wrong row count must never pass."""
    import numpy as np

    if not pieces or pieces[0][1] is None:
        return None
    first = pieces[0][1]
    if isinstance(first, (tuple, list)):
        return type(first)(assemble([(rows, value[k]) for rows, value in pieces], n, order, pad)
                           for k in range(len(first)))
    seen: set[int] = set()
    positions: list[int] = []
    parts: list[Any] = []
    for rows, value in pieces:
        value = np.asarray(value)
        if value.ndim < 1 or value.shape[0] != len(rows):
            raise ValueError(f"{value.shape} results for {len(rows)} rows")
        keep = [k for k, p in enumerate(rows) if p not in seen and not seen.add(p)]  # type: ignore[func-returns-value]
        positions.extend(rows[k] for k in keep)
        parts.append(value[keep])
    if sorted(positions) != list(range(n)):
        missing = sorted(set(range(n)) - set(positions))
        raise ValueError(f"{len(positions)} distinct rows for {n}; missing positions {missing[:10]}")
    shape = tuple(max(p.shape[d] for p in parts) for d in range(1, parts[0].ndim))
    dtype = np.result_type(*parts)
    out = np.full((n, *shape), pad, dtype=dtype)
    target = np.asarray([order[p] for p in positions] if order is not None else positions, dtype=np.int64)
    start = 0
    for part in parts:
        rows_here = target[start:start + part.shape[0]]
        out[(rows_here, *(slice(0, s) for s in part.shape[1:]))] = part
        start += part.shape[0]
    return out


def mean_loss(batches: Sequence[tuple[Sequence[int], float | None]], drop_non_finite: bool = True) -> float | None:
    """The evaluation loss as the mean over the rows: ``batches`` holds (positions, mean loss of
    that batch) from every process; each batch counts with its number of rows (transformers
    counts a short last batch as a full one, and under several processes also the duplicates
    that fill it up). A batch two processes both ran counts once. With ``drop_non_finite``
    (transformers' ``logging_nan_inf_filter``) NaN/inf batches are left out unless all are."""
    import math

    unique = {tuple(rows): loss for rows, loss in batches if loss is not None and rows}
    if not unique:
        return None
    items = list(unique.items())
    finite = [(rows, loss) for rows, loss in items if math.isfinite(loss)]
    if drop_non_finite and finite:
        items = finite
    total = sum(len(rows) for rows, _ in items)
    return sum(len(rows) * loss for rows, loss in items) / total


def row_losses(batches: Sequence[tuple[Sequence[int], float | None]], n: int,
               order: Sequence[int] | None = None) -> Any:
    """Per dataset row, the loss of the batch it was evaluated in (what ``compute_metrics`` gets
    as ``losses`` with ``--include_for_metrics loss``), in dataset order."""
    import numpy as np

    out = np.full((n,), np.nan, dtype=np.float32)
    for rows, loss in batches:
        if loss is not None and rows:
            out[np.asarray([order[p] for p in rows] if order is not None else list(rows))] = loss
    return out


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

    def _tx_exact(self, dataset: Any) -> bool:
        """Whether tx runs this evaluation itself (sorted rows, its own shards, see the module doc).
        Not for what transformers alone defines: rows without a length, dropped last batches,
        metrics per batch, unconcatenated batches, or batches that accelerate dispatches/splits."""
        import torch

        args, acc = self.args, self.accelerator  # type: ignore[attr-defined]
        if isinstance(dataset, torch.utils.data.IterableDataset) or not hasattr(dataset, "__len__"):
            return False
        if len(dataset) == 0 or args.dataloader_drop_last or args.batch_eval_metrics or not args.eval_do_concat_batches:
            return False
        if getattr(acc, "dispatch_batches", None) or getattr(acc, "split_batches", False):
            return False
        return acc.num_processes == 1 or acc.distributed_type != "XLA"  # gather_object has no XLA version

    @contextmanager
    def _tx_running(self, dataset: Any) -> Iterator[Any]:
        rows, order = self._tx_sorted(dataset)
        previous = self.__dict__.get("_tx_run")
        self._tx_run = _EvalRun(rows, order)
        try:
            yield rows
        finally:
            self._tx_run = previous

    def evaluate(self, eval_dataset: Any = None, ignore_keys: Any = None, metric_key_prefix: str = "eval",
                 **kwargs: Any) -> Any:
        dataset = self.eval_dataset if eval_dataset is None else eval_dataset  # type: ignore[attr-defined]
        if isinstance(dataset, str) and isinstance(self.eval_dataset, dict):  # type: ignore[attr-defined]
            dataset = self.eval_dataset[dataset]  # type: ignore[attr-defined]  # one of several named sets
        if dataset is None or isinstance(dataset, (str, dict)) or not self._tx_exact(dataset):
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix, **kwargs)  # type: ignore[misc]
        with self._tx_running(dataset) as rows:
            return super().evaluate(rows, ignore_keys, metric_key_prefix, **kwargs)  # type: ignore[misc]

    def predict(self, test_dataset: Any, ignore_keys: Any = None, metric_key_prefix: str = "test",
                **kwargs: Any) -> Any:
        if not self._tx_exact(test_dataset):
            return super().predict(test_dataset, ignore_keys, metric_key_prefix, **kwargs)  # type: ignore[misc]
        with self._tx_running(test_dataset) as rows:
            return super().predict(rows, ignore_keys, metric_key_prefix, **kwargs)  # type: ignore[misc]

    def _get_eval_sampler(self, eval_dataset: Any) -> Any:
        run = self.__dict__.get("_tx_run")
        if run is not None and hasattr(eval_dataset, "__len__") and len(eval_dataset) == run.n:
            return run.sampler
        # group_by_length would shuffle the evaluation rows into length groups (see module doc)
        if getattr(self.args, "train_sampling_strategy", None) == "group_by_length":  # type: ignore[attr-defined]
            from torch.utils.data import SequentialSampler

            if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
                return None
            return SequentialSampler(eval_dataset) if self.args.world_size <= 1 else None  # type: ignore[attr-defined]
        return super()._get_eval_sampler(eval_dataset)  # type: ignore[misc]

    def prediction_step(self, model: Any, inputs: Any, prediction_loss_only: bool, ignore_keys: Any = None,
                        **kwargs: Any) -> Any:
        result = super().prediction_step(model, inputs, prediction_loss_only,  # type: ignore[misc]
                                         ignore_keys=ignore_keys, **kwargs)
        run = self.__dict__.get("_tx_run")
        if run is not None and run.losses is not None:
            loss = result[0]
            run.losses.append(None if loss is None else loss.detach().float().mean())
        return result

    def _get_num_items_in_batch(self, *args: Any, **kwargs: Any) -> Any:
        # While tx evaluates, each batch's loss is the model's own mean over that batch, as in one
        # process. transformers would divide by the label count of all processes' batches of the
        # step and multiply by N: right for a sum over equal batches, wrong for a short last batch.
        run = self.__dict__.get("_tx_run")
        if run is not None and run.losses is not None:
            return None
        return super()._get_num_items_in_batch(*args, **kwargs)  # type: ignore[misc]

    def evaluation_loop(self, dataloader: Any, description: str, prediction_loss_only: bool | None = None,
                        ignore_keys: Any = None, metric_key_prefix: str = "eval") -> Any:
        run = self.__dict__.get("_tx_run")
        if run is None:
            return super().evaluation_loop(dataloader, description, prediction_loss_only,  # type: ignore[misc]
                                           ignore_keys, metric_key_prefix)
        from transformers import EvalPrediction
        from transformers.trainer_utils import EvalLoopOutput, denumpify_detensorize

        shard = run.attach(dataloader)
        compute_metrics, gather = self.compute_metrics, self.gather_function  # type: ignore[attr-defined,has-type]
        captured: list[Any] = []

        def capture(pred: Any, **_: Any) -> dict[str, Any]:
            captured.append(pred)
            return {}

        # Each process keeps its own results (no per-step gather: the last step's batches differ in
        # size across processes) and compute_metrics waits for all of them; both are done below.
        self.compute_metrics = capture if compute_metrics is not None else None
        self.gather_function = lambda tensor, *a, **k: tensor
        run.losses = []
        try:
            output = super().evaluation_loop(dataloader, description, prediction_loss_only,  # type: ignore[misc]
                                             ignore_keys, metric_key_prefix)
            losses = [None if x is None else float(x) for x in run.losses]
        finally:
            self.compute_metrics, self.gather_function, run.losses = compute_metrics, gather, None
        if len(losses) != len(shard.batches):
            raise RuntimeError(f"tx: {len(losses)} evaluation steps ran for {len(shard.batches)} planned batches")

        args = self.args  # type: ignore[attr-defined]
        wanted = getattr(args, "include_for_metrics", None) or []
        inputs = captured[0].inputs if captured and "inputs" in wanted else None
        mine = {"rows": shard.rows,
                "predictions": real_part(output.predictions, shard),
                "labels": real_part(output.label_ids, shard),
                "inputs": real_part(inputs, shard),
                "losses": list(zip(shard.real_batches, losses))}
        everyone = [mine]
        if self.accelerator.num_processes > 1:  # type: ignore[attr-defined]
            from accelerate.utils import gather_object

            everyone = gather_object([mine])
        n, order = run.n, run.order
        predictions = assemble([(p["rows"], p["predictions"]) for p in everyone], n, order)
        labels = assemble([(p["rows"], p["labels"]) for p in everyone], n, order)
        batch_losses = [item for p in everyone for item in p["losses"]]

        metrics: dict[str, Any] = {}
        if compute_metrics is not None and predictions is not None and labels is not None:
            extra = {"losses": row_losses(batch_losses, n, order) if "loss" in wanted else None,
                     "inputs": assemble([(p["rows"], p["inputs"]) for p in everyone], n, order)
                     if "inputs" in wanted else None}
            metrics = compute_metrics(EvalPrediction(predictions=predictions, label_ids=labels, **extra))
        metrics = denumpify_detensorize(metrics or {})
        loss = mean_loss(batch_losses, drop_non_finite=args.logging_nan_inf_filter)
        if loss is not None:
            metrics[f"{metric_key_prefix}_loss"] = loss
        for key, value in output.metrics.items():  # model_preparation_time
            if not key.endswith("_loss"):
                metrics.setdefault(key, value)
        for key in list(metrics):
            if not key.startswith(f"{metric_key_prefix}_"):
                metrics[f"{metric_key_prefix}_{key}"] = metrics.pop(key)
        return EvalLoopOutput(predictions=predictions, label_ids=labels, metrics=metrics, num_samples=n)


class _RowsSampler:
    """The positions one process evaluates (its :class:`Shard`, set once accelerate has said which
    process of how many this one is); before that, every position in order."""

    def __init__(self, n: int) -> None:
        self.indices = list(range(n))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)


class _EvalRun:
    """One evaluate()/predict() call that tx runs itself: the sorted rows, the order that maps
    them back, the sampler of this process, and the batch losses of its steps."""

    def __init__(self, rows: Any, order: list[int] | None) -> None:
        self.rows, self.order, self.n = rows, order, len(rows)
        self.sampler = _RowsSampler(self.n)
        self.losses: list[Any] | None = None

    def attach(self, dataloader: Any) -> Shard:
        """Give this process its shard, in place of accelerate's: its BatchSamplerShard (several
        processes) hands out batches round-robin and fills the last step up with rows from the
        start, which nobody can tell from real ones afterwards. The wrapper is made a pass-through
        (as transformers does for its rank-aware BatchRebalanceSampler) and the batches are
        checked to be exactly the planned ones."""
        from accelerate.data_loader import BatchSamplerShard

        outer = getattr(dataloader, "batch_sampler", None)
        inner = getattr(outer, "batch_sampler", outer)
        sampler = getattr(inner, "sampler", None)
        if not isinstance(sampler, _RowsSampler):
            raise RuntimeError("tx: the evaluation DataLoader does not use tx's sampler")
        world, rank = 1, 0
        if isinstance(outer, BatchSamplerShard):
            # the first time the real process count; a cached (persistent-workers) loader keeps it
            world, rank = getattr(outer, "_tx_shard", (outer.num_processes, outer.process_index))
            outer._tx_shard = (world, rank)
            outer.num_processes, outer.process_index, outer.even_batches = 1, 0, False
        shard = shard_rows(self.n, inner.batch_size, world, rank)
        sampler.indices = shard.indices
        got = [tuple(int(i) for i in batch) for batch in outer]
        if got != list(shard.batches):
            raise RuntimeError(f"tx: process {rank} of {world} would evaluate batches {got[:3]}..., "
                               f"not the planned {list(shard.batches)[:3]}...")
        return shard
