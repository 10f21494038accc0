"""The vLLM engine in process, on a CUDA GPU, with the project's tiny random-weight Hugging Face LLaMA:
streaming, sampling, seeds, stop and length endings, cancellation, resume after failover, and the
KV-cache and batch counts the heartbeat carries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, CompletionRequest, Sampling
from services.workers.engine import EngineEvent, Finished, TextDelta

pytest.importorskip("vllm", reason="vLLM is installed only on GPU images: pip install 'modalmesh[vllm]'")
pytestmark = pytest.mark.gpu

EOS = {1: -100.0, 3: -100.0}  # </s> and <|im_end|> of the tiny tokenizer: answers run to max_tokens


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[object]:
    from services.workers.engines.vllm import VllmConfig, VllmEngine
    from services.workers.tiny_hf import ensure_tiny_hf

    running = VllmEngine(
        VllmConfig(
            model_id="tiny-hf-llama",
            model=str(ensure_tiny_hf()),
            max_num_seqs=8,
            max_model_len=1024,
            gpu_memory_utilization=0.3,
            engine_args={"enforce_eager": True},
        )
    )
    await running.start()
    yield running
    await running.cleanup()


def _chat(rid: str, max_tokens: int, **sampling: object) -> ChatRequest:
    return ChatRequest(
        request_id=rid,
        model="tiny-hf-llama",
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content="Tell me a story"),),
        sampling=Sampling(max_tokens=max_tokens, logit_bias=EOS, **sampling),
    )  # type: ignore[arg-type]


async def _all(events: AsyncIterator[EngineEvent]) -> list[EngineEvent]:
    return [e async for e in events]


def _text(events: list[EngineEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_streams_to_max_tokens_and_a_seed_repeats(engine) -> None:  # type: ignore[no-untyped-def]
    first = await _all(engine.generate(_chat("v1", 16, seed=7, temperature=1.0)))
    final = first[-1]
    assert isinstance(final, Finished) and final.finish_reason == "length"
    assert final.usage.completion_tokens == 16 and final.usage.prompt_tokens > 5
    assert sum(e.tokens for e in first if isinstance(e, TextDelta)) == 16
    again = await _all(engine.generate(_chat("v2", 16, seed=7, temperature=1.0)))
    assert _text(again) == _text(first)
    completion = CompletionRequest(
        request_id="v3",
        model="tiny-hf-llama",
        deadline_ms=now_ms() + 60_000,
        prompt="Once",
        sampling=Sampling(max_tokens=4, logit_bias=EOS),
    )
    assert (await _all(engine.generate(completion)))[-1].finish_reason == "length"  # type: ignore[union-attr]


async def test_resume_continues_after_the_delivered_text(engine) -> None:  # type: ignore[no-untyped-def]
    fresh = (await _all(engine.generate(_chat("r1", 4, temperature=0.0))))[-1]
    resumed = (await _all(engine.generate(_chat("r2", 4, temperature=0.0), resume_text="abc def")))[-1]
    assert isinstance(fresh, Finished) and isinstance(resumed, Finished)
    assert resumed.usage.prompt_tokens > fresh.usage.prompt_tokens


async def test_abort_ends_the_stream_as_cancelled(engine) -> None:  # type: ignore[no-untyped-def]
    events: list[EngineEvent] = []
    async for event in engine.generate(_chat("c1", 900)):
        events.append(event)
        if sum(isinstance(e, TextDelta) for e in events) == 3:
            await engine.abort("c1")
    assert isinstance(events[-1], Finished) and events[-1].finish_reason == "cancelled"
    assert events[-1].usage.completion_tokens < 900


async def test_batches_concurrent_requests_and_reports_its_load(engine) -> None:  # type: ignore[no-untyped-def]
    results = await asyncio.gather(*(_all(engine.generate(_chat(f"b{i}", 64))) for i in range(8)))
    assert all(r[-1].finish_reason == "length" for r in results)  # type: ignore[union-attr]
    load = engine.batch_load()
    assert load is not None and 0.0 <= load.kv_cache_usage <= 1.0 and load.running >= 0 and load.waiting >= 0
