"""Telemetry-driven scheduling through a real nats-server and the real scheduler, on two SIMULATED
nodes: the weighted policy sends work to the fast one, and a node that dies leaves the pool."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from bench.fleet_sim import MODEL, SimFleet
from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, Sampling
from contracts.results import FinalChunk
from services.scheduler.policy import Policy
from services.workers.engines.simulated import PROFILES


@pytest.fixture
async def fleet(nats_url: str) -> AsyncIterator[SimFleet]:
    sim = SimFleet(
        nats_url, Policy.weighted, [(PROFILES["h100"], 1), (PROFILES["cpu"], 1)], time_scale=50, dead_after_s=1.0
    )
    await sim.start()
    try:
        yield sim
    finally:
        await sim.stop()


async def served_by(sim: SimFleet) -> str:
    assert sim.relay is not None
    request = ChatRequest(
        request_id=f"sim-{uuid.uuid4().hex}",
        model=MODEL,
        deadline_ms=now_ms() + 20_000,
        messages=(ChatMessage(role="user", content="hello"),),
        sampling=Sampling(max_tokens=8),
    )
    stream = await sim.relay.submit(request)
    async for chunk in stream:
        if isinstance(chunk, FinalChunk):
            await stream.close()
            return chunk.worker_id
    raise AssertionError("no final chunk")


async def test_weighted_prefers_the_fast_node_and_drops_a_dead_one(fleet: SimFleet) -> None:
    assert {await served_by(fleet) for _ in range(5)} == {"sim-h100-0"}
    fast = next(n for n in fleet.nodes if n.profile.name == "h100")
    assert await fleet.kill_and_time_exit(fast) <= 1.0 + 0.1  # dead_after_s, within one poll
    assert await served_by(fleet) == "sim-cpu-0"
