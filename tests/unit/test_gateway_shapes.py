"""OpenAI body translation and response shapes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts.errors import InvalidRequest
from contracts.results import DeltaChunk, TokenLogprob, ToolCallDelta, TopLogprob, Usage
from services.gateway.schemas import ChatCompletionBody, CompletionBody
from services.gateway.shapes import Choice, Shape, public_finish_reason


def test_chat_body_becomes_sampling_and_messages() -> None:
    body = ChatCompletionBody.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                {"role": "user", "content": "hi"},
            ],
            "max_completion_tokens": 7,
            "stop": "END",
            "seed": 3,
            "logit_bias": {"2": -100},
            "user": "ignored",
        }
    )
    s = body.sampling(default_max_tokens=256)
    assert (s.max_tokens, s.stop, s.seed, s.logit_bias) == (7, ("END",), 3, {2: -100.0})
    messages = [m.to_contract() for m in body.messages]
    assert messages[0].role == "system" and messages[0].content == "be brief"


@pytest.mark.parametrize(
    "bad",
    [
        {"model": "m", "messages": []},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 9},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"word": 1}},
        {"model": "", "messages": [{"role": "user", "content": "x"}]},
        {"messages": [{"role": "user", "content": "x"}]},
    ],
)
def test_invalid_bodies_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ChatCompletionBody.model_validate(bad)


def test_image_parts_are_collected_and_other_parts_refused() -> None:
    body = ChatCompletionBody.model_validate(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look: "},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                    ],
                }
            ],
        }
    )
    assert body.messages[0].image_urls == ["data:image/png;base64,AA=="]
    message = body.messages[0].to_contract(("data:image/png;base64,AA==",))
    assert message.content == "look: " and message.images == ("data:image/png;base64,AA==",)
    audio = ChatCompletionBody.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": ""}}]}],
        }
    )
    with pytest.raises(InvalidRequest, match="input_audio"):
        audio.messages[0].to_contract()
    missing = ChatCompletionBody.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}
    )
    with pytest.raises(InvalidRequest, match=r"image_url\.url"):
        _ = missing.messages[0].image_urls


def test_completion_takes_one_prompt() -> None:
    assert CompletionBody.model_validate({"model": "m", "prompt": ["a"]}).prompt_text == "a"
    with pytest.raises(ValidationError):
        CompletionBody.model_validate({"model": "m", "prompt": ["a", "b"]})


def test_chat_shapes_follow_openai() -> None:
    shape = Shape("id1", "m", chat=True, created=5)
    assert shape.chunk("", first=True)["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert shape.chunk("x")["object"] == "chat.completion.chunk"
    full = shape.complete([Choice(text=["hel", "lo"])], Usage(prompt_tokens=2, completion_tokens=3))
    assert full["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert full["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert shape.usage_chunk(Usage())["choices"] == []


def test_completion_shapes_follow_openai() -> None:
    shape = Shape("id2", "m", chat=False, created=5)
    assert shape.chunk("x")["choices"][0]["text"] == "x"
    assert shape.complete([Choice(text=["x"], finish_reason="length")], Usage())["object"] == "text_completion"


def test_cancelled_is_reported_as_stop() -> None:
    assert public_finish_reason("cancelled") == "stop"
    assert public_finish_reason("length") == "length"


_USER = [{"role": "user", "content": "x"}]
_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def test_tools_and_response_format_reach_the_bus_request() -> None:
    body = ChatCompletionBody.model_validate(
        {
            "model": "m",
            "messages": [
                *_USER,
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
            ],
            "tools": [_TOOL],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": False,
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
            "logprobs": True,
            "top_logprobs": 3,
        }
    )
    request = body.to_contract("r1", 1, 16)
    assert request.tools[0].name == "get_weather" and not request.parallel_tool_calls
    assert (request.tool_choice.mode, request.tool_choice.name) == ("function", "get_weather")
    assert request.messages[1].tool_calls[0].id == "c1" and request.messages[2].tool_call_id == "c1"
    assert request.response_format.type == "json_schema" and request.response_format.json_schema == {"type": "object"}
    assert (request.sampling.logprobs, request.sampling.top_logprobs) == (True, 3)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tool_choice": "required"}, "tool_choice"),  # no tools
        ({"tools": [_TOOL], "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),  # OpenAI's, served by no engine here
        ({"store": True}, "store"),  # nothing is kept: store false is fine, true is refused
        ({"top_logprobs": 2}, "top_logprobs"),  # without logprobs
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": 5}}}},
            "response_format.json_schema.schema",
        ),
    ],
)
def test_fields_that_cannot_be_honoured_are_refused_by_name(extra: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        ChatCompletionBody.model_validate({"model": "m", "messages": _USER, **extra}).to_contract("r", 1, 16)
    assert refused.value.param == param


def test_fields_openai_does_not_define_are_ignored() -> None:
    body = ChatCompletionBody.model_validate({"model": "m", "messages": _USER, "top_k": 5})
    assert body.to_contract("r", 1, 16).model  # accepted


def test_tool_calls_and_logprobs_take_openais_shapes() -> None:
    shape = Shape("id", "m", chat=True, logprobs=True, created=1)
    top = TopLogprob(token="b", logprob=-2.0, bytes=(98,))
    piece = DeltaChunk(
        request_id="id",
        seq=0,
        text="",
        tool_calls=(ToolCallDelta(index=0, id="c1", name="f", arguments='{"a"'),),
        logprobs=(TokenLogprob(token="a", logprob=-0.5, bytes=(97,), top=(top,)),),
    )
    streamed = shape.delta(piece)["choices"][0]
    assert streamed["delta"]["tool_calls"] == [
        {"index": 0, "id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a"'}}
    ]
    assert streamed["logprobs"]["content"][0]["top_logprobs"] == [{"token": "b", "logprob": -2.0, "bytes": [98]}]
    choice = Choice()
    choice.add(piece)
    choice.add(piece.model_copy(update={"tool_calls": (ToolCallDelta(index=0, arguments=": 1}"),), "logprobs": ()}))
    choice.finish_reason = "tool_calls"
    message = shape.complete([choice], Usage())["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a": 1}'}
    legacy = Shape("id", "m", chat=False, logprobs=True).complete([choice], Usage())["choices"][0]["logprobs"]
    assert legacy == {"tokens": ["a"], "token_logprobs": [-0.5], "top_logprobs": [{"b": -2.0}], "text_offset": [0]}


def test_completion_logprobs_ask_for_alternatives() -> None:
    s = CompletionBody.model_validate({"model": "m", "prompt": "a", "logprobs": 2}).sampling(8)
    assert (s.logprobs, s.top_logprobs) == (True, 2)
