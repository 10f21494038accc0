"""Start order does not matter: a service started before NATS connects once the server comes up."""

from __future__ import annotations

import asyncio
from pathlib import Path

from contracts import streams
from services.common.bus import connect
from services.devstack import free_port
from tests.natsserver import NatsServer


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
