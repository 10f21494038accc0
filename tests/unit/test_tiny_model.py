"""The download-free model: deterministic bytes, and llama.cpp loads and runs it for real."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from services.workers.tiny_model import TinySpec, write_tiny_gguf


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_spec_writes_the_same_bytes(tmp_path: Path) -> None:
    spec = TinySpec(n_words=300)
    write_tiny_gguf(tmp_path / "a.gguf", spec)
    write_tiny_gguf(tmp_path / "b.gguf", spec)
    write_tiny_gguf(tmp_path / "c.gguf", TinySpec(n_words=300, seed=9))
    assert digest(tmp_path / "a.gguf") == digest(tmp_path / "b.gguf") != digest(tmp_path / "c.gguf")


def test_llama_cpp_loads_it_with_tokenizer_and_template(tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    path = tmp_path / "m.gguf"
    write_tiny_gguf(path, TinySpec(n_words=300))
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, verbose=False)
    assert "im_start" in llm.metadata["tokenizer.chat_template"]
    tokens = llm.tokenize(b" baba kebi", add_bos=False)
    assert llm.detokenize(tokens).decode() == " baba kebi"
    # Characters outside the word list fall back to bytes instead of failing.
    assert llm.detokenize(llm.tokenize("héllo 你好".encode(), add_bos=False)).decode() == "héllo 你好"
    out = llm.create_completion(" baba", max_tokens=5, seed=1, temperature=0.8)
    assert out["usage"]["completion_tokens"] >= 1


def test_generates_only_valid_utf8_words(tmp_path: Path) -> None:
    llama_cpp = pytest.importorskip("llama_cpp")
    path = tmp_path / "m.gguf"
    write_tiny_gguf(path, TinySpec(n_words=300))
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=1024, verbose=False)
    out = llm.create_completion("héllo", max_tokens=400, seed=3, temperature=1.0, logit_bias={2: -100.0, 4: -100.0})
    text = out["choices"][0]["text"]
    assert out["usage"]["completion_tokens"] == 400
    assert text.isascii() and text.strip()  # no stray bytes from the fallback tokens


def test_what_it_writes_tokenizes_back_into_as_many_tokens(tmp_path: Path) -> None:
    """As with a real vocabulary: an answer resumed after a failover puts its text so far into the
    new prompt, and it must take about the room it took when written (letters took five times)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    path = tmp_path / "m.gguf"
    write_tiny_gguf(path, TinySpec(n_words=300))
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=1024, verbose=False)
    for seed in (1, 2, 3):
        out = llm.create_completion(
            " baba", max_tokens=300, seed=seed, temperature=1.0, logit_bias=dict.fromkeys(range(5), -100.0)
        )  # no special (textless) tokens
        again = llm.tokenize(out["choices"][0]["text"].encode(), add_bos=False)
        assert out["usage"]["completion_tokens"] == 300 and abs(len(again) - 300) <= 6
