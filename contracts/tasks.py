"""Task state in the `tasks` KV bucket: the aggregator's record of how each request ended."""

from __future__ import annotations

from enum import Enum

from pydantic import Field

from contracts.base import Message, now_ms
from contracts.errors import ErrorCode
from contracts.results import Artifact, Timings, Usage


class TaskStatus(str, Enum):
    queued = "queued"
    running = "running"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


TASK_PREFIX = "task-"  # ids of requests submitted through the task API start with it


def is_task(request_id: str) -> bool:
    return request_id.startswith(TASK_PREFIX)


FINAL_STATUSES = frozenset({TaskStatus.completed, TaskStatus.failed, TaskStatus.cancelled})


class TaskState(Message):
    request_id: str
    status: TaskStatus
    model: str = ""
    modality: str = ""
    text: str = Field(default="", description="The merged output, for text modalities.")
    progress: float = Field(default=0.0, ge=0.0, le=1.0)
    eta_s: float | None = Field(default=None, description="Estimated seconds left, from progress so far.")
    message: str = Field(default="", description="The latest progress message.")
    artifacts: tuple[Artifact, ...] = ()
    created_ms: int = Field(default_factory=now_ms)
    usage: Usage | None = None
    finish_reason: str | None = None
    timings: Timings | None = Field(default=None, description="What the engine measured of its own run.")
    error_code: ErrorCode | None = None
    error: str | None = None
    attempts: int = 1
    updated_ms: int = Field(default_factory=now_ms)
