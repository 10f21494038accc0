"""OpenAI-compatible routes: chat completions, completions and models, streamed over SSE or whole."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from contracts.capabilities import check_fields
from contracts.errors import ModalMeshError, ModelNotFound, error_for
from contracts.requests import TextRequest
from contracts.results import AnyChunk, DeltaChunk, ErrorChunk, FinalChunk, Usage
from contracts.workers import ModelEntry
from services.common.results import follow_results, has_results
from services.gateway.auth import KeyEntry
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
from services.gateway.shapes import Choice, Shape, public_finish_reason

router = APIRouter(prefix="/v1", tags=["openai"])
log = logging.getLogger(__name__)


@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionBody, take: Take) -> Any:
    settings = take.settings
    images = await body.checked_images(
        take.request.app.state.files, settings.max_images, settings.max_image_bytes, settings.max_image_side
    )
    bus_request = body.to_contract(take.request_id("chatcmpl"), take.deadline_ms, settings.default_max_tokens, images)
    return await _serve(take, bus_request, body, chat=True)


@router.post("/completions", response_model=None)
async def completions(body: CompletionBody, take: Take) -> Any:
    bus_request = body.to_contract(take.request_id("cmpl"), take.deadline_ms, take.settings.default_max_tokens)
    return await _serve(take, bus_request, body, chat=False)


def _model(entry: ModelEntry, relay: Relay) -> dict[str, Any]:
    workers = [w.worker_id for w in relay.fleet.live_workers() if entry.id in w.models]
    return {
        "id": entry.id,
        "object": "model",
        "created": entry.created_ms // 1000,
        "owned_by": entry.owned_by,
        "live": bool(workers),
        "workers": len(workers),
        "modalities": [m.value for m in entry.modality],
        "engine": entry.engine,
    }


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Every model in the catalog that the API key may use, with whether a live worker serves it now."""
    relay: Relay = request.app.state.relay
    key: KeyEntry = request.state.api_key
    models = sorted((e for e in relay.fleet.catalog.values() if key.allows(e.id)), key=lambda e: e.id)
    return {"object": "list", "data": [_model(e, relay) for e in models]}


@router.get("/models/{model_id:path}")
async def retrieve_model(model_id: str, request: Request) -> dict[str, Any]:
    """One catalog model (the `openai` client's `models.retrieve`)."""
    relay: Relay = request.app.state.relay
    entry = relay.fleet.catalog.get(model_id)
    key: KeyEntry = request.state.api_key
    if entry is None or not key.allows(model_id):  # as in the list: a key sees only its models
        raise ModelNotFound(f"The model `{model_id[:200]}` does not exist")
    return _model(entry, relay)


def check_engine(relay: Relay, bus_request: TextRequest) -> None:
    """Refuse, before anything is sent, a field the engine that serves the model cannot honour."""
    entry = relay.fleet.catalog.get(bus_request.model)
    if entry is not None:
        check_fields(entry.engine, bus_request)


def _choices(bus_request: TextRequest, n: int) -> list[TextRequest]:
    """One request per choice; with a seed, each choice its own (seed + index), so they differ."""
    if n == 1:
        return [bus_request]
    s = bus_request.sampling
    return [
        bus_request.model_copy(
            update={
                "request_id": f"{bus_request.request_id}-{i}",
                "sampling": s.model_copy(update={"seed": None if s.seed is None else s.seed + i}),
            }
        )
        for i in range(n)
    ]


async def _serve(
    take: Intake, bus_request: TextRequest, body: ChatCompletionBody | CompletionBody, *, chat: bool
) -> Any:
    check_engine(take.request.app.state.relay, bus_request)
    if body.user:
        log.info("request %s for user %s", bus_request.request_id, body.user[:64])
    submitted: list[tuple[ChunkStream, AnyChunk]] = []
    try:
        for one in _choices(bus_request, body.n):
            submitted.append(await take.submit(one, body.priority))
    except BaseException:
        await asyncio.gather(*(stream.close() for stream, _ in submitted))
        raise
    first = submitted[0][1]
    # A catalog fallback that answered for want of capacity says so: its id is the response's model.
    shape = Shape(bus_request.request_id, first.model or bus_request.model, chat=chat, logprobs=_logprobs(bus_request))
    if bus_request.stream:
        streams = [chunks_of(stream, first) for stream, first in submitted]
        return EventSourceResponse(_sse_choices(streams, shape, body.include_usage), sep="\n", ping=15)
    try:
        gathered = asyncio.gather(*(collect_choice(stream, first, i) for i, (stream, first) in enumerate(submitted)))
        results: list[tuple[Choice, Usage]] = await until_disconnected(take.request, gathered)
        return JSONResponse(shape.complete([c for c, _ in results], _summed([u for _, u in results])))
    finally:
        await asyncio.gather(*(stream.close() for stream, _ in submitted))


def _logprobs(bus_request: TextRequest) -> bool:
    return bus_request.sampling.logprobs


def _summed(usages: list[Usage]) -> Usage:
    """n choices of one prompt: the prompt counts once, as OpenAI counts it."""
    return Usage(
        prompt_tokens=usages[0].prompt_tokens if usages else 0,
        completion_tokens=sum(u.completion_tokens for u in usages),
    )


async def collect_choice(stream: ChunkStream, first: Any, index: int) -> tuple[Choice, Usage]:
    choice = Choice(index=index)
    chunk = first
    while not isinstance(chunk, FinalChunk):
        if isinstance(chunk, DeltaChunk):
            choice.add(chunk)
        elif isinstance(chunk, ErrorChunk):
            raise error_for(chunk.code, chunk.message, chunk.param)
        chunk = await stream.next()
    choice.finish_reason = public_finish_reason(chunk.finish_reason)
    return choice, chunk.usage


async def _sse_choices(
    streams: list[AsyncGenerator[AnyChunk, None]], shape: Shape, include_usage: bool
) -> AsyncIterator[bytes]:
    """One choice streams as it always did; several stream interleaved, each chunk with its index."""
    if len(streams) == 1:
        async for event in _sse(streams[0], shape, include_usage):
            yield event
        return
    usages: list[Usage] = []
    for index in range(len(streams)):
        yield _event(json.dumps(shape.chunk("", first=True, index=index))).encode()
    try:
        async for index, chunk in _interleaved(streams):
            if isinstance(chunk, DeltaChunk) and (chunk.text or chunk.tool_calls):
                yield _event(json.dumps(shape.delta(chunk, index))).encode()
            elif isinstance(chunk, FinalChunk):
                usages.append(chunk.usage)
                finish = shape.finish_chunk(public_finish_reason(chunk.finish_reason), None, index)
                yield _event(json.dumps(finish)).encode()
            elif isinstance(chunk, ErrorChunk):
                raise error_for(chunk.code, chunk.message, chunk.param)
        if include_usage:
            yield _event(json.dumps(shape.usage_chunk(_summed(usages)))).encode()
    except ModalMeshError as exc:
        yield _event(json.dumps(_stream_error(exc))).encode()
    finally:
        await asyncio.gather(*(s.aclose() for s in streams))
    yield _event("[DONE]").encode()


async def _interleaved(streams: list[AsyncGenerator[AnyChunk, None]]) -> AsyncIterator[tuple[int, AnyChunk]]:
    """The chunks of every stream as they come, each with its stream's index."""
    queue: asyncio.Queue[tuple[int, AnyChunk | None]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncGenerator[AnyChunk, None]) -> None:
        try:
            async for chunk in stream:
                await queue.put((index, chunk))
        finally:
            await queue.put((index, None))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    try:
        open_streams = len(streams)
        while open_streams:
            index, chunk = await queue.get()
            if chunk is None:
                open_streams -= 1
            else:
                yield index, chunk
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _stream_error(exc: ModalMeshError) -> dict[str, object]:
    return error_body(STATUS.get(exc.code, 500), exc.message, exc.code.value, exc.param)


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
            if isinstance(chunk, DeltaChunk) and (chunk.text or chunk.tool_calls):
                events.append(_event(json.dumps(shape.delta(chunk)), id=str(chunk.seq)))
            elif isinstance(chunk, FinalChunk):
                finish = shape.finish_chunk(public_finish_reason(chunk.finish_reason), chunk.usage)
                events.append(_event(json.dumps(finish), id=str(chunk.seq)))
                if include_usage:
                    events.append(_event(json.dumps(shape.usage_chunk(chunk.usage))))
            elif isinstance(chunk, ErrorChunk):
                raise error_for(chunk.code, chunk.message, chunk.param)
            if events:
                yield head + b"".join(event.encode() for event in events)
                head = b""
    except ModalMeshError as exc:
        # Headers are gone already: the error travels as an event, which the openai client raises.
        yield head + _event(json.dumps(_stream_error(exc))).encode()
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
