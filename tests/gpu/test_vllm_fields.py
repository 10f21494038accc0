"""vLLM's side of the OpenAI fields, on a CUDA GPU with the tiny random-weight Hugging Face LLaMA:
a JSON-schema reply under structured outputs, log probabilities, penalties, and tools refused."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import jsonschema
import pytest

from contracts.base import now_ms
from contracts.errors import InvalidRequest
from contracts.requests import ChatMessage, ChatRequest, ResponseFormat, Sampling, Tool
from services.workers.engine import Finished, TextDelta

pytest.importorskip("vllm", reason="vLLM is installed only on GPU images: pip install 'modalmesh[vllm]'")
pytestmark = pytest.mark.gpu
SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 8}, "ok": {"type": "boolean"}},
    "required": ["name", "ok"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[object]:
    from services.workers.engines.vllm import VllmConfig, VllmEngine
    from services.workers.tiny_hf import ensure_tiny_hf

    running = VllmEngine(
        VllmConfig(
            model_id="tiny-hf-llama",
            model=str(ensure_tiny_hf()),
            max_num_seqs=4,
            max_model_len=1024,
            gpu_memory_utilization=0.3,
            engine_args={"enforce_eager": True},
        )
    )
    await running.start()
    yield running
    await running.cleanup()


def _chat(**fields: object) -> ChatRequest:
    fields.setdefault("sampling", Sampling(max_tokens=120, seed=1))
    return ChatRequest(
        request_id=f"v{now_ms()}",
        model="tiny-hf-llama",
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content="Name?"),),
        **fields,  # type: ignore[arg-type]
    )


async def test_a_json_schema_reply_validates(engine) -> None:  # type: ignore[no-untyped-def]
    fmt = ResponseFormat(type="json_schema", json_schema=SCHEMA, strict=True)
    events = [e async for e in engine.generate(_chat(response_format=fmt))]
    jsonschema.validate(json.loads("".join(e.text for e in events if isinstance(e, TextDelta))), SCHEMA)


async def test_logprobs_and_penalties(engine) -> None:  # type: ignore[no-untyped-def]
    sampling = Sampling(max_tokens=8, seed=2, logprobs=True, top_logprobs=2, presence_penalty=1.0)
    events = [e async for e in engine.generate(_chat(sampling=sampling))]
    logprobs = [lp for e in events if isinstance(e, TextDelta) for lp in e.logprobs]
    final = events[-1]
    assert isinstance(final, Finished) and len(logprobs) == final.usage.completion_tokens
    assert all(lp.logprob <= 0 and len(lp.top) == 2 for lp in logprobs)


async def test_tools_are_refused_by_name(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(InvalidRequest) as refused:
        _ = [e async for e in engine.generate(_chat(tools=(Tool(name="f"),)))]
    assert refused.value.param == "tools"
