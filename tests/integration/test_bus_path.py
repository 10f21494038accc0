"""The whole bus path in one process against a real nats-server: scheduler, aggregator and a worker
running the real llama.cpp engine, driven through the gateway's relay."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from contracts import streams
from contracts.base import now_ms
from contracts.errors import DeadlineExceeded, NoLiveWorker, Overloaded
from contracts.requests import ChatMessage, ChatRequest, CompletionRequest, Modality, Sampling
from contracts.results import AnyChunk, DeltaChunk, FinalChunk
from contracts.streams import bootstrap
from contracts.tasks import TaskState, TaskStatus
from contracts.workers import ModelEntry
from services.aggregator.app import Aggregator
from services.common.bus import Bus, connect
from services.gateway.relay import Relay, RequestStream
from services.scheduler.app import Scheduler
from services.scheduler.settings import SchedulerSettings
from services.workers.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine
from services.workers.runner import Worker
from services.workers.settings import WorkerSettings
from services.workers.tiny_model import ensure_tiny_gguf

MODEL = "tiny-int"
NO_EOS = {2: -100.0, 4: -100.0}  # keep the random model talking until max_tokens


@dataclass
class Stack:
    relay: Relay
    bus: Bus


@pytest.fixture(scope="module")
async def stack(nats_url: str) -> AsyncIterator[Stack]:
    stop = asyncio.Event()
    buses = [await connect(nats_url, name) for name in ("scheduler", "aggregator", "worker", "gateway")]
    engine = LlamaCppEngine(LlamaCppConfig(MODEL, ensure_tiny_gguf(), slots=2))
    await engine.start()
    settings = WorkerSettings(worker_id="int-1", model_id=MODEL, heartbeat_s=0.2, nats_url=nats_url)
    tasks = [
        asyncio.create_task(Scheduler(SchedulerSettings(retry_no_worker_s=0.05), buses[0]).run(stop)),
        asyncio.create_task(Aggregator(buses[1]).run(stop)),
        asyncio.create_task(Worker(settings, engine, buses[2]).run(stop)),
    ]
    relay = Relay(buses[3], dead_after_s=3.0)
    await relay.start()
    for _ in range(100):  # until the worker's first heartbeat and catalog entry arrive
        if relay.fleet.workers.serving(MODEL, time.monotonic()) and MODEL in relay.fleet.catalog:
            break
        await asyncio.sleep(0.05)
    yield Stack(relay, buses[3])
    stop.set()
    await asyncio.wait(tasks, timeout=30)
    await relay.stop()
    await engine.cleanup()
    for b in buses:
        await b.close()


def chat(max_tokens: int = 16, deadline_s: float = 30, **sampling: object) -> ChatRequest:
    return ChatRequest(
        request_id=f"chatcmpl-{uuid.uuid4().hex}",
        model=MODEL,
        stream=True,
        deadline_ms=now_ms() + int(deadline_s * 1000),
        messages=(ChatMessage(role="user", content="hello"),),
        sampling=Sampling(max_tokens=max_tokens, seed=7, **sampling),  # type: ignore[arg-type]
    )


async def drain(stream: RequestStream) -> list[AnyChunk]:
    chunks = [chunk async for chunk in stream]
    await stream.close()
    return chunks


async def task_state(bus: Bus, request_id: str) -> TaskState:
    kv = await bus.js.key_value(streams.KV_TASKS)
    for _ in range(100):
        try:
            return TaskState.decode((await kv.get(request_id)).value or b"")
        except Exception:
            await asyncio.sleep(0.02)
    raise AssertionError(f"no task state for {request_id}")


async def test_bootstrap_is_idempotent(bus: Bus) -> None:
    await bootstrap(bus.js)
    await bootstrap(bus.js)
    names = {s.config.name for s in await bus.js.streams_info()}
    assert {streams.REQUESTS, streams.ASSIGNMENTS, streams.RESULTS} <= names


async def test_streamed_chat_arrives_in_order_and_is_recorded(stack: Stack) -> None:
    request = chat(max_tokens=24, logit_bias=NO_EOS)
    chunks = await drain(await stack.relay.submit(request))
    deltas = [c for c in chunks if isinstance(c, DeltaChunk)]
    final = chunks[-1]
    assert isinstance(final, FinalChunk) and final.finish_reason == "length"
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    assert final.usage.completion_tokens == 24 == sum(d.tokens for d in deltas)
    state = await task_state(stack.bus, request.request_id)
    assert state.status is TaskStatus.completed
    assert state.text == "".join(d.text for d in deltas) and state.text.strip()


async def test_same_seed_gives_the_same_text(stack: Stack) -> None:
    texts = []
    for _ in range(2):
        chunks = await drain(await stack.relay.submit(chat(max_tokens=12)))
        texts.append("".join(c.text for c in chunks if isinstance(c, DeltaChunk)))
    assert texts[0] == texts[1]


async def test_request_is_acknowledged_once_assigned(stack: Stack) -> None:
    await drain(await stack.relay.submit(chat(max_tokens=4)))
    info = await stack.bus.js.stream_info(streams.REQUESTS)
    assert info.state.messages == 0  # work-queue: gone once the scheduler acknowledged it


async def test_cancel_stops_generation(stack: Stack) -> None:
    request = chat(max_tokens=5000, logit_bias=NO_EOS)
    stream = await stack.relay.submit(request)
    first = await stream.next()
    assert isinstance(first, DeltaChunk)
    await stream.close()  # not finished: publishes cancel.<request>
    state = await task_state(stack.bus, request.request_id)
    assert state.status is TaskStatus.cancelled
    assert state.usage is not None and state.usage.completion_tokens < 5000


async def test_two_concurrent_requests_both_finish(stack: Stack) -> None:
    streams_ = [await stack.relay.submit(chat(max_tokens=20)) for _ in range(2)]
    results = await asyncio.gather(*(drain(s) for s in streams_))
    assert all(isinstance(r[-1], FinalChunk) for r in results)


async def test_completion_request(stack: Stack) -> None:
    request = CompletionRequest(
        request_id=f"cmpl-{uuid.uuid4().hex}",
        model=MODEL,
        deadline_ms=now_ms() + 30_000,
        prompt="baba kebi",
        sampling=Sampling(max_tokens=5, seed=1),
    )
    chunks = await drain(await stack.relay.submit(request))
    assert isinstance(chunks[-1], FinalChunk) and chunks[-1].usage.prompt_tokens > 0


async def test_model_without_live_worker_is_refused(stack: Stack) -> None:
    kv = await stack.bus.js.key_value(streams.KV_MODELS)
    await kv.put("ghost", ModelEntry(id="ghost", modality=(Modality.chat,), engine="none", source="").encode())
    for _ in range(50):
        if "ghost" in stack.relay.fleet.catalog:
            break
        await asyncio.sleep(0.02)
    with pytest.raises(NoLiveWorker):
        await stack.relay.submit(chat().model_copy(update={"model": "ghost"}))


async def test_deadline_while_generating_is_an_error(stack: Stack) -> None:
    request = chat(max_tokens=100_000, deadline_s=0.5, logit_bias=NO_EOS)
    stream = await stack.relay.submit(request)
    with pytest.raises(DeadlineExceeded):
        await drain(stream)
    await stream.close()


async def test_request_nobody_can_take_fails_at_its_deadline(stack: Stack) -> None:
    # Published behind the gateway's back (it would answer 503): the scheduler retries, then gives up.
    request = chat(deadline_s=0.6).model_copy(update={"model": "nobody-serves-this"})
    stream = RequestStream(stack.bus, request)
    await stream.open()
    await stack.bus.js.publish("req.chat", request.encode())
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        await drain(stream)
    assert time.monotonic() - started < 5
    state = await task_state(stack.bus, request.request_id)
    assert state.status is TaskStatus.failed and state.error_code is not None


async def test_beyond_the_inflight_bound_is_overloaded(stack: Stack) -> None:
    small = Relay(stack.bus, dead_after_s=3.0, max_inflight_per_model=1)
    await small.start()
    for _ in range(100):
        if small.fleet.workers.serving(MODEL, time.monotonic()) and MODEL in small.fleet.catalog:
            break
        await asyncio.sleep(0.05)
    try:
        held = await small.submit(chat(max_tokens=2000, logit_bias=NO_EOS))
        with pytest.raises(Overloaded):
            await small.submit(chat(max_tokens=4))
        await held.close()
        assert small.inflight[MODEL] == 0  # closing frees the place
        await drain(await small.submit(chat(max_tokens=4)))
    finally:
        await small.stop()
