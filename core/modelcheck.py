"""Before launch: the model a run names can be loaded as asked.

- A local model folder without tokenizer files loads "fine" in transformers: it builds an empty
  tokenizer from the config, every word becomes ``<unk>``, and the run trains on nothing and exits
  0. So the folder the tokenizer comes from must hold tokenizer files, and the tokenizer they make
  must know the words of a sample of the run's data.
- A Hub id that is not in the local cache, on a machine without network, took ~31 s of retries
  (each warning printed twice) in the worker before its error. Here the Hub gets one request with
  a short timeout and no retry; an id already cached needs no network at all.

Runs in the validating process (it has transformers imported already); the launching `tx`
process never calls this. Built-in models (``tx-builtin:``) are tx's own and skipped.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Iterable

from tx.core.builtin_models import is_builtin
from tx.core.errors import ConfigError

#: files a tokenizer is made from (any one of them: fast, SentencePiece, WordPiece, BPE, Marian)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model", "source.spm", "target.spm", "vocab.model")
#: a tokenizer whose sample tokens are at least this share ``<unk>`` cannot read the data
UNK_SHARE = 0.5
#: fewer ordinary (non-special) tokens than this is no vocabulary at all
MIN_VOCAB = 10
#: seconds for the one request to the Hub (TX_HUB_PROBE_TIMEOUT changes it)
PROBE_TIMEOUT = 5.0
FALLBACK_SAMPLE = "The committee approved the new budget on Tuesday, 12 May, after a long debate."


def is_local(name: str | None) -> bool:
    """A path (not a Hub id): how transformers and tx's check_local_model tell them apart."""
    return bool(name) and (str(name).startswith((".", "/", "~")) or Path(str(name)).expanduser().exists())


def tokenizer_files(folder: Path) -> list[str]:
    """The tokenizer files in ``folder`` (empty: nothing a tokenizer can be built from)."""
    return sorted(name for name in TOKENIZER_FILES if (folder / name).is_file())


# -- local tokenizer -----------------------------------------------------------------------------
def check_tokenizer(model_args: Any, data_paths: Iterable[str] = ()) -> None:
    """The tokenizer of a run, when it comes from a local folder: it has tokenizer files, loads,
    has a vocabulary, and does not turn the data (a sample of ``data_paths``) into ``<unk>``."""
    name = getattr(model_args, "tokenizer_name", None) or getattr(model_args, "model_name_or_path", None)
    if not name or is_builtin(name) or not is_local(name):
        return
    folder = Path(str(name)).expanduser()
    if not folder.is_dir():
        return  # check_local_model reports a missing model folder; a tokenizer path that is a file is HF's business
    flag = "--tokenizer_name" if getattr(model_args, "tokenizer_name", None) else "--model_name_or_path"
    fix = ("pass --tokenizer_name with the tokenizer it was trained with, or save that tokenizer into the "
           "folder (tokenizer.save_pretrained(folder))")
    if getattr(model_args, "trust_remote_code", False):
        return  # its own code may read other files, and loading would run it here: left to the worker
    if not tokenizer_files(folder):
        raise ConfigError(f"{flag} {str(name)!r} has no tokenizer files ({', '.join(TOKENIZER_FILES[:4])}...): "
                          "transformers would build an empty tokenizer and train on <unk> tokens", hint=fix)
    tokenizer = _load_tokenizer(folder, bool(getattr(model_args, "use_fast_tokenizer", True)), flag, str(name), fix)
    problem = tokenizer_problem(tokenizer, sample_text(data_paths))
    if problem:
        raise ConfigError(f"the tokenizer in {str(name)!r} ({flag}) {problem}", hint=fix)


def _load_tokenizer(folder: Path, use_fast: bool, flag: str, name: str, fix: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder), use_fast=use_fast, local_files_only=True)
    except Exception as exc:  # any failure to build it is the user's folder, said in one line
        text = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise ConfigError(f"cannot load the tokenizer in {name!r} ({flag}): {text}", hint=fix) from None


def tokenizer_problem(tokenizer: Any, sample: str) -> str | None:
    """What makes ``tokenizer`` unusable, or None: (almost) no vocabulary, or ``sample`` comes out
    mostly as the unknown token."""
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    ordinary = len(tokenizer) - len(special)
    if ordinary < MIN_VOCAB:
        return f"has no vocabulary ({ordinary} ordinary tokens)"
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None or not sample.strip():
        return None
    ids = tokenizer(sample, add_special_tokens=False)["input_ids"]
    pieces = tokenizer.convert_ids_to_tokens(ids)
    content = [i for i, piece in zip(ids, pieces) if i == unk or str(piece).strip("\u2581\u0120 ")]
    if content and sum(1 for i in content if i == unk) >= UNK_SHARE * len(content):
        unknown = sum(1 for i in content if i == unk)
        return f"turns {unknown} of {len(content)} tokens of the data into {tokenizer.unk_token}"
    return None


def sample_text(paths: Iterable[str], rows: int = 20, chars: int = 4000) -> str:
    """Text values of the first ``rows`` rows of the first readable local data file (csv, tsv,
    json lines), or a fixed English sentence when there is none."""
    for path in paths:
        try:
            texts = _first_texts(Path(path), rows)
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
        text = " ".join(texts)[:chars]
        if text.strip():
            return text
    return FALLBACK_SAMPLE


def _first_texts(path: Path, rows: int) -> list[str]:
    ext = path.suffix.lower()
    out: list[str] = []
    with open(path, encoding="utf-8", newline="") as fh:
        if ext in (".csv", ".tsv"):
            for i, row in enumerate(csv.DictReader(fh, delimiter="\t" if ext == ".tsv" else ",")):
                if i >= rows:
                    break
                out.extend(v for v in row.values() if isinstance(v, str))
            return out
        for i, line in enumerate(fh):
            if i >= rows:
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a .json array or a broken line: the data checks say what is wrong
            if isinstance(record, dict):
                out.extend(v for v in record.values() if isinstance(v, str))
    return out


# -- Hub ids --------------------------------------------------------------------------------------
def check_hub_models(model_args: Any) -> None:
    """Each Hub id of the run (model, config, tokenizer) is in the local cache, or the Hub answers
    one request for it within :data:`PROBE_TIMEOUT` (no retries)."""
    names = {}
    for flag, attr, filename in (("--model_name_or_path", "model_name_or_path", "config.json"),
                                 ("--config_name", "config_name", "config.json"),
                                 ("--tokenizer_name", "tokenizer_name", "tokenizer_config.json")):
        name = getattr(model_args, attr, None)
        if name and not is_builtin(name) and not is_local(name) and name not in names:
            names[name] = (flag, filename)
    for name, (flag, filename) in names.items():
        check_hub_model(str(name), flag, filename, revision=getattr(model_args, "model_revision", None) or "main",
                        token=getattr(model_args, "token", None), cache_dir=getattr(model_args, "cache_dir", None))


def check_hub_model(name: str, flag: str, filename: str, *, revision: str = "main", token: str | None = None,
                    cache_dir: str | None = None, endpoint: str | None = None, timeout: float | None = None) -> None:
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cached = try_to_load_from_cache(name, filename, cache_dir=cache_dir, revision=revision)
    except Exception:  # an id that is not a valid repo name: the request below says so
        cached = None
    if isinstance(cached, str):
        return  # loads without the network
    if constants.HF_HUB_OFFLINE:
        raise ConfigError(f"{flag} {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set",
                          hint="unset HF_HUB_OFFLINE to download it, or pass a local model folder")
    endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
    status, reason = probe(f"{endpoint}/{name}/resolve/{revision}/{filename}", token=token,
                           timeout=timeout if timeout is not None else probe_timeout())
    if status is None:
        raise ConfigError(f"cannot reach {endpoint} to download {flag} {name!r} ({reason}), and it is not in the "
                          "local cache", hint="check the network, or pass a local model folder")
    if status in (401, 404) and filename == "config.json":
        raise ConfigError(f"{flag} {name!r} was not found on the Hub ({endpoint})",
                          hint="check the name (organisation/model), or pass --token / set HF_TOKEN for a private model")
    if status == 403:
        raise ConfigError(f"{flag} {name!r} is gated: this token has no access to it",
                          hint="request access on its Hub page, then pass --token or set HF_TOKEN")


def probe_timeout() -> float:
    try:
        return float(os.environ.get("TX_HUB_PROBE_TIMEOUT", PROBE_TIMEOUT))
    except ValueError:
        return PROBE_TIMEOUT


def probe(url: str, *, token: str | None, timeout: float) -> tuple[int | None, str]:
    """One HEAD request, no retry, redirects not followed: (status, "") or (None, why it failed)."""
    from huggingface_hub.utils import build_hf_headers, get_session

    try:
        headers = build_hf_headers(token=token)
    except Exception:
        headers = {}
    try:
        response = get_session().head(url, headers=headers, timeout=timeout, follow_redirects=False)
    except Exception as exc:  # DNS, refused, unreachable, timeout: whatever the HTTP client raises
        text = " ".join(str(exc).split())[:120]
        return None, f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return int(response.status_code), ""
