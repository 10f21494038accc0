"""Start order does not matter: a service started before NATS connects once the server comes up;
and a gateway whose NATS goes away answers with a clear, retryable error."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from contracts import streams, subjects
from contracts.base import now_ms
from contracts.errors import BusUnavailable
from contracts.requests import ChatMessage, ChatRequest, Modality
from contracts.results import AnyChunk, DeltaChunk, FinalChunk, Usage
from contracts.workers import ModelEntry, WorkerStatus
from services.common.bus import connect
from services.devstack import free_port
from services.gateway.relay import QUIET_S, Relay, RequestStream
from tests.natsserver import NatsServer


def chat(request_id: str) -> ChatRequest:
    return ChatRequest(
        request_id=request_id,
        model="m",
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content="hi"),),
    )


async def test_connect_waits_for_a_server_that_starts_later(tmp_path: Path) -> None:
    server = NatsServer(store=tmp_path, port=free_port())
    connecting = asyncio.create_task(connect(server.url, "early-bird"))
    await asyncio.sleep(1.0)
    assert not connecting.done()  # still retrying: nothing listens yet
    await asyncio.to_thread(server.start)
    try:
        bus = await asyncio.wait_for(connecting, timeout=20)
        info = await bus.js.stream_info(streams.REQUESTS)  # and the bootstrap ran
        assert info.config.name == streams.REQUESTS
        await bus.close()
    finally:
        server.stop()


async def test_a_request_the_bus_cannot_confirm_gets_bus_unavailable_not_a_crash(tmp_path: Path) -> None:
    """NATS goes away under a gateway that still believes a worker is live: publishing the request
    times out, and the client gets a 503-class error it can retry, not an unhandled exception."""
    server = NatsServer(store=tmp_path).start()
    bus = await connect(server.url, "gateway")
    relay = Relay(bus, dead_after_s=60.0)
    await relay.start()
    entry = ModelEntry(id="m", modality=(Modality.chat,), engine="llama_cpp", source="tiny")
    relay.fleet.catalog["m"] = entry
    relay.fleet.workers.observe_status(
        WorkerStatus(
            worker_id="w", node="n", engine="llama_cpp", models=("m",), slots_total=1, slots_free=1, outstanding=0
        ),
        time.monotonic(),
    )
    server.stop()
    try:
        with pytest.raises(BusUnavailable):
            await relay.submit(chat("chatcmpl-outage"))
        assert not relay.inflight  # the request's place is given back
    finally:
        await bus.nc.close()


async def test_a_gap_filled_while_nats_restarts_waits_for_the_server_and_loses_nothing(tmp_path: Path) -> None:
    """The gateway has the first chunk of a stream when NATS goes away; the rest is in RESULTS (file
    storage). Its read of RESULTS times out while the server is down: it is tried again until the
    server is back, and the client gets every chunk once, in order, instead of a broken stream."""
    server = NatsServer(store=tmp_path).start()
    bus = await connect(server.url, "gateway")
    rid = "chatcmpl-backfill-outage"
    chunks: list[AnyChunk] = [DeltaChunk(request_id=rid, seq=seq, text=f"word{seq} ") for seq in range(3)]
    chunks.append(FinalChunk(request_id=rid, seq=3, finish_reason="stop", usage=Usage(completion_tokens=3)))
    for chunk in chunks:
        await bus.js.publish(subjects.result(rid), chunk.encode())
    stream = RequestStream(bus, chat(rid))
    await stream.open()
    await bus.nc.publish(subjects.out(rid), chunks[0].encode())

    async def restart_after_the_first_read_failed() -> None:
        await asyncio.sleep(QUIET_S + 3.0)  # the silence, then more than one unanswered read (REPLAY_ANSWER_S)
        await asyncio.to_thread(server.start)

    try:
        received = [await stream.next()]
        server.stop()
        restarting = asyncio.create_task(restart_after_the_first_read_failed())
        received += [chunk async for chunk in stream]
        await restarting
        assert received == chunks
    finally:
        await stream.close(cancel=False)
        await bus.nc.close()
        server.stop()
