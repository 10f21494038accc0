"""OpenAI-compatible routes: chat completions, completions and models, streamed over SSE or whole."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from contracts.errors import ModalMeshError, ModelNotFound, error_for
from contracts.requests import Priority, TextRequest
from contracts.results import AnyChunk, DeltaChunk, ErrorChunk, FinalChunk
from services.common.results import follow_results, has_results
from services.gateway.errors import STATUS, error_body
from services.gateway.intake import (
    REQUEST_ID,
    Intake,
    LastEventId,
    Take,
    chunks_of,
    last_event,
    until_disconnected,
)
from services.gateway.relay import ChunkStream, Relay
from services.gateway.schemas import ChatCompletionBody, CompletionBody
from services.gateway.shapes import Shape, public_finish_reason

router = APIRouter(prefix="/v1", tags=["openai"])


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionBody, take: Take) -> Any:
    settings = take.settings
    images = await body.checked_images(
        take.request.app.state.files, settings.max_images, settings.max_image_bytes, settings.max_image_side
    )
    bus_request = body.to_contract(take.request_id("chatcmpl"), take.deadline_ms, settings.default_max_tokens, images)
    return await _serve(take, bus_request, body.include_usage, chat=True, priority=body.priority)


@router.post("/completions", response_model=None)
async def completions(body: CompletionBody, take: Take) -> Any:
    bus_request = body.to_contract(take.request_id("cmpl"), take.deadline_ms, take.settings.default_max_tokens)
    return await _serve(take, bus_request, body.include_usage, chat=False, priority=body.priority)


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Every model in the catalog, with whether a live worker serves it now."""
    relay: Relay = request.app.state.relay
    live = relay.fleet.live_workers()
    data = []
    for entry in sorted(relay.fleet.catalog.values(), key=lambda e: e.id):
        workers = [w.worker_id for w in live if entry.id in w.models]
        data.append(
            {
                "id": entry.id,
                "object": "model",
                "created": entry.created_ms // 1000,
                "owned_by": entry.owned_by,
                "live": bool(workers),
                "workers": len(workers),
                "modalities": [m.value for m in entry.modality],
                "engine": entry.engine,
            }
        )
    return {"object": "list", "data": data}


async def _serve(
    take: Intake, bus_request: TextRequest, include_usage: bool, *, chat: bool, priority: Priority | None
) -> Any:
    stream, first = await take.submit(bus_request, priority)
    # A catalog fallback that answered for want of capacity says so: its id is the response's model.
    shape = Shape(bus_request.request_id, first.model or bus_request.model, chat=chat)
    if bus_request.stream:
        return EventSourceResponse(_sse(chunks_of(stream, first), shape, include_usage), sep="\n", ping=15)
    try:
        return JSONResponse(await until_disconnected(take.request, _collect(stream, shape, first)))
    finally:
        await stream.close()


async def _collect(stream: ChunkStream, shape: Shape, first: Any) -> dict[str, Any]:
    parts: list[str] = []
    chunk = first
    while not isinstance(chunk, FinalChunk):
        if isinstance(chunk, DeltaChunk):
            parts.append(chunk.text)
        chunk = await stream.next()
    return shape.complete("".join(parts), public_finish_reason(chunk.finish_reason), chunk.usage)


def _event(data: str, id: str | None = None) -> ServerSentEvent:
    return ServerSentEvent(data, id=id, sep="\n")  # as OpenAI writes them (sse-starlette's own default is CRLF)


async def _sse(
    chunks: AsyncGenerator[AnyChunk, None], shape: Shape, include_usage: bool, role: bool = True
) -> AsyncIterator[bytes]:
    """OpenAI's stream: a role chunk, content chunks, a finish chunk (with usage), then [DONE]. Each
    content event's id is its chunk number, so a client cut off (a gateway restart) re-attaches with
    `Last-Event-ID` at `GET .../{id}/events`. If the client goes away, sse-starlette cancels this
    generator and closing the chunks cancels the request.

    The events of one chunk go out in one write, and the role event with the first of them: each
    write wakes the client once more, and the first token waited behind the role event's write."""
    head = _event(json.dumps(shape.chunk("", first=True))).encode() if role else b""
    try:
        async for chunk in chunks:
            events: list[ServerSentEvent] = []
            if isinstance(chunk, DeltaChunk) and chunk.text:
                events.append(_event(json.dumps(shape.chunk(chunk.text, worker=chunk.worker_id)), id=str(chunk.seq)))
            elif isinstance(chunk, FinalChunk):
                finish = shape.finish_chunk(public_finish_reason(chunk.finish_reason), chunk.usage)
                events.append(_event(json.dumps(finish), id=str(chunk.seq)))
                if include_usage:
                    events.append(_event(json.dumps(shape.usage_chunk(chunk.usage))))
            elif isinstance(chunk, ErrorChunk):
                raise error_for(chunk.code, chunk.message)
            if events:
                yield head + b"".join(event.encode() for event in events)
                head = b""
    except ModalMeshError as exc:
        # Headers are gone already: the error travels as an event, which the openai client raises.
        yield head + _event(json.dumps(error_body(STATUS.get(exc.code, 500), exc.message, exc.code.value))).encode()
        head = b""
    finally:
        await chunks.aclose()  # at once, not when the generator is collected: a disconnect cancels now
    yield head + _event("[DONE]").encode()


@router.get("/chat/completions/{request_id}/events", response_model=None)
async def chat_reattach(request_id: str, request: Request, last_event_id: LastEventId = None) -> EventSourceResponse:
    """The rest of a streamed chat completion, after the `Last-Event-ID` chunk, in the same shape."""
    return await _reattach(request, request_id, last_event_id, chat=True)


@router.get("/completions/{request_id}/events", response_model=None)
async def completion_reattach(
    request_id: str, request: Request, last_event_id: LastEventId = None
) -> EventSourceResponse:
    return await _reattach(request, request_id, last_event_id, chat=False)


async def _reattach(request: Request, request_id: str, last_event_id: str | None, *, chat: bool) -> EventSourceResponse:
    bus = request.app.state.relay.bus
    if not REQUEST_ID.fullmatch(request_id) or not await has_results(bus, request_id):
        raise ModelNotFound(f"No stream `{request_id[:80]}`")
    after = last_event(last_event_id)
    chunks = follow_results(bus, request_id, after)
    return EventSourceResponse(
        _sse(chunks, Shape(request_id, "", chat=chat), include_usage=False, role=after < 0), sep="\n", ping=15
    )
