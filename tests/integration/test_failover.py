"""Nothing lost: a worker dies mid-stream and the answer continues on another; the aggregator
restarts mid-stream and no chunk is lost or repeated. Real llama.cpp workers, a real nats-server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from contracts import dedup, subjects
from contracts.assignments import Assignment
from contracts.base import now_ms
from contracts.errors import EngineError
from contracts.requests import ChatMessage, ChatRequest, Sampling, SpeechRequest
from contracts.results import AnyChunk, DataChunk, DeltaChunk, FinalChunk, ProgressChunk
from services.aggregator.app import Aggregator
from services.common.bus import Bus, connect
from services.common.merge import RequestMerge
from services.common.results import replay_results
from services.gateway.relay import ChunkStream, Relay, RequestStream
from services.scheduler.app import Scheduler
from services.scheduler.failover import Failover, queued_assignments
from services.scheduler.settings import SchedulerSettings
from services.workers.engines.espeak import EspeakEngine
from services.workers.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine
from services.workers.runner import Worker
from services.workers.settings import WorkerSettings
from services.workers.tiny_model import TinySpec, ensure_tiny_gguf
from tests.natsserver import NatsServer

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


@asynccontextmanager
async def running_fleet(
    nats_url: str, worker_ids: tuple[str, ...], model_path: Path, model: str = MODEL, schedulers: int = 1
) -> AsyncIterator[Fleet]:
    """Schedulers, an aggregator, a relay and one single-slot llama.cpp worker per id, in process."""
    stop = asyncio.Event()
    sched_buses = [await connect(nats_url, f"scheduler-{i}") for i in range(schedulers)]
    settings = SchedulerSettings(nats_url=nats_url, dead_after_s=DEAD_AFTER_S, heartbeat_s=0.2, retry_no_worker_s=0.05)
    running = [
        asyncio.create_task(Scheduler(settings, bus, scheduler_id=f"sched-{i}").run(stop))
        for i, bus in enumerate(sched_buses)
    ]
    workers, engines = {}, []
    for wid in worker_ids:
        engine = LlamaCppEngine(LlamaCppConfig(model, model_path, slots=1, n_threads=1))
        await engine.start()
        engines.append(engine)
        part = Part(await connect(nats_url, wid))
        settings = WorkerSettings(worker_id=wid, model_id=model, heartbeat_s=0.2, nats_url=nats_url)
        part.task = asyncio.create_task(Worker(settings, engine, part.bus).run(part.stop))
        workers[wid] = part
    relay = Relay(await connect(nats_url, "gateway"), dead_after_s=DEAD_AFTER_S)
    await relay.start()
    sim = Fleet(nats_url, relay, workers, Part(sched_buses[0]), engines)
    await sim.start_aggregator()
    while (  # noqa: ASYNC110
        len(relay.fleet.workers.serving(model, time.monotonic())) < len(worker_ids) or model not in relay.fleet.catalog
    ):
        await asyncio.sleep(0.05)
    try:
        yield sim
    finally:
        stop.set()
        for part in [*workers.values(), sim.aggregator]:
            part.stop.set()
            if part.task:
                part.task.cancel()
        for task in running:
            task.cancel()
        await relay.stop()
        for engine in engines:
            await engine.cleanup()
        for bus in (*sched_buses, relay.bus, sim.aggregator.bus, *(p.bus for p in workers.values())):
            if not bus.nc.is_closed:
                await bus.close()


@pytest.fixture(scope="module")
async def fleet(nats_url: str) -> AsyncIterator[Fleet]:
    async with running_fleet(nats_url, ("fo-a", "fo-b"), ensure_tiny_gguf()) as sim:
        yield sim


def long_chat(tokens: int, model: str = MODEL) -> ChatRequest:
    return ChatRequest(
        request_id=f"chatcmpl-{uuid.uuid4().hex}",
        model=model,
        stream=True,
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content="tell me more"),),
        sampling=Sampling(max_tokens=tokens, logit_bias=NO_EOS),
    )


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


# Slower than the test model (about 4x), so the survivors' answers outlast the dead worker's detection.
SLOWER = TinySpec(n_embd=256, n_layer=4, n_head=4, n_ff=704)


async def test_a_dead_workers_stream_takes_the_first_slot_that_frees_not_a_busy_workers_queue(tmp_path: Path) -> None:
    """Every survivor busy when the death is noticed: the stream is not queued behind the running
    answer of the first survivor by name (fw-b, whose answer is long), but waits and continues on
    whichever frees first (fw-c, whose answer is cancelled). On a server of its own: the module's
    fleet has a scheduler of its own, which would share the work."""
    slower = "tiny-failover-slower"
    server = NatsServer(store=tmp_path).start()
    try:
        async with running_fleet(server.url, ("fw-a", "fw-b", "fw-c"), ensure_tiny_gguf(SLOWER), slower) as fleet:
            await _first_free_slot_scenario(fleet, slower)
    finally:
        server.stop()


async def _first_free_slot_scenario(fleet: Fleet, model: str) -> None:
    victim = await fleet.relay.submit(long_chat(300, model))
    received: list[AnyChunk] = [await victim.next() for _ in range(3)]
    busy = {}
    for _ in ("fw-b", "fw-c"):
        stream = await fleet.relay.submit(long_chat(1800, model))
        busy[(await stream.next()).worker_id] = stream
    assert received[-1].worker_id == "fw-a" and set(busy) == {"fw-b", "fw-c"}  # one request per worker

    await fleet.workers["fw-a"].crash()
    await asyncio.sleep(DEAD_AFTER_S + 0.6)  # noticed dead; fw-b and fw-c still answering
    await busy["fw-c"].close()  # cancelled: fw-c frees first
    async for chunk in victim:
        received.append(chunk)
    await victim.close()
    await busy["fw-b"].close()

    resumed = [c for c in received if c.attempt == 2]
    assert resumed and {c.worker_id for c in resumed} == {"fw-c"}
    final = received[-1]
    assert isinstance(final, FinalChunk) and final.usage.completion_tokens == 300
    assert [c.seq for c in received] == list(range(len(received)))  # no gap, no repeat


async def test_workers_cut_off_by_a_nats_restart_keep_their_streams(tmp_path: Path) -> None:
    """NATS down for longer than `dead_after_s`: the scheduler hears no heartbeat and declares every
    worker dead. They were cut off, not dead: once their heartbeats come back, each keeps what it
    was answering (one attempt, one worker), instead of having it moved and run twice."""
    model = "tiny-failover-cutoff"
    server = NatsServer(store=tmp_path).start()
    try:
        async with running_fleet(server.url, ("fc-a", "fc-b"), ensure_tiny_gguf(SLOWER), model) as fleet:
            stream = await fleet.relay.submit(long_chat(1500, model))
            received: list[AnyChunk] = [await stream.next() for _ in range(3)]
            server.stop()
            await asyncio.sleep(DEAD_AFTER_S + 0.5)
            server.start()
            async for chunk in stream:
                received.append(chunk)
            await stream.close()
    finally:
        server.stop()

    final = received[-1]
    assert isinstance(final, FinalChunk) and final.usage.completion_tokens == 1500
    assert {(c.attempt, c.worker_id) for c in received} == {(1, received[0].worker_id)}
    assert [c.seq for c in received] == list(range(len(received)))


async def test_a_scheduler_that_first_hears_a_restarted_worker_moves_what_its_old_process_held(bus: Bus) -> None:
    """The worker restarted while no scheduler watched (the scheduler was restarting too, as in the
    chaos bench): its first heartbeat to the new scheduler moves the assignment made before that
    process started, at once rather than at the redelivery timeout, and leaves the one made since."""
    started = now_ms()
    old = Assignment(worker_id="fh-a", request=long_chat(50), assigned_ms=started - 5_000)
    since = Assignment(worker_id="fh-a", request=long_chat(50), assigned_ms=started + 10)
    for assignment in (old, since):
        await bus.js.publish(subjects.assign("fh-a"), assignment.encode(), headers=dedup.assignment(assignment))
    moves = Failover(bus, choose=lambda request, exclude: "fh-b")
    await moves.heard("fh-a", started)
    await moves.settled()

    async def queued(worker: str) -> list[Assignment]:
        return [assignment async for _, assignment in queued_assignments(bus, worker)]

    moved = await queued("fh-b")
    assert [(a.request_id, a.attempt) for a in moved] == [(old.request_id, 2)]
    assert [a.request_id for a in await queued("fh-a")] == [since.request_id]
    await moves.heard("fh-a", started)  # its next heartbeat: nothing more to move
    await moves.settled()
    assert len(await queued("fh-b")) == 1 and not moves.orphaned


async def test_a_stream_whose_workers_died_under_it_max_attempts_times_ends_in_a_clear_error(fleet: Fleet) -> None:
    """The attempt limit: the third attempt's worker is dead too; the client is told so (an
    `engine_error` naming the attempts), not left waiting, and RESULTS ends the same way."""
    request = long_chat(50)
    stream = RequestStream(fleet.relay.bus, request)
    await stream.open()
    failover = Failover(fleet.relay.bus, choose=lambda request, exclude: "fo-a", max_attempts=3)
    assert await failover.move(Assignment(worker_id="fo-gone", attempt=3, request=request))
    with pytest.raises(EngineError, match="gave up after 3 attempts"):
        await stream.next()
    await stream.close()
    record = await engine_record(fleet.relay.bus, request.request_id)
    assert record.done and record.terminal is not None and record.terminal.attempt == 4


def _runs(worker_ids: tuple[str, ...], model: str) -> float:
    """Requests the engines of these workers have run to the end (their Prometheus counter)."""
    return sum(
        REGISTRY.get_sample_value("modalmesh_worker_requests_total", {"worker": wid, "model": model, "outcome": "ok"})
        or 0.0
        for wid in worker_ids
    )


async def _whole(stream: ChunkStream) -> list[AnyChunk]:
    chunks = [chunk async for chunk in stream]
    await stream.close()
    return chunks


async def test_two_schedulers_at_once_assign_each_request_once(tmp_path: Path) -> None:
    """Two schedulers share the request stream: every request is assigned once, so each engine run
    is a different request, and each answer comes from one attempt on one worker."""
    model, workers = "tiny-two-schedulers", ("ts-a", "ts-b")
    server = NatsServer(store=tmp_path).start()
    try:
        async with running_fleet(server.url, workers, ensure_tiny_gguf(), model, schedulers=2) as fleet:
            before = _runs(workers, model)
            streams = [await fleet.relay.submit(long_chat(20, model)) for _ in range(12)]
            answers = await asyncio.gather(*(_whole(stream) for stream in streams))
            await asyncio.sleep(0.5)  # a second assignment, if there were one, would be running by now
            ran = _runs(workers, model) - before
    finally:
        server.stop()

    for chunks in answers:
        final = chunks[-1]
        assert isinstance(final, FinalChunk) and final.usage.completion_tokens == 20
        assert len({(c.attempt, c.worker_id) for c in chunks}) == 1
    assert ran == 12


async def test_speech_cut_off_by_a_death_starts_over_and_says_so(fleet: Fleet) -> None:
    """Speech, like an image, cannot go on where a dead worker stopped: its next attempt starts from
    the beginning, and the first the client gets of it is a progress event that says so."""
    engine = EspeakEngine()
    await engine.start()
    speaker = Part(await connect(fleet.nats_url, "fs-speech"))
    settings = WorkerSettings(worker_id="fs-speech", engine="espeak", heartbeat_s=0.2, nats_url=fleet.nats_url)
    speaker.task = asyncio.create_task(Worker(settings, engine, speaker.bus).run(speaker.stop))
    request = SpeechRequest(
        request_id=f"speech-{uuid.uuid4().hex}",
        model="espeak",
        input="Once more, from the top.",
        deadline_ms=now_ms() + 60_000,
    )
    try:
        while not fleet.relay.fleet.workers.serving("espeak", time.monotonic()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        stream = RequestStream(fleet.relay.bus, request)
        await stream.open()
        second = Assignment(worker_id="fs-speech", attempt=2, request=request)  # the first one's worker died
        await fleet.relay.bus.js.publish(
            subjects.assign("fs-speech"), second.encode(), headers=dedup.assignment(second)
        )
        chunks = await _whole(stream)
    finally:
        speaker.stop.set()
        await asyncio.wait_for(speaker.task, 10)
        await engine.cleanup()
        await speaker.bus.close()

    first = chunks[0]
    assert isinstance(first, ProgressChunk) and first.fraction == 0.0
    assert first.message == "restarted from the beginning on fs-speech (attempt 2)"
    assert any(isinstance(c, DataChunk) for c in chunks)  # the whole of the speech, again
    assert isinstance(chunks[-1], FinalChunk) and {c.attempt for c in chunks} == {2}
