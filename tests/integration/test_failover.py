"""Nothing lost: a worker dies mid-stream and the answer continues on another; the aggregator
restarts mid-stream and no chunk is lost or repeated. Real llama.cpp workers, a real nats-server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, Sampling
from contracts.results import AnyChunk, DeltaChunk, FinalChunk
from services.aggregator.app import Aggregator
from services.common.bus import Bus, connect
from services.common.merge import RequestMerge
from services.common.results import replay_results
from services.gateway.relay import Relay
from services.scheduler.handlers import Scheduler
from services.scheduler.settings import SchedulerSettings
from services.workers.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine
from services.workers.runner import Worker
from services.workers.settings import WorkerSettings
from services.workers.tiny_model import ensure_tiny_gguf

MODEL = "tiny-failover"
NO_EOS = {2: -100.0, 4: -100.0}
DEAD_AFTER_S = 1.0


@dataclass
class Part:
    bus: Bus
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def crash(self) -> None:
        """As a SIGKILL looks from outside: the connection drops, nothing is handed back."""
        await self.bus.nc.close()
        if self.task:
            self.task.cancel()


@dataclass
class Fleet:
    nats_url: str
    relay: Relay
    workers: dict[str, Part]
    aggregator: Part
    engines: list[LlamaCppEngine]

    async def start_aggregator(self) -> None:
        self.aggregator = Part(await connect(self.nats_url, "aggregator"))
        self.aggregator.task = asyncio.create_task(Aggregator(self.aggregator.bus).run(self.aggregator.stop))


@pytest.fixture(scope="module")
async def fleet(nats_url: str) -> AsyncIterator[Fleet]:
    stop = asyncio.Event()
    sched_bus = await connect(nats_url, "scheduler")
    scheduler = asyncio.create_task(Scheduler(SchedulerSettings(
        nats_url=nats_url, dead_after_s=DEAD_AFTER_S, heartbeat_s=0.2, retry_no_worker_s=0.05), sched_bus).run(stop))
    workers, engines = {}, []
    for wid in ("fo-a", "fo-b"):
        engine = LlamaCppEngine(LlamaCppConfig(MODEL, ensure_tiny_gguf(), slots=1))
        await engine.start()
        engines.append(engine)
        part = Part(await connect(nats_url, wid))
        settings = WorkerSettings(worker_id=wid, model_id=MODEL, heartbeat_s=0.2, nats_url=nats_url)
        part.task = asyncio.create_task(Worker(settings, engine, part.bus).run(part.stop))
        workers[wid] = part
    relay = Relay(await connect(nats_url, "gateway"), dead_after_s=DEAD_AFTER_S)
    await relay.start()
    sim = Fleet(nats_url, relay, workers, Part(sched_bus), engines)
    await sim.start_aggregator()
    while len(relay.fleet.workers.serving(MODEL, time.monotonic())) < 2 or MODEL not in relay.fleet.catalog:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    yield sim
    stop.set()
    for part in [*workers.values(), sim.aggregator]:
        part.stop.set()
        if part.task:
            part.task.cancel()
    scheduler.cancel()
    await relay.stop()
    for engine in engines:
        await engine.cleanup()
    for bus in (sched_bus, relay.bus, sim.aggregator.bus, *(p.bus for p in workers.values())):
        if not bus.nc.is_closed:
            await bus.close()


def long_chat(tokens: int) -> ChatRequest:
    return ChatRequest(request_id=f"chatcmpl-{uuid.uuid4().hex}", model=MODEL, stream=True,
                       deadline_ms=now_ms() + 60_000, messages=(ChatMessage(role="user", content="tell me more"),),
                       sampling=Sampling(max_tokens=tokens, logit_bias=NO_EOS))


async def engine_record(bus: Bus, request_id: str) -> RequestMerge:
    """What the engines generated, merged as the aggregator must: the reference for the client."""
    merge = RequestMerge()
    for chunk in await replay_results(bus, request_id):
        merge.accept(chunk)
    return merge


async def test_worker_killed_mid_stream_continues_elsewhere_without_gap_or_repeat(fleet: Fleet) -> None:
    stream = await fleet.relay.submit(long_chat(600))
    received: list[AnyChunk] = [await stream.next() for _ in range(5)]
    victim = received[-1].worker_id
    killed = time.monotonic()
    await fleet.workers[victim].crash()
    resumed_after = None
    async for chunk in stream:
        if resumed_after is None and chunk.attempt == 2:
            resumed_after = time.monotonic() - killed
        received.append(chunk)
    await stream.close()

    final = received[-1]
    assert isinstance(final, FinalChunk) and final.finish_reason == "length"
    assert final.attempt == 2 and final.worker_id != victim
    assert final.usage.completion_tokens == 600
    assert [c.seq for c in received] == list(range(len(received)))  # no gap, no repeat
    text = "".join(c.text for c in received if isinstance(c, DeltaChunk))
    assert text == (await engine_record(fleet.relay.bus, final.request_id)).merged_text
    assert resumed_after is not None and resumed_after < DEAD_AFTER_S + 2.0


async def test_aggregator_restart_mid_stream_loses_and_repeats_nothing(fleet: Fleet) -> None:
    stream = await fleet.relay.submit(long_chat(400))
    received = [await stream.next() for _ in range(3)]
    await fleet.aggregator.crash()
    await asyncio.sleep(0.3)  # chunks pile up, unacknowledged, in RESULTS
    await fleet.start_aggregator()
    async for chunk in stream:
        received.append(chunk)
    await stream.close()
    final = received[-1]
    assert isinstance(final, FinalChunk) and final.usage.completion_tokens == 400
    assert [c.seq for c in received] == list(range(len(received)))
    text = "".join(c.text for c in received if isinstance(c, DeltaChunk))
    assert text == (await engine_record(fleet.relay.bus, final.request_id)).merged_text
