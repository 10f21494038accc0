"""SIMULATION: a fleet of simulated nodes on a real nats-server, served by the real worker runner,
scheduler and aggregator code. Each node runs a `SimulatedEngine` with a speed profile taken from a
real GPU, publishes telemetry that follows its load, and its capabilities."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from contracts import streams, subjects
from contracts.telemetry import GpuInfo, GpuSample, NodeCapabilities, NodeTelemetry
from services.aggregator.app import Aggregator
from services.common.bus import Bus, connect
from services.common.shutdown import wait_or_stop
from services.gateway.relay import Relay
from services.monitor.gpus import estimate_fp16_tflops
from services.scheduler.app import Scheduler
from services.scheduler.policy import Policy
from services.scheduler.settings import SchedulerSettings
from services.workers.engines.simulated import SimulatedEngine, SpeedProfile
from services.workers.runner import Worker
from services.workers.settings import WorkerSettings

MODEL = "sim-llm"
HEARTBEAT_S = 0.5


@dataclass
class SimNode:
    name: str
    profile: SpeedProfile
    engine: SimulatedEngine
    bus: Bus
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def telemetry(self) -> NodeTelemetry:
        busy = min(1.0, self.engine.busy / self.profile.slots)
        gpus: tuple[GpuSample, ...] = ()
        if self.profile.vram_mb:
            gpus = (
                GpuSample(
                    index=0,
                    name=self.profile.gpu_name,
                    util_pct=100 * busy,
                    mem_used_mb=0.6 * self.profile.vram_mb,
                    mem_total_mb=self.profile.vram_mb,
                    temp_c=45 + 30 * busy,
                ),
            )
        return NodeTelemetry(
            node=self.name, cpu_pct=100 * busy if not gpus else 10, mem_used_mb=8000, mem_total_mb=65536, gpus=gpus
        )

    def capabilities(self) -> NodeCapabilities:
        gpus: tuple[GpuInfo, ...] = ()
        if self.profile.vram_mb:
            gpus = (
                GpuInfo(
                    index=0,
                    name=self.profile.gpu_name,
                    vram_mb=self.profile.vram_mb,
                    fp16_tflops=estimate_fp16_tflops(self.profile.gpu_name),
                ),
            )
        return NodeCapabilities(
            node=self.name,
            arch="x86_64",
            cpu_cores=16,
            mem_total_mb=65536,
            gpus=gpus,
            labels={"simulated": "true", "profile": self.profile.name},
        )

    async def publish_telemetry(self) -> None:
        kv = await self.bus.js.key_value(streams.KV_NODES)
        await kv.put(self.name, self.capabilities().encode())
        while not self.stop.is_set():
            await self.bus.nc.publish(subjects.telemetry(self.name), self.telemetry().encode())
            await wait_or_stop(self.stop, HEARTBEAT_S)


@dataclass
class SimFleet:
    """Every simulated node, one scheduler with `policy`, one aggregator, and a relay to submit through."""

    nats_url: str
    policy: Policy
    layout: list[tuple[SpeedProfile, int]]
    time_scale: float = 1.0
    dead_after_s: float = 3.0
    nodes: list[SimNode] = field(default_factory=list)
    relay: Relay | None = None
    scheduler: Scheduler | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _buses: list[Bus] = field(default_factory=list)

    async def _bus(self, name: str) -> Bus:
        bus = await connect(self.nats_url, name)
        self._buses.append(bus)
        return bus

    async def start(self) -> Relay:
        for profile, count in self.layout:
            for i in range(count):
                name = f"sim-{profile.name}-{i}"
                bus = await self._bus(name)
                node = SimNode(name, profile, SimulatedEngine(profile, MODEL, self.time_scale), bus)
                settings = WorkerSettings(
                    worker_id=name,
                    node=name,
                    nats_url=self.nats_url,
                    heartbeat_s=HEARTBEAT_S,
                    dead_after_s=self.dead_after_s,
                )
                node.tasks = [
                    asyncio.create_task(Worker(settings, node.engine, bus).run(node.stop)),
                    asyncio.create_task(node.publish_telemetry()),
                ]
                self.nodes.append(node)
        sched_settings = SchedulerSettings(
            policy=self.policy,
            nats_url=self.nats_url,
            heartbeat_s=HEARTBEAT_S,
            dead_after_s=self.dead_after_s,
            retry_no_worker_s=0.05,
        )
        self.scheduler = Scheduler(sched_settings, await self._bus("scheduler"))
        self._tasks += [
            asyncio.create_task(self.scheduler.run(self._stop)),
            asyncio.create_task(Aggregator(await self._bus("aggregator")).run(self._stop)),
        ]
        self.relay = Relay(await self._bus("client"), dead_after_s=self.dead_after_s)
        await self.relay.start()
        deadline = time.monotonic() + 20
        while len(self.relay.fleet.workers.serving(MODEL, time.monotonic())) < len(self.nodes):
            if time.monotonic() > deadline:
                raise TimeoutError("simulated workers did not all come up")
            await asyncio.sleep(0.1)
        await asyncio.sleep(2 * HEARTBEAT_S)  # first telemetry and capabilities reach the scheduler
        return self.relay

    async def kill(self, node: SimNode) -> None:
        """The node goes silent at once, as a crashed machine would (no drain, no goodbye)."""
        for task in node.tasks:
            task.cancel()
        await node.bus.nc.close()

    async def kill_and_time_exit(self, node: SimNode) -> float:
        """Kill `node`; return the seconds until the scheduler stops offering it work."""
        assert self.scheduler is not None
        killed = time.monotonic()
        await self.kill(node)
        # The scheduler's table is plain state, not an event source: poll it finely.
        while self.scheduler.fleet.workers.get(node.name, time.monotonic()) is not None:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        return time.monotonic() - killed

    async def stop(self) -> None:
        for node in self.nodes:
            node.stop.set()
        self._stop.set()
        await asyncio.gather(*(t for n in self.nodes for t in n.tasks), *self._tasks, return_exceptions=True)
        if self.relay:
            await self.relay.stop()
        for bus in self._buses:
            if not bus.nc.is_closed:
                await bus.close()
