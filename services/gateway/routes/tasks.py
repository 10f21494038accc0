"""The async task API, for every modality: submit, poll, follow the events (resumable), cancel.

A task's state lives in the `tasks` bucket and its events in the RESULTS stream, not in the gateway:
any gateway, or the same one after a restart, answers for any task.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from nats.js.errors import KeyNotFoundError
from pydantic import Field
from sse_starlette import EventSourceResponse, ServerSentEvent

from contracts import subjects
from contracts.control import Cancel
from contracts.errors import InvalidRequest, ModelNotFound
from contracts.requests import TEXT_MODALITIES, AnyRequest, ChatRequest, CompletionRequest, Modality
from contracts.results import AnyChunk, ErrorChunk
from contracts.tasks import FINAL_STATUSES, TASK_PREFIX, TaskState
from services.common.bus import Bus
from services.common.results import follow_results
from services.common.vectors import collect_vectors
from services.gateway.errors import STATUS, error_body
from services.gateway.files import Files
from services.gateway.intake import REQUEST_ID, LastEventId, Take, last_event
from services.gateway.limits import check_request
from services.gateway.relay import Relay
from services.gateway.routes.openai import check_engine
from services.gateway.schemas import (
    ChatCompletionBody,
    CompletionBody,
    EmbeddingsBody,
    ImageGenerationBody,
    SpeechBody,
    VideoBody,
)
from services.gateway.settings import GatewaySettings
from services.gateway.shapes import usage_dict

router = APIRouter(prefix="/v1", tags=["tasks"])


class ChatTask(ChatCompletionBody):
    modality: Literal["chat"]


class CompletionTask(CompletionBody):
    modality: Literal["completion"]


class EmbeddingTask(EmbeddingsBody):
    modality: Literal["embedding"]


class ImageTask(ImageGenerationBody):
    modality: Literal["image"]


class SpeechTask(SpeechBody):
    modality: Literal["speech"]


class VideoTask(VideoBody):
    modality: Literal["video"]


TaskBody = Annotated[
    ChatTask | CompletionTask | EmbeddingTask | ImageTask | SpeechTask | VideoTask, Field(discriminator="modality")
]


async def _to_request(body: Any, rid: str, deadline: int, request: Request) -> AnyRequest:
    settings: GatewaySettings = request.app.state.settings
    if isinstance(body, ChatTask):
        images = await body.checked_images(
            request.app.state.files, settings.max_images, settings.max_image_bytes, settings.max_image_side
        )
        return body.to_contract(rid, deadline, settings.default_max_tokens, images)
    if isinstance(body, CompletionTask):
        return body.to_contract(rid, deadline, settings.default_max_tokens)
    return body.to_contract(rid, deadline)


class TaskNotFound(ModelNotFound):
    """404 in the OpenAI shape."""


@router.post("/tasks", status_code=202)
async def create_task(body: TaskBody, take: Take) -> dict[str, Any]:
    """Queue any request; the answer carries the task id and status `queued` at once."""
    if isinstance(body, (ChatTask, CompletionTask)) and body.n > 1:
        raise InvalidRequest("`n` above 1 is not supported for tasks: a task makes one choice", param="n")
    rid = take.request_id(f"{TASK_PREFIX}{body.modality}")
    bus_request = take.prioritized(await _to_request(body, rid, take.deadline_ms, take.request), body.priority)
    check_request(bus_request, take.settings)
    await take.admit(bus_request)
    relay: Relay = take.request.app.state.relay
    if isinstance(bus_request, (ChatRequest, CompletionRequest)):
        check_engine(relay, bus_request)  # what the engine cannot honour is refused now, not failed later
    return await _task_object(take.request, await relay.enqueue(bus_request))


@router.get("/tasks/{task_id}")
async def get_task(task_id: str, request: Request) -> dict[str, Any]:
    return await _task_object(request, await _state(request.app.state.relay, task_id))


@router.delete("/tasks/{task_id}")
async def cancel_task(task_id: str, request: Request) -> dict[str, Any]:
    """Ask the fleet to stop the task: a queued task never starts, a running one stops at its next step."""
    bus: Bus = request.app.state.relay.bus
    state = await _state(request.app.state.relay, task_id)
    if state.status not in FINAL_STATUSES:
        await bus.nc.publish(subjects.cancel(task_id), Cancel(request_id=task_id, reason="client_cancelled").encode())
    return await _task_object(request, state)


@router.get("/tasks/{task_id}/events", response_model=None)
async def task_events(task_id: str, request: Request, last_event_id: LastEventId = None) -> EventSourceResponse:
    """Progress, partial results and the end, as SSE events whose ids are chunk numbers: reconnect
    with `Last-Event-ID` and the stream goes on after that event."""
    bus: Bus = request.app.state.relay.bus
    await _state(request.app.state.relay, task_id)  # 404 before the stream starts
    return EventSourceResponse(
        _events(bus, request.app.state.files, str(request.base_url), task_id, last_event(last_event_id)), ping=15
    )


async def _events(bus: Bus, files: Files, base_url: str, task_id: str, after: int) -> AsyncIterator[ServerSentEvent]:
    """Every chunk of the task from RESULTS in order (what is stored, then what comes), from `after` on."""
    async for chunk in follow_results(bus, task_id, after):
        yield _event(chunk, files, base_url)


def _event(chunk: AnyChunk, files: Files, base_url: str) -> ServerSentEvent:
    data = chunk.model_dump(mode="json", exclude={"schema_version", "request_id", "worker_id"})
    if chunk.kind == "artifact":
        data["url"] = files.url(base_url, chunk.artifact.name)
    if isinstance(chunk, ErrorChunk):
        data["error"] = error_body(STATUS.get(chunk.code, 500), chunk.message, chunk.code.value)["error"]
    return ServerSentEvent(data=json.dumps(data), event=chunk.kind, id=str(chunk.seq))


async def _state(relay: Relay, task_id: str) -> TaskState:
    if not REQUEST_ID.fullmatch(task_id):  # never a key or subject the bus would refuse
        raise TaskNotFound(f"No task `{task_id[:80]}`")
    try:
        entry = await relay.tasks.get(task_id)
    except (KeyNotFoundError, ValueError):
        raise TaskNotFound(f"No task `{task_id}`") from None
    if not entry.value:
        raise TaskNotFound(f"No task `{task_id}`")
    return TaskState.decode(entry.value)


async def _task_object(request: Request, state: TaskState) -> dict[str, Any]:
    files: Files = request.app.state.files
    base_url = str(request.base_url)
    body: dict[str, Any] = {
        "id": state.request_id,
        "object": "task",
        "status": state.status.value,
        "model": state.model,
        "modality": state.modality,
        "created": state.created_ms // 1000,
        "progress": state.progress,
        "eta_s": state.eta_s,
        "message": state.message,
        "attempts": state.attempts,
        "result": None,
        "error": None,
    }
    if state.error:
        status = STATUS.get(state.error_code, 500) if state.error_code else 500
        body["error"] = error_body(status, state.error, state.error_code.value if state.error_code else None)["error"]
    if state.status.value != "completed":
        return body
    result: dict[str, Any] = {"finish_reason": state.finish_reason}
    if state.usage is not None:
        result["usage"] = usage_dict(state.usage)
    if state.modality in {m.value for m in TEXT_MODALITIES}:
        result["text"] = state.text
    if state.artifacts:
        result["files"] = [
            {
                "id": a.name,
                "url": files.url(base_url, a.name),
                "content_type": a.content_type,
                "bytes": a.size,
                "index": a.index,
                **a.meta,
            }
            for a in state.artifacts
        ]
    if state.modality == Modality.embedding.value:
        result["embeddings"] = await _embeddings(request.app.state.relay.bus, state.request_id)
    body["result"] = result
    return body


async def _embeddings(bus: Bus, task_id: str) -> list[list[float]]:
    return [v.tolist() for v in collect_vectors([c async for c in follow_results(bus, task_id)])]
