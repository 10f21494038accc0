"""What a chat's tools and response format ask of a local engine, and the calls read back from a reply."""

from __future__ import annotations

import json

import pytest

from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, ResponseFormat, Tool, ToolCall, ToolChoice
from services.workers import constrain

WEATHER = Tool(name="weather", parameters={"type": "object", "properties": {"city": {"type": "string"}}})
TIME = Tool(name="time", parameters={"type": "object", "properties": {}})


def _chat(**fields: object) -> ChatRequest:
    fields.setdefault("messages", (ChatMessage(role="user", content="hi"),))
    return ChatRequest(request_id="r", model="m", deadline_ms=now_ms() + 1000, **fields)  # type: ignore[arg-type]


def test_a_named_function_constrains_to_its_arguments() -> None:
    rule = constrain.constraint(_chat(tools=(WEATHER, TIME), tool_choice=ToolChoice(mode="function", name="weather")))
    assert rule.schema == WEATHER.parameters and rule.reply == "arguments"
    calls = constrain.tool_calls(rule, '{"city": "Oslo"}')
    assert calls is not None and calls[0].name == "weather" and json.loads(calls[0].arguments) == {"city": "Oslo"}


@pytest.mark.parametrize("parallel", [True, False])
def test_required_constrains_to_calls_of_the_given_functions(parallel: bool) -> None:
    rule = constrain.constraint(
        _chat(tools=(WEATHER, TIME), tool_choice=ToolChoice(mode="required"), parallel_tool_calls=parallel)
    )
    assert rule.schema is not None and rule.tool_reply
    names = {one["properties"]["name"]["const"] for one in (rule.schema.get("items") or rule.schema)["anyOf"]}
    assert names == {"weather", "time"} and (rule.schema.get("type") == "array") is parallel
    written = '[{"name": "time", "arguments": {}}]' if parallel else '{"name": "time", "arguments": {}}'
    calls = constrain.tool_calls(rule, written)
    assert calls is not None and [c.name for c in calls] == ["time"]


def test_auto_reads_a_call_the_model_chose_to_write_and_leaves_text_alone() -> None:
    rule = constrain.constraint(_chat(tools=(WEATHER,)))
    assert rule.schema is None
    calls = constrain.tool_calls(rule, '<tool_call>{"name": "weather", "arguments": {"city": "Rome"}}</tool_call>')
    assert calls is not None and json.loads(calls[0].arguments) == {"city": "Rome"}
    assert constrain.tool_calls(rule, "just words") is None
    assert constrain.may_be_call("  <tool") and not constrain.may_be_call("hello")


def test_response_formats_become_schemas() -> None:
    assert constrain.constraint(_chat(response_format=ResponseFormat(type="json_object"))).schema == {"type": "object"}
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert (
        constrain.constraint(_chat(response_format=ResponseFormat(type="json_schema", json_schema=schema))).schema
        == schema
    )
    assert constrain.constraint(_chat()) is constrain.FREE_TEXT


def test_a_template_without_tools_sees_them_described_and_past_calls_written_out() -> None:
    request = _chat(
        tools=(WEATHER,),
        messages=(
            ChatMessage(role="user", content="weather?"),
            ChatMessage(role="assistant", content="", tool_calls=(ToolCall(id="c1", name="weather", arguments="{}"),)),
            ChatMessage(role="tool", content="sunny", tool_call_id="c1"),
        ),
    )
    plain = constrain.template_messages(request, native_tools=False)
    assert plain[0]["role"] == "system" and "weather" in plain[0]["content"]
    assert plain[2]["content"] == '<tool_call>{"name": "weather", "arguments": {}}</tool_call>'
    native = constrain.template_messages(request, native_tools=True)
    assert native[1]["tool_calls"][0]["id"] == "c1" and native[2]["tool_call_id"] == "c1"
