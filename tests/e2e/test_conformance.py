"""OpenAI conformance with the official `openai` client against the running stack (the tiny llama
model, random weights): tool calls, JSON-schema replies, logprobs, several choices, models.retrieve,
and the 400 that names a field no engine honours."""

from __future__ import annotations

import json

import httpx
import jsonschema
import openai
import pytest

from services.devstack import LocalStack as RunningStack

pytestmark = pytest.mark.e2e
MODEL = "tiny-llama"
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["c", "f"]}},
    "required": ["city", "unit"],
    "additionalProperties": False,
}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}}]
ASK = [{"role": "user", "content": "Weather in Oslo?"}]


@pytest.fixture
def client(running_stack: RunningStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{running_stack.url}/v1", api_key=running_stack.api_key, max_retries=0)


def test_a_forced_tool_call_is_valid_and_goes_round(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=400, seed=1
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls
    call = choice.message.tool_calls[0]
    jsonschema.validate(json.loads(call.function.arguments), WEATHER)
    # The call and its result go back into the conversation, as an agent loop sends them.
    history = [
        *ASK,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "4 C"},
    ]
    follow = client.chat.completions.create(
        model=MODEL, messages=history, tools=TOOLS, tool_choice="none", max_tokens=4
    )
    assert follow.choices[0].message.tool_calls is None and follow.choices[0].message.content is not None


def test_a_named_tool_call_streams_in_openais_chunk_shape(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        max_tokens=120,
        stream=True,
        seed=2,
    )
    name, arguments, finish = "", "", None
    for chunk in stream:
        for piece in chunk.choices[0].delta.tool_calls or () if chunk.choices else ():
            name += (piece.function.name or "") if piece.function else ""
            arguments += (piece.function.arguments or "") if piece.function else ""
        finish = (chunk.choices[0].finish_reason if chunk.choices else None) or finish
    assert name == "get_weather" and finish == "tool_calls"
    jsonschema.validate(json.loads(arguments), WEATHER)


@pytest.mark.parametrize("stream", [False, True])
def test_a_json_schema_reply_validates(client: openai.OpenAI, stream: bool) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "weather", "schema": WEATHER, "strict": True}}
    if stream:
        chunks = client.chat.completions.create(
            model=MODEL,
            messages=ASK,
            response_format=fmt,
            max_tokens=120,
            seed=3,
            stream=True,  # type: ignore[arg-type]
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        reply = client.chat.completions.create(model=MODEL, messages=ASK, response_format=fmt, max_tokens=120, seed=3)  # type: ignore[arg-type]
        text = reply.choices[0].message.content or ""
    jsonschema.validate(json.loads(text), WEATHER)


def test_logprobs_and_several_choices(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=ASK, max_tokens=5, n=2, logprobs=True, top_logprobs=2, logit_bias={"2": -100, "4": -100}
    )
    assert [c.index for c in reply.choices] == [0, 1]
    for choice in reply.choices:
        assert choice.logprobs is not None and choice.logprobs.content
        assert "".join(t.token for t in choice.logprobs.content) == choice.message.content
        assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in choice.logprobs.content)
    assert reply.usage is not None and reply.usage.completion_tokens == 10
    legacy = client.completions.create(model=MODEL, prompt="baba", max_tokens=3, logprobs=1, logit_bias={"2": -100})
    assert legacy.choices[0].logprobs is not None and len(legacy.choices[0].logprobs.tokens or []) == 3


def test_models_retrieve(client: openai.OpenAI) -> None:
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_a_field_no_engine_honours_is_refused_by_name(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model=MODEL, messages=ASK, extra_body={"prediction": {"type": "content", "content": "x"}}
        )
    assert refused.value.body["param"] == "prediction"  # type: ignore[index]


def test_a_response_whole_and_streamed(client: openai.OpenAI) -> None:
    whole = client.responses.create(model=MODEL, input="hi", instructions="Be brief.", max_output_tokens=6, store=False)
    assert whole.status == "incomplete" and whole.output_text  # ran to max_output_tokens
    assert whole.usage is not None and whole.usage.output_tokens == 6
    kinds, text, final = [], "", None
    events = client.responses.create(
        model=MODEL, input=[{"role": "user", "content": "hi"}], max_output_tokens=6, store=False, stream=True
    )
    for event in events:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type in ("response.completed", "response.incomplete"):
            final = event.response
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert "response.output_text.delta" in kinds and kinds[-1] == "response.incomplete"
    assert final is not None and final.usage is not None and final.usage.output_tokens == 6
    assert final.output_text == text and text


def test_a_response_with_a_forced_function_call(client: openai.OpenAI) -> None:
    tool = {"type": "function", "name": "get_weather", "parameters": WEATHER, "strict": True}
    reply = client.responses.create(
        model=MODEL,
        input="Weather in Oslo?",
        tools=[tool],
        tool_choice="required",
        max_output_tokens=400,
        store=False,  # type: ignore[list-item]
    )
    calls = [item for item in reply.output if item.type == "function_call"]
    assert calls and calls[0].name == "get_weather"
    jsonschema.validate(json.loads(calls[0].arguments), WEATHER)
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=MODEL, input="hi", previous_response_id="resp_x", store=False)


def test_a_schema_the_engine_cannot_enforce_is_refused_by_the_engine_naming_the_field(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=MODEL, messages=ASK, response_format=fmt, max_tokens=8)  # type: ignore[arg-type]
    assert refused.value.body["param"] == "response_format"  # type: ignore[index]
    assert "minimum" in refused.value.body["message"]  # type: ignore[index]


def test_two_choices_stream_interleaved_with_their_logprobs(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=ASK,
        max_tokens=4,
        n=2,
        stream=True,
        logprobs=True,
        logit_bias={"2": -100, "4": -100},
        stream_options={"include_usage": True},
    )
    text, tokens, finish, usage = {0: "", 1: ""}, {0: "", 1: ""}, {}, None
    for chunk in stream:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            text[choice.index] += choice.delta.content or ""
            tokens[choice.index] += "".join(t.token for t in (choice.logprobs.content or [])) if choice.logprobs else ""
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    assert finish == {0: "length", 1: "length"} and all(text.values())
    assert tokens == text  # each choice's log probabilities spell its text
    assert usage is not None and usage.completion_tokens == 8


def test_a_task_refuses_what_it_cannot_honour(running_stack: RunningStack) -> None:
    body = {"modality": "chat", "model": MODEL, "messages": ASK, "n": 2}
    reply = httpx.post(f"{running_stack.url}/v1/tasks", json=body, headers=running_stack.headers, timeout=30)
    assert reply.status_code == 400 and reply.json()["error"]["param"] == "n"
