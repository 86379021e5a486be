"""The benchmark's workload: synthetic summarization data with document-like length spread,
a tiny T5 built locally for it, and the one set of HF arguments every contender gets.

Nothing here loads from the Hub. The sentences come from tx's shipped summarization data; the
documents are new: a lead sentence plus a log-normally distributed number of other sentences
(most documents short, a long tail past ``max_source_length``, as in news corpora), and the
summary is the lead sentence, plus the second one for long documents, so the target length
grows with the source length as it does in real summarization data.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHIPPED = Path(__file__).resolve().parents[1] / "plugins" / "summarization" / "data" / "train.jsonl"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Size:
    """How much work one contender does: rows per split and epochs."""

    train: int
    validation: int
    test: int
    epochs: float


FULL = Size(train=3000, validation=300, test=300, epochs=1)
QUICK = Size(train=320, validation=48, test=48, epochs=1)

#: Hyperparameters of every contender (same seed, lengths, batch sizes, schedule).
HPARAMS: dict[str, Any] = {
    "source_prefix": "summarize: ",
    "max_source_length": 256,
    "max_target_length": 64,
    "learning_rate": 2e-3,
    "warmup_steps": 20,
    "per_device_train_batch_size": 8,
    "per_device_eval_batch_size": 64,
    "seed": 42,
}


def _pools() -> tuple[list[str], list[str]]:
    """(lead sentences, other sentences) of the shipped data."""
    leads: list[str] = []
    others: list[str] = []
    with SHIPPED.open(encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            sentences = [s for s in _SENTENCE_END.split(row["document"].strip()) if s]
            leads.append(sentences[0])
            others.extend(sentences[1:])
    return sorted(set(leads)), sorted(set(others))


def make_rows(n: int, rng: random.Random, leads: list[str], others: list[str]) -> list[dict[str, str]]:
    rows = []
    for _ in range(n):
        # median 6 extra sentences (about 70 words), 1 in 10 above ~16, 1 in 100 above ~34
        extra = min(60, max(1, round(rng.lognormvariate(math.log(6), 0.75))))
        first = rng.choice(leads)
        body = [rng.choice(others) for _ in range(extra)]
        summary = first if extra < 10 else f"{first} {body[0]}"
        rows.append({"document": " ".join([first, *body]), "summary": summary})
    return rows


def write_data(out: Path, size: Size, seed: int = 0) -> dict[str, Path]:
    """Write train/validation/test .jsonl files under ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    leads, others = _pools()
    rng = random.Random(seed)
    paths = {}
    for split, n in (("train", size.train), ("validation", size.validation), ("test", size.test)):
        path = out / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as fh:
            for row in make_rows(n, rng, leads, others):
                fh.write(json.dumps(row) + "\n")
        paths[split] = path
    return paths


def build_model(out: Path, train_file: Path) -> Path:
    """A tiny T5 (the shape of tx's built-in summarization model) with a tokenizer trained on
    the benchmark's training documents, saved with save_pretrained-compatible files."""
    from transformers import T5Config, T5ForConditionalGeneration

    from tx.plugins.common import save_tiny, tiny_tokenizer

    texts = [json.loads(line)["document"] for line in train_file.read_text(encoding="utf-8").splitlines() if line]
    tokenizer = tiny_tokenizer(texts, 1200, {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"},
                               max_length=512)
    config = T5Config(vocab_size=len(tokenizer), d_model=128, d_ff=512, d_kv=32, num_layers=2, num_decoder_layers=2,
                      num_heads=4, dropout_rate=0.0, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    out.mkdir(parents=True, exist_ok=True)
    save_tiny(out, T5ForConditionalGeneration, config, tokenizer)
    return out


def hf_args(model: Path, data: dict[str, Path], size: Size) -> list[str]:
    """The command line shared by the plain HF script and `tx run summarization`
    (everything but --output_dir)."""
    args = ["--model_name_or_path", str(model),
            "--train_file", str(data["train"]), "--validation_file", str(data["validation"]),
            "--test_file", str(data["test"]), "--text_column", "document", "--summary_column", "summary",
            "--do_train", "--do_eval", "--do_predict", "--predict_with_generate",
            "--num_train_epochs", str(size.epochs), "--report_to", "none"]
    for key, value in HPARAMS.items():
        args += [f"--{key}", str(value)]
    return args
