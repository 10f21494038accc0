"""The llama.cpp engine on the tiny random-weight model, called directly: tool calls and JSON replies
constrained by grammars (valid whatever the weights), a constrained reply resumed after a failover,
log probabilities and penalties."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import jsonschema
import pytest

from contracts.base import now_ms
from contracts.errors import InvalidRequest
from contracts.requests import ChatMessage, ChatRequest, ResponseFormat, Sampling, Tool, ToolChoice
from services.workers.engine import EngineEvent, Finished, TextDelta
from services.workers.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine
from services.workers.tiny_model import TinySpec, ensure_tiny_gguf

WEATHER = Tool(
    name="get_weather",
    description="The weather in a city",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
CLOCK = Tool(
    name="get_time",
    parameters={
        "type": "object",
        "properties": {"zone": {"type": "integer"}, "dst": {"type": "boolean"}},
        "required": ["zone"],
        "additionalProperties": False,
    },
)
PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 10},
        "tags": {"type": "array", "items": {"enum": ["a", "b"]}, "maxItems": 3},
        "age": {"type": "integer"},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[LlamaCppEngine]:
    engine = LlamaCppEngine(LlamaCppConfig("tiny", ensure_tiny_gguf(TinySpec()), slots=1, n_ctx=1024, n_threads=1))
    await engine.start()
    yield engine
    await engine.cleanup()


def chat(seed: int = 1, max_tokens: int = 120, **fields: object) -> ChatRequest:
    return ChatRequest(
        request_id=f"c{now_ms()}",
        model="tiny",
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content="What is the weather in Oslo?"),),
        sampling=Sampling(max_tokens=max_tokens, seed=seed),
        **fields,  # type: ignore[arg-type]
    )


async def run(engine: LlamaCppEngine, request: ChatRequest, resume_text: str = "") -> tuple[list[TextDelta], Finished]:
    events: list[EngineEvent] = [e async for e in engine.generate(request, resume_text)]
    final = events[-1]
    assert isinstance(final, Finished)
    return [e for e in events if isinstance(e, TextDelta)], final


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_named_function_is_always_called_with_valid_arguments(engine: LlamaCppEngine, seed: int) -> None:
    request = chat(seed, tools=(WEATHER, CLOCK), tool_choice=ToolChoice(mode="function", name="get_weather"))
    deltas, final = await run(engine, request)
    calls = [c for d in deltas for c in d.tool_calls]
    assert final.finish_reason == "tool_calls" and not "".join(d.text for d in deltas)
    assert [c.name for c in calls] == ["get_weather"] and calls[0].id
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER.parameters)


@pytest.mark.parametrize("parallel", [True, False])
async def test_required_always_yields_calls_of_given_functions(engine: LlamaCppEngine, parallel: bool) -> None:
    request = chat(4, tools=(WEATHER, CLOCK), tool_choice=ToolChoice(mode="required"), parallel_tool_calls=parallel)
    deltas, final = await run(engine, request, "")
    calls = [c for d in deltas for c in d.tool_calls]
    assert final.finish_reason == "tool_calls" and calls
    assert parallel or len(calls) == 1
    schemas = {t.name: t.parameters for t in (WEATHER, CLOCK)}
    for call in calls:
        jsonschema.validate(json.loads(call.arguments), schemas[call.name or ""])


async def test_a_json_schema_reply_validates_and_so_does_its_continuation(engine: LlamaCppEngine) -> None:
    request = chat(5, response_format=ResponseFormat(type="json_schema", json_schema=PERSON, strict=True))
    deltas, final = await run(engine, request)
    whole = "".join(d.text for d in deltas)
    assert final.finish_reason == "stop"
    jsonschema.validate(json.loads(whole), PERSON)
    # A failover after the first few characters: the new attempt's grammar reads them first, so the
    # rest, whatever it samples, completes a valid reply (an unconstrained tail would not).
    for cut in (3, len(whole) // 2):
        rest, final = await run(engine, chat(6, response_format=request.response_format), whole[:cut])
        jsonschema.validate(json.loads(whole[:cut] + "".join(d.text for d in rest)), PERSON)


async def test_json_object_replies_parse(engine: LlamaCppEngine) -> None:
    deltas, _ = await run(engine, chat(7, max_tokens=200, response_format=ResponseFormat(type="json_object")))
    assert isinstance(json.loads("".join(d.text for d in deltas)), dict)


async def test_logprobs_come_one_per_token_with_alternatives(engine: LlamaCppEngine) -> None:
    request = chat(8, max_tokens=6)
    request = request.model_copy(update={"sampling": Sampling(max_tokens=6, seed=8, logprobs=True, top_logprobs=3)})
    deltas, final = await run(engine, request)
    logprobs = [lp for d in deltas for lp in d.logprobs]
    assert len(logprobs) == final.usage.completion_tokens
    assert "".join(lp.token for lp in logprobs) == "".join(d.text for d in deltas)
    for lp in logprobs:
        assert lp.logprob <= 0 and len(lp.top) == 3
        assert lp.top[0].logprob >= lp.top[1].logprob >= lp.top[2].logprob >= lp.logprob - 1e-6 or lp.token in {
            t.token for t in lp.top
        }


async def test_images_with_tools_are_refused_by_name(engine: LlamaCppEngine) -> None:
    request = chat(tools=(WEATHER,)).model_copy(
        update={"messages": (ChatMessage(role="user", content="x", images=("data:image/png;base64,AA==",)),)}
    )
    with pytest.raises(InvalidRequest):
        await run(engine, request)


async def test_a_schema_keyword_no_grammar_enforces_is_refused_not_ignored(engine: LlamaCppEngine) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}
    with pytest.raises(InvalidRequest) as refused:
        await run(engine, chat(response_format=ResponseFormat(type="json_schema", json_schema=schema)))
    assert refused.value.param == "response_format" and "properties.n.minimum" in refused.value.message


async def test_auto_streams_text_or_makes_calls_and_none_never_calls(engine: LlamaCppEngine) -> None:
    for seed in (1, 2):
        deltas, final = await run(engine, chat(seed, max_tokens=30, tools=(WEATHER,)))
        calls = [c for d in deltas for c in d.tool_calls]
        text = "".join(d.text for d in deltas)
        assert bool(calls) == (final.finish_reason == "tool_calls") and bool(calls) != bool(text.strip())
        for call in calls:
            jsonschema.validate(json.loads(call.arguments), WEATHER.parameters)
    deltas, final = await run(engine, chat(3, max_tokens=10, tools=(WEATHER,), tool_choice=ToolChoice(mode="none")))
    assert not [c for d in deltas for c in d.tool_calls] and final.finish_reason != "tool_calls"
