"""A real nats-server for tests (see services.devstack.NatsServer), and a scheduler on its own one."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from services.common.bus import Bus, connect
from services.devstack import NatsServer, free_port
from services.scheduler.app import Scheduler
from services.scheduler.settings import SchedulerSettings

__all__ = ["NatsServer", "free_port", "scheduler_on_own_server"]


@contextlib.asynccontextmanager
async def scheduler_on_own_server(settings: dict[str, Any], **scheduler: Any) -> AsyncIterator[Bus]:
    """A fresh NATS server with the real scheduler running on it (its consumers made with these
    `settings`); yields the test's own connection, and stops both after."""
    with tempfile.TemporaryDirectory() as store:
        server = NatsServer(store=Path(store)).start()
        stop = asyncio.Event()
        bus = await connect(server.url, "test")
        running = Scheduler(
            SchedulerSettings(nats_url=server.url, **settings), await connect(server.url, "scheduler"), **scheduler
        )
        task = asyncio.create_task(running.run(stop))
        await asyncio.sleep(0.3)  # its consumers exist before the first request
        try:
            yield bus
        finally:
            stop.set()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(task, 10)
            await bus.close()
            server.stop()
