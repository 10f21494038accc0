"""OpenAI's Responses API (`POST /v1/responses`) for text, as far as the chat path serves it: input
as text or messages, instructions, function tools, `text.format`, sampling, streamed as Responses
events or whole. Not served (refused by name): stored responses (`previous_response_id`, `store`),
reasoning, hosted tools (web search, file search, computer use), images and files as input."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sse_starlette import EventSourceResponse, ServerSentEvent

from contracts.errors import InvalidRequest, ModalMeshError, error_for
from contracts.requests import ChatRequest
from contracts.results import DeltaChunk, ErrorChunk, FinalChunk, Usage
from services.gateway.errors import STATUS
from services.gateway.intake import Take, chunks_of, until_disconnected
from services.gateway.routes.openai import check_engine, collect_choice
from services.gateway.schemas import ChatCompletionBody
from services.gateway.shapes import Choice

router = APIRouter(prefix="/v1", tags=["openai"])

_UNSERVED = ("previous_response_id", "reasoning", "background", "conversation", "prompt", "include")


class InputPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class InputItem(BaseModel):
    """A message of the input, or a function call and its output from an earlier turn."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["message", "function_call", "function_call_output"] = "message"
    role: Literal["user", "system", "developer", "assistant"] | None = None
    content: str | list[InputPart] | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    output: str | None = None

    def as_chat(self) -> dict[str, Any]:
        if self.type == "function_call":
            call = {
                "id": self.call_id,
                "type": "function",
                "function": {"name": self.name, "arguments": self.arguments},
            }
            return {"role": "assistant", "content": None, "tool_calls": [call]}
        if self.type == "function_call_output":
            return {"role": "tool", "tool_call_id": self.call_id, "content": self.output or ""}
        if isinstance(self.content, list):
            unserved = {p.type for p in self.content if p.type not in ("input_text", "output_text", "text")}
            if unserved:
                raise InvalidRequest(f"input content type(s) not supported: {', '.join(sorted(unserved))}", "input")
            text = "".join(p.text or "" for p in self.content)
        else:
            text = self.content or ""
        return {"role": self.role or "user", "content": text}


class ResponsesBody(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[InputItem]
    instructions: str | None = None
    stream: bool = False
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    text: dict[str, Any] | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None

    @model_validator(mode="after")
    def _served(self) -> ResponsesBody:
        for name in _UNSERVED:
            if (self.model_extra or {}).get(name):
                raise InvalidRequest(f"`{name}` is not supported by model `{self.model}`", param=name)
        if self.store:
            raise InvalidRequest("`store` is not supported: responses are not kept; send store: false", "store")
        return self

    def chat_body(self) -> ChatCompletionBody:
        """The same request as a chat completion."""
        messages = [{"role": "system", "content": self.instructions}] if self.instructions else []
        if isinstance(self.input, str):
            messages.append({"role": "user", "content": self.input})
        else:
            messages += [item.as_chat() for item in self.input]
        chat: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": self.stream,
            "max_tokens": self.max_output_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "parallel_tool_calls": self.parallel_tool_calls,
        }
        if self.tools:
            chat["tools"] = [_chat_tool(t) for t in self.tools]
        if self.tool_choice is not None:
            choice = self.tool_choice
            chat["tool_choice"] = (
                {"type": "function", "function": {"name": choice.get("name")}} if isinstance(choice, dict) else choice
            )
        if fmt := (self.text or {}).get("format"):
            chat["response_format"] = _chat_format(fmt)
        try:
            return ChatCompletionBody.model_validate({k: v for k, v in chat.items() if v is not None})
        except ValidationError as exc:  # what the Responses shape let through and the chat shape does not
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidRequest(f"{where}: {first['msg']}", param=where.split(".")[0] or None) from None


def _chat_tool(tool: dict[str, Any]) -> dict[str, Any]:
    if tool.get("type") != "function":
        raise InvalidRequest(f"tools of type {tool.get('type')!r} are not supported (only function)", "tools")
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool}
    return {"type": "function", "function": function}


def _chat_format(fmt: dict[str, Any]) -> dict[str, Any]:
    if fmt.get("type") != "json_schema":
        return {"type": fmt.get("type")}
    schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
    return {"type": "json_schema", "json_schema": schema}


class Built:
    """The Responses objects of one response: its items, as the chat path's chunks fill them."""

    def __init__(self, body: ResponsesBody, request: ChatRequest, model: str) -> None:
        self.body = body
        self.id = f"resp_{request.request_id.partition('-')[2] or secrets.token_hex(16)}"
        self.message_id = f"msg_{secrets.token_hex(12)}"
        self.model = model
        self.created_at = int(time.time())

    def message_item(self, text: str, status: str) -> dict[str, Any]:
        content = [{"type": "output_text", "text": text, "annotations": []}] if status == "completed" else []
        return {"type": "message", "id": self.message_id, "status": status, "role": "assistant", "content": content}

    @staticmethod
    def call_item(call: dict[str, Any], status: str) -> dict[str, Any]:
        return {
            "type": "function_call",
            "id": f"fc_{call['id'].removeprefix('call_')}",
            "call_id": call["id"],
            "name": call["function"]["name"],
            "arguments": call["function"]["arguments"],
            "status": status,
        }

    def output(self, choice: Choice) -> list[dict[str, Any]]:
        calls = [self.call_item(choice.calls[i], "completed") for i in sorted(choice.calls)]
        text = "".join(choice.text)
        return calls if calls and not text else [self.message_item(text, "completed"), *calls]

    def response(
        self, status: str, output: list[dict[str, Any]], usage: Usage | None, reason: str = ""
    ) -> dict[str, Any]:
        b = self.body
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": output,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if reason == "length" else None,
            "instructions": b.instructions,
            "max_output_tokens": b.max_output_tokens,
            "parallel_tool_calls": b.parallel_tool_calls is not False,
            "temperature": b.temperature,
            "top_p": b.top_p,
            "tool_choice": b.tool_choice or "auto",
            "tools": b.tools or [],
            "text": b.text or {"format": {"type": "text"}},
            "metadata": b.metadata or {},
            "store": False,
            "usage": _usage(usage) if usage is not None else None,
        }


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": usage.total_tokens,
    }


@router.post("/responses", response_model=None)
async def create_response(body: ResponsesBody, take: Take) -> Any:
    chat = body.chat_body()
    request = chat.to_contract(take.request_id("resp"), take.deadline_ms, take.settings.default_max_tokens)
    check_engine(take.request.app.state.relay, request)
    stream, first = await take.submit(request, chat.priority)
    built = Built(body, request, first.model or request.model)
    if body.stream:
        return EventSourceResponse(_events(built, chunks_of(stream, first)), sep="\n", ping=15)
    try:
        choice, usage = await until_disconnected(take.request, collect_choice(stream, first, 0))
    finally:
        await stream.close()
    status = "incomplete" if choice.finish_reason == "length" else "completed"
    return JSONResponse(built.response(status, built.output(choice), usage, choice.finish_reason))


async def _events(built: Built, chunks: AsyncIterator[Any]) -> AsyncIterator[ServerSentEvent]:
    """Responses' stream: created, in_progress, the message item and its text deltas (or function
    calls and their argument deltas), the items done, then completed (or incomplete)."""
    seq = iter(range(1_000_000))

    def event(kind: str, **data: Any) -> ServerSentEvent:
        return ServerSentEvent(json.dumps({"type": kind, "sequence_number": next(seq), **data}), event=kind, sep="\n")

    yield event("response.created", response=built.response("in_progress", [], None))
    yield event("response.in_progress", response=built.response("in_progress", [], None))
    choice, opened = Choice(), False
    message = {"item_id": built.message_id, "output_index": 0, "content_index": 0}
    try:
        async for chunk in chunks:
            if isinstance(chunk, DeltaChunk) and chunk.text:
                if not opened:
                    opened = True
                    yield event(
                        "response.output_item.added", output_index=0, item=built.message_item("", "in_progress")
                    )
                    part = {"type": "output_text", "text": "", "annotations": []}
                    yield event("response.content_part.added", **message, part=part)
                yield event("response.output_text.delta", **message, delta=chunk.text)
            if isinstance(chunk, DeltaChunk):
                choice.add(chunk)
            elif isinstance(chunk, ErrorChunk):
                raise error_for(chunk.code, chunk.message, chunk.param)
            elif isinstance(chunk, FinalChunk):
                choice.finish_reason = chunk.finish_reason
                async for done in _closing(built, choice, opened, event, chunk.usage):
                    yield done
    except ModalMeshError as exc:
        yield event("error", code=exc.code.value, message=exc.message, param=exc.param, status=STATUS.get(exc.code))


async def _closing(built: Built, choice: Choice, opened: bool, event: Any, usage: Usage) -> AsyncIterator[Any]:
    text = "".join(choice.text)
    message = {"item_id": built.message_id, "output_index": 0, "content_index": 0}
    if opened:
        yield event("response.output_text.done", **message, text=text)
        yield event(
            "response.content_part.done", **message, part={"type": "output_text", "text": text, "annotations": []}
        )
        yield event("response.output_item.done", output_index=0, item=built.message_item(text, "completed"))
    first = 1 if opened else 0
    for n, i in enumerate(sorted(choice.calls)):
        item = built.call_item(choice.calls[i], "in_progress")
        at = first + n
        yield event("response.output_item.added", output_index=at, item={**item, "arguments": ""})
        yield event(
            "response.function_call_arguments.delta", item_id=item["id"], output_index=at, delta=item["arguments"]
        )
        yield event(
            "response.function_call_arguments.done", item_id=item["id"], output_index=at, arguments=item["arguments"]
        )
        yield event("response.output_item.done", output_index=at, item={**item, "status": "completed"})
    status = "incomplete" if choice.finish_reason == "length" else "completed"
    final = built.response(status, built.output(choice), usage, choice.finish_reason)
    yield event(f"response.{status}", response=final)
