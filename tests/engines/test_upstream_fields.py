"""The upstream engine passes OpenAI's tools and response_format through to a real server
(`python -m llama_cpp.server` on the tiny model) and reads the tool-call deltas it streams back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import jsonschema
import pytest

from contracts.base import now_ms
from contracts.errors import InvalidRequest
from contracts.requests import ChatMessage, ChatRequest, ResponseFormat, Sampling, Tool, ToolChoice
from services.workers.engine import Finished, TextDelta
from services.workers.engines.upstream import OllamaWire, UpstreamConfig, UpstreamEngine
from tests.upstream_server import ALIAS, LlamaServer

WEATHER = Tool(
    name="get_weather",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
    },
)


@pytest.fixture(scope="module")
def server() -> Iterator[LlamaServer]:
    running = LlamaServer().start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def engine(server: LlamaServer) -> AsyncIterator[UpstreamEngine]:
    upstream = UpstreamEngine(UpstreamConfig(base_url=server.url))
    await upstream.start()
    yield upstream
    await upstream.cleanup()


def _chat(**fields: object) -> ChatRequest:
    return ChatRequest(
        request_id=f"u{now_ms()}",
        model=ALIAS,
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content="Weather in Oslo?"),),
        sampling=Sampling(max_tokens=150, seed=1),
        **fields,  # type: ignore[arg-type]
    )


async def test_a_named_tool_call_passes_through_and_streams_back(engine: UpstreamEngine) -> None:
    request = _chat(tools=(WEATHER,), tool_choice=ToolChoice(mode="function", name="get_weather"))
    events = [e async for e in engine.generate(request)]
    pieces = [p for e in events if isinstance(e, TextDelta) for p in e.tool_calls]
    assert pieces and pieces[0].name == "get_weather" and pieces[0].id
    jsonschema.validate(json.loads("".join(p.arguments for p in pieces)), WEATHER.parameters)
    assert isinstance(events[-1], Finished)


async def test_json_object_passes_through(engine: UpstreamEngine) -> None:
    events = [e async for e in engine.generate(_chat(response_format=ResponseFormat(type="json_object")))]
    assert isinstance(json.loads("".join(e.text for e in events if isinstance(e, TextDelta))), dict)


def test_ollama_refuses_what_its_api_lacks_by_name() -> None:
    with pytest.raises(InvalidRequest) as refused:
        OllamaWire.body(_chat(tools=(WEATHER,)), "m", "")
    assert refused.value.param == "tools"
    _, body = OllamaWire.body(
        _chat(response_format=ResponseFormat(type="json_schema", json_schema={"type": "object"})), "m", ""
    )
    assert body["format"] == {"type": "object"}


def test_openai_logprobs_and_tool_pieces_are_read_from_chunks() -> None:
    from services.workers.engines.upstream import OpenAIWire

    piece = OpenAIWire.piece(
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f", "arguments": "{"}}]},
                    "logprobs": {"content": [{"token": "{", "logprob": -0.1, "bytes": [123], "top_logprobs": []}]},
                }
            ]
        }
    )
    assert piece.tool_calls[0].name == "f" and piece.logprobs[0].bytes == (123,)
    legacy = OpenAIWire.piece(
        {
            "choices": [
                {"text": "a", "logprobs": {"tokens": ["a"], "token_logprobs": [-1.0], "top_logprobs": [{"a": -1.0}]}}
            ]
        }
    )
    assert legacy.logprobs[0].top[0].token == "a"
