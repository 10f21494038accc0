"""The console's bus side on a real NATS server: telemetry history sampled by time from the TELEMETRY
stream, one hub subscription fanned out to every open console in batches, and the latest requests read
back from the `tasks` bucket."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from contracts import streams, subjects
from contracts.tasks import TaskState, TaskStatus
from contracts.telemetry import Alert, AlertState, NodeTelemetry, Severity
from services.common.bus import Bus
from services.gateway.routes.console import ConsoleHub, node_history, recent_requests


async def publish(bus: Bus, node: str, count: int) -> list[int]:
    stamps = []
    for _ in range(count):
        sample = NodeTelemetry(node=node, cpu_pct=10, mem_used_mb=1, mem_total_mb=2)
        await bus.js.publish(subjects.telemetry(node), sample.encode())
        stamps.append(sample.ts_ms)
        await asyncio.sleep(0.02)
    return stamps


async def test_history_samples_each_stretch_once_and_skips_a_silence(bus: Bus) -> None:
    node = f"hist-{uuid.uuid4().hex[:8]}"
    start = time.time()
    first = await publish(bus, node, 10)
    await asyncio.sleep(1.5)  # the node is silent
    second = await publish(bus, node, 10)
    end = time.time()
    samples = await node_history(bus.nc, node, start, end, points=40)
    stamps = [s["ts_ms"] for s in samples]
    assert stamps == sorted(set(stamps)) and set(stamps) <= set(first + second)
    assert set(stamps) & set(first) and set(stamps) & set(second)  # both stretches are there
    assert len(stamps) <= 40
    # Fewer points than samples: spread, not the first few.
    few = [s["ts_ms"] for s in await node_history(bus.nc, node, start, end, points=10)]
    assert few[-1] in second and len(few) <= 10
    # Before the node published anything: nothing.
    assert await node_history(bus.nc, node, start - 60, start - 30, points=10) == []


async def test_one_subscription_fans_out_batches_to_every_console(bus: Bus) -> None:
    hub = ConsoleHub(bus)
    hub.FLUSH_S = 1.0  # every publication below lands in one batch, however busy the machine
    a, b = await hub.join(), await hub.join()
    subscribed = list(hub._subs)
    assert len(subscribed) == 3  # telemetry, worker status, alerts: once, however many consoles
    node = f"hub-{uuid.uuid4().hex[:8]}"
    for cpu in (5, 6, 7):  # within one batch: only the node's latest sample goes out
        await bus.nc.publish(subjects.telemetry(node), telemetry(node, cpu).encode())
    for severity in ("warning", "critical"):  # alerts: every one
        alert = Alert(name="hot", node=node, severity=Severity(severity), state=AlertState.firing)
        await bus.nc.publish(subjects.alert(severity, node), alert.encode())
    for queue in (a, b):
        events = await mine(queue, node)
        assert [(kind, data.get("cpu_pct") or data.get("severity")) for kind, data in events] == [
            ("telemetry", 7),
            ("alert", "warning"),
            ("alert", "critical"),
        ]
    await hub.leave(a)
    assert hub._subs == subscribed  # b still listens
    await hub.leave(b)
    assert hub._subs == [] and all(sub._closed for sub in subscribed)  # nobody listens: unsubscribed


def telemetry(node: str, cpu: float) -> NodeTelemetry:
    return NodeTelemetry(node=node, cpu_pct=cpu, mem_used_mb=1, mem_total_mb=2)


async def mine(queue: asyncio.Queue[bytes], node: str) -> list[tuple[str, dict[str, object]]]:
    """The events about `node` in the first batch that has any (other tests share the server)."""
    while True:
        batch = (await asyncio.wait_for(queue.get(), 5)).decode()
        events = []
        for frame in batch.strip().split("\n\n"):
            kind_line, data_line = frame.split("\n")
            data = json.loads(data_line.removeprefix("data: "))
            if data.get("node") == node:
                events.append((kind_line.removeprefix("event: "), data))
        if events:
            return events


async def test_recent_requests_are_the_latest_states_newest_first(bus: Bus) -> None:
    tasks = await bus.js.key_value(streams.KV_TASKS)
    ids = [f"req-{uuid.uuid4().hex[:8]}" for _ in range(5)]
    for rid in ids:
        await tasks.put(rid, TaskState(request_id=rid, status=TaskStatus.queued, model="m").encode())
    for rid in ids[1:3]:  # written again: a new revision, the old one deleted (the bucket keeps one)
        await tasks.put(rid, TaskState(request_id=rid, status=TaskStatus.completed, model="m").encode())
    latest = await recent_requests(bus.js, 5)
    assert [(s["request_id"], s["status"]) for s in latest] == [
        (ids[2], "completed"),
        (ids[1], "completed"),
        (ids[4], "queued"),
        (ids[3], "queued"),
        (ids[0], "queued"),
    ]
    assert [s["request_id"] for s in await recent_requests(bus.js, 2)] == [ids[2], ids[1]]
