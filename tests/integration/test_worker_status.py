"""A worker tells the scheduler of a freed slot at once: the scheduler holds waiting requests until it
hears of one, so a freed slot left for the next coalesced status (or heartbeat) is time a waiting
request spends doing nothing. A real NATS server and a real llama.cpp worker; the test plays the
scheduler's side of the bus."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import nats.errors
import pytest
from nats.aio.subscription import Subscription

from contracts import subjects
from contracts.assignments import Assignment
from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, Sampling
from contracts.results import FinalChunk, decode_chunk
from contracts.workers import WorkerStatus
from services.common.bus import Bus, connect
from services.workers import runner
from services.workers.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine
from services.workers.runner import Worker
from services.workers.settings import WorkerSettings
from services.workers.tiny_model import ensure_tiny_gguf

MODEL = "tiny-status"
WORKER = "status-w1"
SLOW_S = 60.0  # heartbeats and coalesced statuses: far beyond what the test waits


@pytest.fixture
async def statuses(nats_url: str, bus: Bus, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Subscription]:
    """A one-slot worker whose heartbeats and coalesced statuses are a minute apart, and its statuses
    from after its start."""
    monkeypatch.setattr(runner, "STATUS_COALESCE_S", SLOW_S)
    sub = await bus.nc.subscribe(subjects.worker_status(WORKER))
    engine = LlamaCppEngine(LlamaCppConfig(MODEL, ensure_tiny_gguf(), slots=1, n_threads=1))
    await engine.start()
    stop = asyncio.Event()
    worker_bus = await connect(nats_url, WORKER)
    settings = WorkerSettings(worker_id=WORKER, model_id=MODEL, heartbeat_s=SLOW_S, nats_url=nats_url)
    task = asyncio.create_task(Worker(settings, engine, worker_bus).run(stop))
    try:
        assert WorkerStatus.decode((await sub.next_msg(timeout=30)).data).slots_free == 1
        with contextlib.suppress(nats.errors.TimeoutError):
            while True:  # the statuses of its start (heartbeat, ready) until a second's quiet
                await sub.next_msg(timeout=1)
        yield sub
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await engine.cleanup()
        await worker_bus.close()
        await sub.unsubscribe()  # else closing the test's connection waits for its unread messages


async def test_a_freed_slot_is_announced_at_once_not_with_the_next_status(statuses: Subscription, bus: Bus) -> None:
    request = ChatRequest(
        request_id=f"chatcmpl-{uuid.uuid4().hex}",
        model=MODEL,
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content="hello"),),
        sampling=Sampling(max_tokens=4),
    )
    results = await bus.nc.subscribe(subjects.result(request.request_id))
    await bus.js.publish(subjects.assign(WORKER), Assignment(worker_id=WORKER, request=request).encode())

    # The request starts within SLOW_S of the worker's last status, so its "slot taken" change waits
    # out the coalescing delay; the slot freed at its end must not wait behind it.
    status = WorkerStatus.decode((await statuses.next_msg(timeout=10)).data)
    assert status.slots_free == 1 and status.outstanding == 0
    while not isinstance(decode_chunk((await results.next_msg(timeout=5)).data), FinalChunk):
        pass  # the request did finish
    await results.unsubscribe()
