"""A worker's acknowledgement of its assignment is confirmed by the server, and sent again through a
NATS restart until it is. A lost one left the assignment pending until its ack_wait (30 s), and the
worker's one-slot consumer was sent nothing else meanwhile: in the chaos bench, new work waited 24 s
behind an answer finished long before."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from contracts import streams, subjects
from services.common.bus import ack_confirmed, connect
from tests.natsserver import NatsServer

ACK_WAIT_S = 30.0


async def test_an_ack_sent_while_nats_restarts_is_confirmed_and_the_next_assignment_comes_at_once(
    tmp_path: Path,
) -> None:
    server = NatsServer(store=tmp_path).start()
    bus = await connect(server.url, "worker-ack")
    received: asyncio.Queue[Msg] = asyncio.Queue()
    try:
        await bus.js.subscribe(
            subjects.assign("ack-w"),
            durable=streams.worker_consumer("ack-w"),
            stream=streams.ASSIGNMENTS,
            manual_ack=True,
            cb=received.put,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=1, ack_wait=ACK_WAIT_S),
        )
        await bus.js.publish(subjects.assign("ack-w"), b"first")
        first = await asyncio.wait_for(received.get(), 5)
        server.stop()
        acking = asyncio.create_task(ack_confirmed(first))
        await asyncio.sleep(0.5)
        await asyncio.to_thread(server.start)
        await asyncio.wait_for(acking, 15)
        await bus.js.publish(subjects.assign("ack-w"), b"second")
        started = time.monotonic()
        second = await asyncio.wait_for(received.get(), ACK_WAIT_S / 3)
        assert second.data == b"second" and time.monotonic() - started < ACK_WAIT_S / 3
        info = await bus.js.consumer_info(streams.ASSIGNMENTS, streams.worker_consumer("ack-w"))
        assert info.num_redelivered == 0  # the first was never sent again

        await bus.js.delete_msg(streams.ASSIGNMENTS, second.metadata.sequence.stream)  # moved by a failover
        await asyncio.wait_for(ack_confirmed(second), 2)  # the server confirms it all the same, at once
    finally:
        await bus.nc.close()
        server.stop()
