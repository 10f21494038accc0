"""What a chat's tools and response format ask of a local engine: the JSON schema its reply must
follow (for a grammar), the conversation as the chat template sees it, and the tool calls read back
out of the reply.

Tool calls are written the way Hermes and Qwen chat templates teach their models:
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>`. When the client requires a call (`required`
or a named function), decoding is constrained by a grammar built from the functions' parameter
schemas, so even a model with random weights makes a valid call.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from contracts.requests import ChatMessage, ChatRequest, Tool
from contracts.results import ToolCallDelta
from services.workers.chat_format import openai_message

MAX_CALLS = 4  # calls in one reply under `required`: a grammar's array must end somewhere
CALL_OPEN = "<tool_call>"
CALL_CLOSE = "</tool_call>"


def _call_schema(tool: Tool) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"name": {"const": tool.name}, "arguments": tool.parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Constraint:
    """How one reply is constrained: `schema` (None: free text) and how to read the reply.

    `reply`: "text" (plain text, or in `auto` a tool call the model chose to write), "arguments" (the
    text is the named function's arguments), "call" (one {"name", "arguments"} object) or "calls"
    (an array of them)."""

    schema: dict[str, Any] | None
    reply: str
    function: str | None = None

    @property
    def tool_reply(self) -> bool:
        return self.reply != "text"


FREE_TEXT = Constraint(schema=None, reply="text")


def constraint(request: ChatRequest) -> Constraint:
    """The constraint the request's tool choice and response format put on the reply."""
    mode = request.tool_choice.mode if request.tools else "none"
    if mode == "function":
        tool = next(t for t in request.tools if t.name == request.tool_choice.name)
        return Constraint(schema=tool.parameters, reply="arguments", function=tool.name)
    if mode == "required":
        calls = [_call_schema(t) for t in request.tools]
        one: dict[str, Any] = calls[0] if len(calls) == 1 else {"anyOf": calls}
        if request.parallel_tool_calls:
            return Constraint(
                schema={"type": "array", "items": one, "minItems": 1, "maxItems": MAX_CALLS}, reply="calls"
            )
        return Constraint(schema=one, reply="call")
    fmt = request.response_format
    if fmt.type == "json_object":
        return Constraint(schema={"type": "object"}, reply="text")
    if fmt.type == "json_schema":
        return Constraint(schema=fmt.json_schema or {"type": "object"}, reply="text")
    return FREE_TEXT


def template_messages(request: ChatRequest, native_tools: bool) -> list[dict[str, Any]]:
    """The conversation for a chat template. A template that knows tools (`native_tools`) gets
    OpenAI's shapes; one that does not gets the tools described in a system turn and past calls
    written out as text, so any model sees what was called and what came back."""
    messages = [_message(m, native_tools) for m in request.messages]
    if request.tools and request.tool_choice.mode != "none" and not native_tools:
        messages.insert(0, {"role": "system", "content": tools_prompt(request.tools)})
    return messages


def tools_prompt(tools: tuple[Tool, ...]) -> str:
    listing = "\n".join(
        json.dumps({"name": t.name, "description": t.description, "parameters": t.parameters}) for t in tools
    )
    return (
        "You may call functions. To call one, answer with "
        f'{CALL_OPEN}{{"name": <function name>, "arguments": <arguments object>}}{CALL_CLOSE}.\n'
        f"Functions:\n{listing}"
    )


def _message(message: ChatMessage, native_tools: bool) -> dict[str, Any]:
    if native_tools:
        return openai_message(message)
    out: dict[str, Any] = {"role": message.role, "content": message.content}
    if message.name:
        out["name"] = message.name
    written = "".join(
        f'{CALL_OPEN}{{"name": {json.dumps(c.name)}, "arguments": {c.arguments}}}{CALL_CLOSE}'
        for c in message.tool_calls
    )
    out["content"] = message.content + written
    return out


def call_id() -> str:
    return f"call_{secrets.token_hex(12)}"


def tool_calls(constraint: Constraint, text: str) -> tuple[ToolCallDelta, ...] | None:
    """The calls a finished reply holds, each whole; None when it holds none (plain text)."""
    if constraint.reply == "arguments":
        return (ToolCallDelta(index=0, id=call_id(), name=constraint.function, arguments=text.strip()),)
    if constraint.reply == "text":
        body = text.strip()
        if not (body.startswith(CALL_OPEN) and body.endswith(CALL_CLOSE)):
            return None
        parts = [p.strip() for p in body.split(CALL_CLOSE) if p.strip()]
        if not all(p.startswith(CALL_OPEN) for p in parts):
            return None
        calls = [_parsed(p[len(CALL_OPEN) :]) for p in parts]
    else:
        parsed = _parsed(text)
        calls = parsed if isinstance(parsed, list) else [parsed]
    if not calls or not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in calls):
        return None
    return tuple(
        ToolCallDelta(index=i, id=call_id(), name=c["name"], arguments=json.dumps(c.get("arguments", {})))
        for i, c in enumerate(calls)
    )


def _parsed(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def may_be_call(text: str) -> bool:
    """Whether a reply that begins with `text` may still turn out to be a tool call (in `auto`)."""
    head = text.lstrip()
    return CALL_OPEN.startswith(head) or head.startswith(CALL_OPEN)


# What llama-cpp-python's schema-to-grammar converter enforces (llama_cpp/llama_grammar.py,
# SchemaConverter.visit), and the keywords that only annotate. Anything else (minimum, multipleOf,
# uniqueItems, not, if/then ...) a grammar from it would silently not enforce: refused instead.
_ENFORCED = frozenset(
    {"type", "$ref", "oneOf", "anyOf", "allOf", "const", "enum", "properties", "additionalProperties", "required"}
    | {"items", "prefixItems", "minItems", "maxItems", "pattern", "minLength", "maxLength", "format"}
)
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "$schema", "$id", "$defs", "definitions", "$comment", "strict"}
)
_FORMATS = frozenset({"date", "time", "date-time"})
_SUBSCHEMAS = ("items", "additionalProperties")
_SUBSCHEMA_LISTS = ("oneOf", "anyOf", "allOf", "prefixItems")
_SUBSCHEMA_MAPS = ("properties", "$defs", "definitions")


def unenforced(schema: Any, at: str = "") -> list[str]:
    """The places in `schema` (as `path.keyword`) that a grammar cannot enforce."""
    if not isinstance(schema, dict):
        return []
    found = [f"{at}{k}" for k in schema if k not in _ENFORCED | _ANNOTATIONS]
    if "format" in schema and schema["format"] not in _FORMATS:
        found.append(f"{at}format={schema['format']}")
    for key in _SUBSCHEMAS:
        found += unenforced(schema.get(key), f"{at}{key}.")
    for key in _SUBSCHEMA_LISTS:
        for i, sub in enumerate(schema.get(key) or ()):
            found += unenforced(sub, f"{at}{key}[{i}].")
    for key in _SUBSCHEMA_MAPS:
        for name, sub in (schema.get(key) or {}).items():
            found += unenforced(sub, f"{at}{key}.{name}.")
    return found
