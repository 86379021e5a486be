"""The compute floor: a bare PyTorch training loop over the benchmark's tokenized batches.

Same model folder, tokenization (prefix, truncation), batch size, dynamic padding
(DataCollatorForSeq2Seq, labels padded with -100), optimizer (fused AdamW, HF's defaults),
linear warmup/decay schedule, gradient clipping at 1.0 and seed as the Trainer runs, and the
intra-op threads tx would pick (tx.core.threads). Batches are tokenized and collated before the
clock starts; only forward, backward, clipping and the optimizer/scheduler steps are timed.
Prints one JSON object.

    python bench/raw_loop.py --model DIR --train_file train.jsonl [--threads N] [--order random|grouped]
        [--pad-multiple N] [--seed N] [--retune SECONDS] [--load-after SECONDS --load-procs N]

The thread count is chosen once, at the start, as tx does; ``--retune 10`` looks again every 10 s
(tx's rule before thread counts were fixed per job, for comparison). ``--load-after S`` starts
``--load-procs`` busy loops S seconds into training (until it ends): load that arrives mid-run.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import HPARAMS  # noqa: E402


def batches(tokenizer: Any, model: Any, rows: list[dict[str, str]], batch_size: int, seed: int,
            order: str, pad_multiple: int | None = None) -> list[dict[str, Any]]:
    import torch
    from transformers import DataCollatorForSeq2Seq

    from tx.core.lengths import grouped_indices

    enc = tokenizer([HPARAMS["source_prefix"] + r["document"] for r in rows],
                    max_length=HPARAMS["max_source_length"], truncation=True)
    labels = tokenizer(text_target=[r["summary"] for r in rows], max_length=HPARAMS["max_target_length"],
                       truncation=True)["input_ids"]
    features = [{"input_ids": ids, "attention_mask": mask, "labels": lab}
                for ids, mask, lab in zip(enc["input_ids"], enc["attention_mask"], labels)]
    generator = torch.Generator().manual_seed(seed)
    if order == "grouped":  # tx's group_by_length order (tx.core.lengths.GroupedSampler: seed + epoch)
        perm = grouped_indices([len(f["input_ids"]) for f in features], batch_size, generator)
    else:
        perm = torch.randperm(len(features), generator=generator).tolist()
    collate = DataCollatorForSeq2Seq(tokenizer, model=model, label_pad_token_id=-100, pad_to_multiple_of=pad_multiple)
    return [collate([features[i] for i in perm[k:k + batch_size]]) for k in range(0, len(perm), batch_size)]


def start_load(procs: int) -> list[Any]:
    """Busy loops that end by themselves after 10 minutes (killed when training ends)."""
    import subprocess

    code = "import time\nend = time.time() + 600\nwhile time.time() < end: pass\n"
    return [subprocess.Popen([sys.executable, "-c", code]) for _ in range(procs)]


def retune(tuner: Any) -> tuple[float, int]:
    """One look of tx's old rule: the load since the last look sets the thread count again."""
    import torch

    from tx.core import threads

    now = threads.snapshot()
    busy = threads.others_busy(tuner.last, now, tuner.cores) if now and tuner.last else 0.0
    tuner.last = now
    count = threads.pick_threads(tuner.cores, busy, tuner.most)
    torch.set_num_threads(count)
    return round(busy, 2), count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--train_file", required=True)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: chosen like tx does, tx.core.threads)")
    parser.add_argument("--order", choices=("random", "grouped"), default="random")
    parser.add_argument("--pad-multiple", type=int, default=None, help="pad_to_multiple_of of the collator")
    parser.add_argument("--seed", type=int, default=HPARAMS["seed"])
    parser.add_argument("--out", type=Path, default=None, help="write the JSON here too")
    parser.add_argument("--retune", type=float, default=None,
                        help="look at the load again every SECONDS (tx's old rule); default: once, at the start")
    parser.add_argument("--load-after", type=float, default=None, help="start busy loops SECONDS into training")
    parser.add_argument("--load-procs", type=int, default=2, help="how many busy loops --load-after starts")
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, get_linear_schedule_with_warmup, set_seed

    from tx.core import threads

    tuner = None
    if args.threads:
        torch.set_num_threads(args.threads)
    elif threads.should_tune():
        tuner = threads.ThreadTuner()  # the floor of what tx does: the same thread rule
    set_seed(args.seed)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModelForSeq2SeqLM.from_pretrained(args.model)
    rows = [json.loads(line) for line in Path(args.train_file).read_text(encoding="utf-8").splitlines() if line]
    bs = HPARAMS["per_device_train_batch_size"]
    epochs = math.ceil(args.epochs)
    per_epoch = [batches(tokenizer, model, rows, bs, args.seed + e, args.order, args.pad_multiple)
                 for e in range(epochs)]
    steps = math.ceil(len(per_epoch[0]) * args.epochs)
    plan = [b for epoch in per_epoch for b in epoch][:steps]
    tokens = sum(int(b["attention_mask"].sum()) + int((b["labels"] != -100).sum()) for b in plan)
    padded = sum(int(b["input_ids"].numel()) + int(b["labels"].numel()) for b in plan)

    optimizer = torch.optim.AdamW(model.parameters(), lr=HPARAMS["learning_rate"], weight_decay=0.0, fused=True)
    schedule = get_linear_schedule_with_warmup(optimizer, HPARAMS["warmup_steps"], steps)
    model.train()
    losses = []
    hogs: list[Any] = []
    looks: list[tuple[float, int]] = []
    if tuner is not None:
        tuner.choose()
    start = time.perf_counter()
    last_look = start
    for batch in plan:
        now = time.perf_counter()
        if args.load_after is not None and not hogs and now - start >= args.load_after:
            hogs = start_load(args.load_procs)
        if tuner is not None and args.retune and now - last_look >= args.retune:
            looks.append(retune(tuner))
            last_look = now
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    seconds = time.perf_counter() - start
    for hog in hogs:
        hog.kill()
    result = json.dumps({"steps": steps, "seconds": seconds, "tokens": tokens, "padded_tokens": padded,
                         "tokens_per_s": tokens / seconds, "threads": torch.get_num_threads(),
                         "thread_looks": (tuner.history + looks) if tuner else None,
                         "retune": args.retune, "load_after": args.load_after,
                         "order": args.order, "pad_multiple": args.pad_multiple, "train_loss": float(torch.stack(losses).mean())})
    if args.out:
        args.out.write_text(result + "\n", encoding="utf-8")
    print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
