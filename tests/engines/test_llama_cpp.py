"""The llama.cpp engine called directly (no bus) on the tiny model: where a prompt meets the context."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator

import pytest

from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, Sampling
from services.workers.engine import EngineError, EngineEvent, Finished, TextDelta
from services.workers.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine
from services.workers.tiny_model import BENCH_SPEC, TinySpec, ensure_tiny_gguf

N_CTX = 256


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[LlamaCppEngine]:
    engine = LlamaCppEngine(LlamaCppConfig("tiny", ensure_tiny_gguf(TinySpec()), slots=1, n_ctx=N_CTX, n_threads=1))
    await engine.start()
    yield engine
    await engine.cleanup()


def chat(content: str, max_tokens: int = 20) -> ChatRequest:
    return ChatRequest(
        request_id=f"c{now_ms()}",
        model="tiny",
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content=content),),
        sampling=Sampling(max_tokens=max_tokens, seed=1, logit_bias={2: -100.0, 4: -100.0}),
    )


async def _all(events: AsyncIterator[EngineEvent]) -> list[EngineEvent]:
    return [event async for event in events]


async def test_a_resumed_answer_continues_after_what_it_said(engine: LlamaCppEngine) -> None:
    events = await _all(engine.generate(chat("hi"), resume_text=" baba" * 20))
    final = events[-1]
    assert isinstance(final, Finished) and final.finish_reason == "length" and final.usage.completion_tokens == 20
    assert any(isinstance(e, TextDelta) and e.text for e in events)


async def test_a_resumed_answer_that_already_fills_the_context_ends_there(engine: LlamaCppEngine) -> None:
    # It said all the context holds before its worker died: the answer is complete, not an error.
    events = await _all(engine.generate(chat("hi"), resume_text=" baba" * N_CTX))
    assert [type(e) for e in events] == [Finished]
    final = events[0]
    assert isinstance(final, Finished) and final.finish_reason == "length" and final.usage.completion_tokens == 0


async def test_a_new_prompt_over_the_context_is_refused(engine: LlamaCppEngine) -> None:
    with pytest.raises(EngineError, match="exceeds the context"):
        await _all(engine.generate(chat(" baba" * N_CTX)))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_DATA is enforced on Linux")
def test_a_context_beyond_the_domains_ram_share_fails_to_load_instead_of_taking_it() -> None:
    """A worker in a domain with a RAM share of 300 MB more than its private memory: the model with a 2048-token
    context (32 MB of cache) loads; with 32768 tokens (512 MB) it fails to load, saying
    why, instead of taking memory another domain owns."""
    code = """
import asyncio
from services.common.confinement import confine, memory_limit_note, private_mb, ram_mb
from services.common.domains import DomainSpec
from services.workers.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine
from services.workers.tiny_model import BENCH_SPEC, ensure_tiny_gguf
path = ensure_tiny_gguf(BENCH_SPEC)
confine(DomainSpec(ram_fraction=(private_mb() + 300) / ram_mb()))
async def load(n_ctx):
    engine = LlamaCppEngine(LlamaCppConfig("tiny", path, slots=1, n_ctx=n_ctx, n_threads=1))
    try:
        await engine.start()
    except Exception as exc:
        return f"failed: {exc}{memory_limit_note()}"
    await engine.cleanup()
    return "loaded"
print(asyncio.run(load(2048)))
print(asyncio.run(load(32768)))
"""
    ensure_tiny_gguf(BENCH_SPEC)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    lines = out.stdout.splitlines()
    assert out.returncode == 0 and lines[0] == "loaded", out.stderr[-2000:]
    assert lines[1].startswith("failed:") and "memory limit of" in lines[1] and "ram_fraction" in lines[1]
