"""The whole stack in this process, for tests that need the gateway's real app as well as reach into
its parts: scheduler, aggregator and a worker with the real tiny llama.cpp engine, on a real
nats-server, and the gateway app served to an httpx client through ASGI."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from services.aggregator.app import Aggregator
from services.common.bus import connect
from services.gateway.app import create_app
from services.gateway.relay import Relay
from services.gateway.settings import GatewaySettings
from services.scheduler.app import Scheduler
from services.scheduler.settings import SchedulerSettings
from services.workers.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine
from services.workers.runner import Worker
from services.workers.settings import WorkerSettings
from services.workers.tiny_model import ensure_tiny_gguf


@asynccontextmanager
async def in_process_stack(
    settings: GatewaySettings,
    model: str,
    worker_id: str,
) -> AsyncIterator[tuple[httpx.AsyncClient, Relay]]:
    """A client of the gateway (authenticated with its first API key) and the gateway's relay, once
    the gateway has heard of the worker serving `model`."""
    stop = asyncio.Event()
    buses = [await connect(settings.nats_url, name) for name in ("scheduler", "aggregator", "worker")]
    engine = LlamaCppEngine(LlamaCppConfig(model, ensure_tiny_gguf(), slots=1))
    await engine.start()
    worker = WorkerSettings(worker_id=worker_id, model_id=model, heartbeat_s=0.2, nats_url=settings.nats_url)
    tasks = [
        asyncio.create_task(Scheduler(SchedulerSettings(), buses[0]).run(stop)),
        asyncio.create_task(Aggregator(buses[1]).run(stop)),
        asyncio.create_task(Worker(worker, engine, buses[2]).run(stop)),
    ]
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            relay: Relay = app.state.relay
            for _ in range(100):  # until the worker's heartbeat and catalog entry arrive
                if relay.fleet.workers.serving(model, time.monotonic()) and model in relay.fleet.catalog:
                    break
                await asyncio.sleep(0.05)
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://gateway",
                headers={"Authorization": f"Bearer {settings.api_keys[0]}"},
                timeout=30,
            ) as client:
                yield client, relay
    finally:
        stop.set()
        await asyncio.wait(tasks, timeout=30)
        await engine.cleanup()
        for bus in buses:
            await bus.close()
