"""Tiny models built locally for the built-in default runs (nothing comes from the Hub).

A built-in model is named ``tx-builtin:<key>`` in a job spec; the task resolves it with
:func:`cached_build`, which builds it once under the tx cache. Two processes building at once
(two ranks of a torchrun job, two jobs) are safe: a file lock, a temp directory and a rename.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from tx.core.paths import cache_home

PREFIX = "tx-builtin:"
_DONE = ".tx-complete"


def is_builtin(name: str | None) -> bool:
    return bool(name) and str(name).startswith(PREFIX)


def cached_build(key: str, build: Callable[[Path], None]) -> Path:
    """Return the folder for ``key``, calling ``build(tmp_dir)`` once if it is not there yet."""
    from filelock import FileLock

    root = cache_home() / "models"
    root.mkdir(parents=True, exist_ok=True)
    target = root / key
    if (target / _DONE).exists():
        return target
    with FileLock(str(root / f".{key}.lock")):
        if (target / _DONE).exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=root))
        try:
            build(tmp)
            (tmp / _DONE).write_text("ok\n")
            if target.exists():  # an incomplete leftover from a killed build
                shutil.rmtree(target)
            os.replace(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return target


def save_model(model: object, out: Path) -> None:
    """Write ``model`` as a ``from_pretrained`` folder from whichever process builds it.

    ``PreTrainedModel.save_pretrained`` writes nothing on ranks other than 0 once
    torch.distributed is initialized, and any rank of a torchrun job may take the build lock:
    the cache then held a tokenizer without a model. Config, generation config and safetensors
    weights (tied tensors stored once, as save_pretrained does) are written directly instead.
    """
    from safetensors.torch import save_model as save_safetensors

    model.config.save_pretrained(out)  # type: ignore[attr-defined]
    if model.can_generate():  # type: ignore[attr-defined]
        model.generation_config.save_pretrained(out)  # type: ignore[attr-defined]
    save_safetensors(model, str(out / "model.safetensors"), metadata={"format": "pt"})  # type: ignore[arg-type]


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    special_tokens: list[str],
    *,
    eos: str | None = "</s>",
    bos: str | None = None,
    unk: str = "<unk>",
) -> object:
    """A BPE tokenizer with SentencePiece-style spaces, trained on ``texts``; returned as a
    ``PreTrainedTokenizerFast`` that appends ``eos`` (and prepends ``bos``) like T5/BERT ones
    (BERT style: ``bos="[CLS]", eos="[SEP]", unk="[UNK]"``). ``unk`` must be in ``special_tokens``."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=unk))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special_tokens, show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    single, pair, specials = "$A", "$A $B", []
    if bos:
        single, pair = f"{bos} {single}", f"{bos} $A $B"
        specials.append((bos, tok.token_to_id(bos)))
    if eos:
        single, pair = f"{single} {eos}", f"{pair} {eos}"
        specials.append((eos, tok.token_to_id(eos)))
    if specials:
        tok.post_processor = processors.TemplateProcessing(single=single, pair=pair, special_tokens=specials)
    return PreTrainedTokenizerFast(tokenizer_object=tok)
