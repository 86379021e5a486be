"""core/modelcheck.py: the Hub gets one bounded request (a Hub that never answers costs the
timeout, not half a minute of retries), its answers become one line, a cached id needs no
network; and what makes a tokenizer unusable. Real sockets and a real HTTP server on loopback:
nothing goes to the Hub."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Iterator

import pytest

from tx.core.errors import ConfigError
from tx.core.modelcheck import FALLBACK_SAMPLE, check_hub_model, sample_text, tokenizer_problem


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> None:
    """The conftest's HF_HUB_OFFLINE=1 lifted for this process's huggingface_hub (read at import)."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def _serve(status: int) -> Iterator[str]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
            seen.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
    assert seen == ["/someone/model/resolve/main/config.json"], seen  # one request, no retry


@pytest.fixture
def hub_404() -> Iterator[str]:
    yield from _serve(404)


@pytest.fixture
def hub_200() -> Iterator[str]:
    yield from _serve(200)


def test_a_hub_that_never_answers_costs_the_timeout_not_retries(online: None, tmp_path: Path) -> None:
    silent = socket.socket()  # accepts connections (the kernel does) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        started = time.monotonic()
        with pytest.raises(ConfigError) as info:
            check_hub_model("someone/model", "--model_name_or_path", "config.json", cache_dir=str(tmp_path),
                            endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=1.0)
        took = time.monotonic() - started
    finally:
        silent.close()
    assert took < 4, took
    assert "cannot reach" in info.value.message and "not in the local cache" in info.value.message
    assert "Timeout" in info.value.message


def test_an_unknown_id_is_not_found(online: None, hub_404: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="'someone/model' was not found on the Hub"):
        check_hub_model("someone/model", "--model_name_or_path", "config.json", cache_dir=str(tmp_path), endpoint=hub_404)


def test_a_hub_that_has_the_model_lets_the_run_go(online: None, hub_200: str, tmp_path: Path) -> None:
    check_hub_model("someone/model", "--model_name_or_path", "config.json", cache_dir=str(tmp_path), endpoint=hub_200)


def test_a_cached_id_needs_no_network(online: None, tmp_path: Path) -> None:
    repo = tmp_path / "models--someone--model"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    (repo / "snapshots" / "abc123").mkdir(parents=True)
    (repo / "snapshots" / "abc123" / "config.json").write_text("{}")
    check_hub_model("someone/model", "--model_name_or_path", "config.json", cache_dir=str(tmp_path),
                    endpoint="http://127.0.0.1:9", timeout=1.0)  # nothing listens there


def _word_tokenizer(words: list[str]) -> object:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<pad>", *words])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>")


def test_what_makes_a_tokenizer_unusable() -> None:
    words = "the council approved a new budget on tuesday after long debate".split()
    good = _word_tokenizer(words)
    assert tokenizer_problem(good, "the council approved the budget") is None
    assert "into <unk>" in str(tokenizer_problem(good, "zebras juggle quietly near the river"))
    assert "no vocabulary" in str(tokenizer_problem(_word_tokenizer(["a", "b"]), "a b"))


def test_sample_text_reads_the_data_or_falls_back(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text('{"document": "first text", "n": 3}\n{"document": "second"}\n')
    (tmp_path / "b.csv").write_text("sentence,label\nhello there,1\n")
    assert sample_text([str(tmp_path / "a.jsonl")]) == "first text second"
    assert sample_text([str(tmp_path / "missing.csv"), str(tmp_path / "b.csv")]) == "hello there 1"
    assert sample_text([]) == FALLBACK_SAMPLE
