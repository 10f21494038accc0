"""An upstream server killed in the middle of a streamed answer: its worker hands the assignment
back, a scheduler moves it to a worker whose server is alive, and the answer continues there with no
gap or repeat. Two real `python -m llama_cpp.server` processes, a real nats-server."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, Sampling
from contracts.results import AnyChunk, DeltaChunk, FinalChunk
from services.aggregator.app import Aggregator
from services.common.bus import connect
from services.devstack import LlamaServer
from services.gateway.relay import Relay
from services.scheduler.app import Scheduler
from services.scheduler.settings import SchedulerSettings
from services.workers.engines.upstream import UpstreamConfig, UpstreamEngine
from services.workers.runner import Worker
from services.workers.settings import WorkerSettings
from tests.natsserver import NatsServer

MODEL = "tiny-upstream-fo"
NO_EOS = {2: -100.0, 4: -100.0}


@dataclass
class Fleet:
    relay: Relay
    servers: dict[str, LlamaServer]  # worker id -> its upstream server


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    with tempfile.TemporaryDirectory() as store:
        nats_server = NatsServer(store=Path(store)).start()
        url = nats_server.url
        stop = asyncio.Event()
        servers = {wid: LlamaServer(alias=MODEL).start() for wid in ("up-a", "up-b")}
        tasks, buses, engines = [], [], []
        try:
            for name in ("scheduler", "aggregator"):
                buses.append(await connect(url, name))
            tasks.append(
                asyncio.create_task(
                    Scheduler(
                        SchedulerSettings(nats_url=url, heartbeat_s=0.2, dead_after_s=1.0, retry_no_worker_s=0.05),
                        buses[0],
                    ).run(stop)
                )
            )
            tasks.append(asyncio.create_task(Aggregator(buses[1]).run(stop)))
            for wid, server in servers.items():
                engine = UpstreamEngine(UpstreamConfig(base_url=server.url, slots=1))
                await engine.start()
                engines.append(engine)
                buses.append(await connect(url, wid))
                settings = WorkerSettings(worker_id=wid, heartbeat_s=0.2, nats_url=url)
                tasks.append(asyncio.create_task(Worker(settings, engine, buses[-1]).run(stop)))
            relay = Relay(await connect(url, "gateway"), dead_after_s=1.0)
            await relay.start()
            while len(relay.fleet.workers.serving(MODEL, time.monotonic())) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            yield Fleet(relay, servers)
            stop.set()
            await relay.stop()
            await relay.bus.close()
        finally:
            stop.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
            for engine in engines:
                await engine.cleanup()
            for bus in buses:
                if not bus.nc.is_closed:
                    await bus.close()
            for server in servers.values():
                server.stop()
            nats_server.stop()


async def test_a_dead_upstream_hands_its_stream_to_another_worker(fleet: Fleet) -> None:
    request = ChatRequest(
        request_id=f"chatcmpl-{uuid.uuid4().hex}",
        model=MODEL,
        stream=True,
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content="go on"),),
        sampling=Sampling(max_tokens=600, logit_bias=NO_EOS),
    )
    stream = await fleet.relay.submit(request)
    received: list[AnyChunk] = [await stream.next() for _ in range(5)]
    victim = received[-1].worker_id
    process = fleet.servers[victim].process
    assert process is not None
    process.kill()  # the upstream server dies mid-stream; its worker lives on
    async for chunk in stream:
        received.append(chunk)
    await stream.close()
    final = received[-1]
    assert isinstance(final, FinalChunk) and final.finish_reason == "length"
    assert final.attempt == 2 and final.worker_id != victim
    assert final.usage.completion_tokens == 600  # the new attempt made only what was missing
    assert [c.seq for c in received] == list(range(len(received)))  # no gap, no repeat
    assert {c.worker_id for c in received if isinstance(c, DeltaChunk)} == {"up-a", "up-b"}
