"""HF Trainer / Seq2SeqTrainer on torch_xla (PJRT CPU) with the tiny local models from make_tiny.py.

    PJRT_DEVICE=CPU CPU_NUM_DEVICES=1 python trainer_probe.py --task cls|seq2seq \
        [--launch [--single]] [--models /tmp/xla-tiny] -- <TrainingArguments flags>

--launch runs the training function through torch_xla.launch(fn, args=..., debug_single_process=--single)
(the xla_spawn.py replacement); without it the function is called directly in this process.
Everything after `--` is parsed by HfArgumentParser into (Seq2Seq)TrainingArguments.
"""
import argparse
import json
import os
import sys
import threading
import time


# With torch_xla.launch on CPU every device is a *thread* of one spawned process.
# transformers' lazy module is not thread-safe: two threads doing
# `from transformers import Trainer, ...` at once can get ImportError in one of them.
# Resolving the names here, at import time of this module (in the spawned child's
# main thread, before the device threads start), avoids that.
# TX_PROBE_LAZY_IMPORTS=1 skips this to reproduce the race.
EAGER_IMPORTS = os.environ.get("TX_PROBE_LAZY_IMPORTS") != "1"
if EAGER_IMPORTS:
    import datasets  # noqa: F401
    import transformers.trainer  # noqa: F401
    from transformers import (AutoModelForSequenceClassification, AutoModelForSeq2SeqLM,  # noqa: F401
                              AutoTokenizer, HfArgumentParser, Seq2SeqTrainer, Seq2SeqTrainingArguments,
                              Trainer, TrainingArguments)


if os.environ.get("TX_PROBE_CHANNEL_COLLECTIVES") == "1":
    import channel_collectives
    channel_collectives.install()


def _data(tok, task, n, seed):
    import random
    from datasets import Dataset
    rnd = random.Random(seed)
    words = "the cat sat on mat a dog ran in park one two three four five six seven red green blue".split()
    rows = []
    for _ in range(n):
        k = rnd.randint(3, 8)
        s = " ".join(rnd.choice(words) for _ in range(k))
        rows.append(s)
    if task == "cls":
        labels = [int("cat" in s or "dog" in s) for s in rows]
        enc = tok(rows, padding="max_length", truncation=True, max_length=16)
        return Dataset.from_dict({**enc, "labels": labels})
    # seq2seq: copy task (target = first three words)
    tgt = [" ".join(s.split()[:3]) for s in rows]
    enc = tok(rows, padding="max_length", truncation=True, max_length=16)
    lab = tok(text_target=tgt, padding="max_length", truncation=True, max_length=8)["input_ids"]
    lab = [[t if t != tok.pad_token_id else -100 for t in l] for l in lab]
    return Dataset.from_dict({**enc, "labels": lab})


def run(index, task, models, argv):
    # torch_xla.launch on CPU runs one *thread* per device; an exception in a non-zero
    # thread is only re-raised after thread 0 returns, so print it right away.
    try:
        return _run(index, task, models, argv)
    except BaseException:
        import traceback
        print(f"[pid {os.getpid()} {threading.current_thread().name} index {index}] FAILED:\n"
              + traceback.format_exc(), flush=True)
        raise


def _run(index, task, models, argv):
    import numpy as np
    import torch_xla.runtime as xr
    # cheap if EAGER_IMPORTS already resolved these; otherwise this is where the threads race
    from transformers import (AutoModelForSequenceClassification, AutoModelForSeq2SeqLM, AutoTokenizer,
                              HfArgumentParser, Seq2SeqTrainer, Seq2SeqTrainingArguments, Trainer,
                              TrainingArguments)

    tag = f"[pid {os.getpid()} {threading.current_thread().name} index {index} ordinal {xr.global_ordinal()}/{xr.world_size()}]"
    print(tag, "start", flush=True)
    t0 = time.time()
    if task == "cls":
        (args,) = HfArgumentParser(TrainingArguments).parse_args_into_dataclasses(argv)
        path = os.path.join(models, "bert")
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path)

        def metrics(p):
            return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

        trainer = Trainer(model=model, args=args, train_dataset=_data(tok, task, 64, 0),
                          eval_dataset=_data(tok, task, 32, 1), compute_metrics=metrics)
    else:
        (args,) = HfArgumentParser(Seq2SeqTrainingArguments).parse_args_into_dataclasses(argv)
        path = os.path.join(models, "t5")
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSeq2SeqLM.from_pretrained(path)

        def metrics(p):
            preds = p.predictions[0] if isinstance(p.predictions, tuple) else p.predictions
            if preds.ndim == 3:
                preds = preds.argmax(-1)
            preds = np.where(preds < 0, tok.pad_token_id, preds)
            labels = np.where(p.label_ids < 0, tok.pad_token_id, p.label_ids)
            dp = tok.batch_decode(preds, skip_special_tokens=True)
            dl = tok.batch_decode(labels, skip_special_tokens=True)
            return {"exact_match": float(np.mean([a.strip() == b.strip() for a, b in zip(dp, dl)]))}

        trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=_data(tok, task, 64, 0),
                                 eval_dataset=_data(tok, task, 32, 1), compute_metrics=metrics,
                                 processing_class=tok)
    print(tag, "device", args.device, "parallel_mode", args.parallel_mode, "world_size", args.world_size,
          "process_index", args.process_index, "optim", args.optim, flush=True)
    tr = trainer.train()
    print(tag, "train", json.dumps(tr.metrics), f"({time.time()-t0:.1f}s)", flush=True)
    ev = trainer.evaluate()
    print(tag, "eval", json.dumps(ev), f"({time.time()-t0:.1f}s)", flush=True)
    trainer.save_model()
    import torch_xla.debug.metrics as met
    print(tag, "CompileTime", met.metric_data("CompileTime")[:2], "ExecuteTime", met.metric_data("ExecuteTime")[:2], flush=True)
    print(tag, "done", f"({time.time()-t0:.1f}s)", flush=True)


if __name__ == "__main__":
    argv = sys.argv[1:]
    rest = []
    if "--" in argv:
        i = argv.index("--")
        argv, rest = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=["cls", "seq2seq"], default="cls")
    ap.add_argument("--models", default="/tmp/xla-tiny")
    ap.add_argument("--launch", action="store_true")
    ap.add_argument("--single", action="store_true")
    a = ap.parse_args(argv)
    print("env:", {k: v for k, v in os.environ.items() if k.startswith(("PJRT", "XLA", "CPU_NUM", "TPU"))}, flush=True)
    if a.launch:
        import torch_xla
        torch_xla.launch(run, args=(a.task, a.models, rest), debug_single_process=a.single)
    else:
        run(0, a.task, a.models, rest)
    print("exit ok", flush=True)
