"""OpenAI-compatible routes: chat completions, completions and models, streamed over SSE or whole."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse

from contracts.errors import ModalMeshError
from contracts.requests import TextRequest
from contracts.results import DeltaChunk, FinalChunk
from services.gateway.errors import STATUS, error_body
from services.gateway.intake import Intake, Take, until_disconnected
from services.gateway.relay import ChunkStream, Relay
from services.gateway.schemas import ChatCompletionBody, CompletionBody
from services.gateway.shapes import Shape, public_finish_reason

router = APIRouter(prefix="/v1", tags=["openai"])
@router.post("/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionBody, take: Take) -> Any:
    settings = take.settings
    images = await body.checked_images(take.request.app.state.files, settings.max_images,
                                       settings.max_image_bytes, settings.max_image_side)
    bus_request = body.to_contract(take.request_id("chatcmpl"), take.deadline_ms, settings.default_max_tokens, images)
    return await _serve(take, bus_request, body.include_usage, chat=True)


@router.post("/completions", response_model=None)
async def completions(body: CompletionBody, take: Take) -> Any:
    bus_request = body.to_contract(take.request_id("cmpl"), take.deadline_ms, take.settings.default_max_tokens)
    return await _serve(take, bus_request, body.include_usage, chat=False)


@router.get("/models")
async def list_models(request: Request) -> dict[str, Any]:
    """Every model in the catalog, with whether a live worker serves it now."""
    relay: Relay = request.app.state.relay
    live = relay.fleet.live_workers()
    data = []
    for entry in sorted(relay.fleet.catalog.values(), key=lambda e: e.id):
        workers = [w.worker_id for w in live if entry.id in w.models]
        data.append({"id": entry.id, "object": "model", "created": entry.created_ms // 1000,
                     "owned_by": entry.owned_by, "live": bool(workers), "workers": len(workers),
                     "modalities": [m.value for m in entry.modality], "engine": entry.engine})
    return {"object": "list", "data": data}


async def _serve(take: Intake, bus_request: TextRequest, include_usage: bool, *, chat: bool) -> Any:
    stream, first = await take.submit(bus_request)
    shape = Shape(bus_request.request_id, bus_request.model, chat=chat)
    if bus_request.stream:
        return EventSourceResponse(_sse(stream, shape, first, include_usage), sep="\n", ping=15)
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


async def _sse(stream: ChunkStream, shape: Shape, first: Any, include_usage: bool) -> AsyncIterator[str]:
    """OpenAI's stream: a role chunk, content chunks, a finish chunk (with usage), then [DONE].
    If the client goes away, sse-starlette cancels this generator and `close` cancels the request."""
    try:
        yield json.dumps(shape.chunk("", first=True))
        chunk = first
        while True:
            if isinstance(chunk, DeltaChunk) and chunk.text:
                yield json.dumps(shape.chunk(chunk.text, worker=chunk.worker_id))
            elif isinstance(chunk, FinalChunk):
                yield json.dumps(shape.finish_chunk(public_finish_reason(chunk.finish_reason), chunk.usage))
                if include_usage:
                    yield json.dumps(shape.usage_chunk(chunk.usage))
                break
            chunk = await stream.next()
    except ModalMeshError as exc:
        # Headers are gone already: the error travels as an event, which the openai client raises.
        yield json.dumps(error_body(STATUS.get(exc.code, 500), exc.message, exc.code.value))
    finally:
        await stream.close()
    yield "[DONE]"
