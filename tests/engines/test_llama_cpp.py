"""The llama.cpp engine called directly (no bus) on the tiny model: where a prompt meets the context."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, Sampling
from services.workers.engine import EngineError, EngineEvent, Finished, TextDelta
from services.workers.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine
from services.workers.tiny_model import TinySpec, ensure_tiny_gguf

N_CTX = 256


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[LlamaCppEngine]:
    engine = LlamaCppEngine(LlamaCppConfig("tiny", ensure_tiny_gguf(TinySpec()), slots=1, n_ctx=N_CTX, n_threads=1))
    await engine.start()
    yield engine
    await engine.cleanup()


def chat(content: str, max_tokens: int = 20) -> ChatRequest:
    return ChatRequest(request_id=f"c{now_ms()}", model="tiny", deadline_ms=now_ms() + 60_000,
                       messages=(ChatMessage(role="user", content=content),),
                       sampling=Sampling(max_tokens=max_tokens, seed=1, logit_bias={2: -100.0, 4: -100.0}))


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
