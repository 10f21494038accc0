"""A NATS restart is not the fleet dying. Cut off, a service hears no heartbeat; before its fleet view
held the workers through the outage, the gateway answered 503 (no live worker) after every restart
longer than `dead_after_s`, until each worker's next heartbeat came in: 3 to 13 refused requests a
chaos run. A real NATS server, restarted; the test plays the worker's heartbeats."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from contracts import subjects
from contracts.errors import NoLiveWorker
from contracts.requests import Modality
from contracts.workers import ModelEntry, WorkerStatus
from services.common.bus import connect
from services.gateway.relay import GatewayFleet
from tests.natsserver import NatsServer

DEAD_AFTER_S = 1.0
MODEL = "held-model"


async def test_workers_heard_before_a_nats_restart_stay_live_until_they_could_be_heard_again(tmp_path: Path) -> None:
    server = NatsServer(store=tmp_path).start()
    gateway = await connect(server.url, "gateway-fleet")
    worker = await connect(server.url, "worker-heartbeats")
    fleet = GatewayFleet(dead_after_s=DEAD_AFTER_S)
    fleet.catalog[MODEL] = ModelEntry(id=MODEL, modality=(Modality.chat,), engine="llama_cpp", source="m.gguf")
    try:
        await fleet.follow(gateway)
        status = WorkerStatus(
            worker_id="w-held",
            node="n",
            engine="llama_cpp",
            models=(MODEL,),
            slots_total=1,
            slots_free=1,
            outstanding=0,
        )
        await worker.nc.publish(subjects.worker_status("w-held"), status.encode())
        await worker.nc.flush()
        await asyncio.sleep(0.1)
        fleet.require_live(MODEL)

        server.stop()
        await asyncio.sleep(3 * DEAD_AFTER_S)  # an outage longer than dead_after_s, no heartbeat heard
        await asyncio.to_thread(server.start)
        for _ in range(200):  # until the gateway has reconnected: nats-py's flush does not wait while it is away
            if gateway.nc.is_connected:
                break
            await asyncio.sleep(0.05)
        assert gateway.nc.is_connected
        fleet.require_live(MODEL)  # back: the worker has a whole dead_after_s to be heard again

        await asyncio.sleep(1.5 * DEAD_AFTER_S)  # ... and stays silent: now it is gone
        with pytest.raises(NoLiveWorker):
            fleet.require_live(MODEL)
    finally:
        await fleet.unfollow()
        await worker.nc.close()
        await gateway.nc.close()
        server.stop()
