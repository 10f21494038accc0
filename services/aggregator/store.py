"""Writes how each request ended into the `tasks` KV bucket."""

from __future__ import annotations

from nats.js.kv import KeyValue

from contracts.results import ErrorChunk, FinalChunk
from contracts.tasks import TaskState, TaskStatus


def final_state(request_id: str, text: str, terminal: FinalChunk | ErrorChunk) -> TaskState:
    if isinstance(terminal, ErrorChunk):
        return TaskState(
            request_id=request_id, status=TaskStatus.failed, text=text,
            error_code=terminal.code, error=terminal.message, attempts=terminal.attempt,
        )
    status = TaskStatus.cancelled if terminal.finish_reason == "cancelled" else TaskStatus.completed
    return TaskState(
        request_id=request_id, status=status, text=text, usage=terminal.usage,
        finish_reason=terminal.finish_reason, attempts=terminal.attempt, timings=terminal.timings,
    )


async def record(kv: KeyValue, state: TaskState) -> None:
    await kv.put(state.request_id, state.encode())
