"""Writes each request's state into the `tasks` KV bucket: running with its progress, then how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any

from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.base import now_ms
from contracts.results import ErrorChunk
from contracts.tasks import FINAL_STATUSES, TaskState, TaskStatus, is_task
from services.common.bus import while_unanswered
from services.common.merge import RequestMerge

log = logging.getLogger(__name__)

WRITE_RETRY_S = 30.0  # a write NATS does not answer (a restart) is tried again this long


def running_state(request_id: str, merge: RequestMerge, started_ms: int) -> TaskState:
    """Progress so far, with the time left estimated from the pace since the first chunk."""
    fraction = merge.progress.fraction if merge.progress is not None else 0.0
    elapsed_s = (now_ms() - started_ms) / 1000
    eta = elapsed_s * (1 - fraction) / fraction if fraction > 0 else None
    return TaskState(
        request_id=request_id,
        status=TaskStatus.running,
        text=merge.merged_text,
        progress=fraction,
        eta_s=None if eta is None else round(eta, 3),
        message=merge.progress.message if merge.progress else "",
        artifacts=tuple(merge.artifacts),
        attempts=merge.attempt,
    )


def final_state(request_id: str, merge: RequestMerge) -> TaskState:
    terminal = merge.terminal
    assert terminal is not None
    text, artifacts = merge.merged_text, tuple(merge.artifacts)
    if isinstance(terminal, ErrorChunk):
        return TaskState(
            request_id=request_id,
            status=TaskStatus.failed,
            text=text,
            artifacts=artifacts,
            error_code=terminal.code,
            error=terminal.message,
            attempts=terminal.attempt,
        )
    status = TaskStatus.cancelled if terminal.finish_reason == "cancelled" else TaskStatus.completed
    return TaskState(
        request_id=request_id,
        status=status,
        text=text,
        usage=terminal.usage,
        artifacts=artifacts,
        progress=1.0 if status is TaskStatus.completed else merge.progress.fraction if merge.progress else 0.0,
        eta_s=0.0 if status is TaskStatus.completed else None,
        finish_reason=terminal.finish_reason,
        attempts=terminal.attempt,
        timings=terminal.timings,
    )


class TaskWriter:
    """Writes task states one at a time, in the order they were put, keeping what the gateway wrote
    at submission (model, modality, created) that the aggregator cannot know from chunks."""

    def __init__(self, kv: KeyValue, remember: int = 10_000, retry_s: float = WRITE_RETRY_S) -> None:
        self.kv = kv
        self.retry_s = retry_s
        self._queue: asyncio.Queue[TaskState | None] = asyncio.Queue()
        self._submitted: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._remember = remember

    def put(self, state: TaskState) -> None:
        self._queue.put_nowait(state)

    async def close(self, timeout_s: float) -> None:
        self._queue.put_nowait(None)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._queue.join(), timeout_s)

    async def run(self) -> None:
        while True:
            state = await self._queue.get()
            try:
                if state is None:
                    return
                async for attempt in while_unanswered(self.retry_s, max_wait_s=2.0):
                    with attempt:
                        await self._write(state)
            except Exception:
                log.exception("could not record the state of %s", getattr(state, "request_id", "?"))
            finally:
                self._queue.task_done()

    async def _write(self, state: TaskState) -> None:
        rid = state.request_id
        submitted = self._submitted.get(rid)
        if submitted is None and not is_task(rid):
            submitted = {}  # only the task API writes a submission to keep: no need to read one
        if submitted is None:
            try:
                entry = await self.kv.get(rid)
                old = TaskState.decode(entry.value) if entry.value else None
            except KeyNotFoundError:
                old = None
            submitted = {"model": old.model, "modality": old.modality, "created_ms": old.created_ms} if old else {}
            self._submitted[rid] = submitted
            while len(self._submitted) > self._remember:
                self._submitted.popitem(last=False)
        await self.kv.put(rid, state.model_copy(update=submitted).encode())
        if state.status in FINAL_STATUSES:
            self._submitted.pop(rid, None)
