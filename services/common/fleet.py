"""The live fleet as any service sees it: worker heartbeats, node telemetry and node capabilities,
followed from `worker.status.*`, `telemetry.*` and the `nodes` bucket; and the catalog with the
operators' overrides, from the `models` and `placement` buckets."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from nats.aio.msg import Msg

from contracts import streams, subjects
from contracts.base import Message
from contracts.telemetry import NodeCapabilities, NodeTelemetry
from contracts.workers import ModelEntry, ModelOverride, WorkerStatus
from services.common.bus import Bus
from services.common.liveness import LiveTable, WorkerTable

log = logging.getLogger(__name__)
StatusHook = Callable[[WorkerStatus], Awaitable[None]]
M = TypeVar("M", bound=Message)


def decoded(kind: type[M], msg: Msg) -> M | None:
    """The message `msg` carries, or None (logged) when it does not decode as `kind`."""
    try:
        return kind.decode(msg.data)
    except ValueError:
        log.warning("undecodable %s on %s", kind.__name__, msg.subject)
        return None


def mirror(
    into: dict[str, M], kind: type[M], then: Callable[[], None] | None = None
) -> Callable[[str, bytes | None], None]:
    """An `apply` for `watch_bucket` that keeps `into` equal to a bucket of `kind` entries (and calls
    `then` after each change)."""

    def apply(key: str, value: bytes | None) -> None:
        if value is None:
            into.pop(key, None)
        else:
            into[key] = kind.decode(value)
        if then is not None:
            then()

    return apply


async def watch_bucket(watcher: Any, apply: Callable[[str, bytes | None], None]) -> None:
    """Apply every update of a KV bucket (a delete as None) as it happens."""
    async for entry in watcher:
        if entry is None:  # end of the initial values
            continue
        deleted = entry.operation in ("DEL", "PURGE") or not entry.value
        try:
            apply(entry.key, None if deleted else entry.value)
        except ValueError:
            log.warning("undecodable entry %s", entry.key)


@dataclass
class FleetView:
    dead_after_s: float
    workers: WorkerTable = field(init=False)
    nodes: LiveTable[NodeTelemetry] = field(init=False)
    capabilities: dict[str, NodeCapabilities] = field(default_factory=dict)
    catalog: dict[str, ModelEntry] = field(default_factory=dict)  # the `models` bucket, once followed
    overrides: dict[str, ModelOverride] = field(default_factory=dict)  # the `placement` bucket, likewise
    on_override: Callable[[], None] | None = None  # told of every change of an override
    _subs: list[Any] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _on_status_hook: StatusHook | None = None

    def __post_init__(self) -> None:
        self.workers = WorkerTable(self.dead_after_s)
        self.nodes = LiveTable(self.dead_after_s)

    async def follow(self, bus: Bus, on_status: StatusHook | None = None) -> None:
        """Start following the fleet; `on_status` runs after each heartbeat is recorded."""
        self._on_status_hook = on_status
        self._subs += [
            await bus.nc.subscribe(subjects.WORKER_STATUS_ALL, cb=self._on_status),
            await bus.nc.subscribe(subjects.TELEMETRY_ALL, cb=self._on_telemetry),
        ]
        nodes = await (await bus.js.key_value(streams.KV_NODES)).watchall()
        self.watch(nodes, mirror(self.capabilities, NodeCapabilities))
        self._tasks.append(asyncio.create_task(self._hold_while_cut_off(bus)))

    def hold(self, now: float) -> None:
        """Cut off from the bus, this view hears no heartbeat, and silence proves nothing: every
        worker and node alive now counts as heard from now (see LiveTable.hold)."""
        self.workers.hold(now)
        self.nodes.hold(now)

    async def _hold_while_cut_off(self, bus: Bus) -> None:
        """Through a NATS restart no heartbeat arrives, and silence then proves nothing: held, every
        worker stays live, rather than counting as dead for the outage's length and having requests
        refused (no live worker) until its next heartbeat comes in."""
        while True:
            if not bus.nc.is_connected:
                self.hold(time.monotonic())
            await asyncio.sleep(self.dead_after_s / 4)

    async def follow_catalog(self, bus: Bus) -> None:
        self.watch(await (await bus.js.key_value(streams.KV_MODELS)).watchall(), mirror(self.catalog, ModelEntry))
        self.watch(
            await (await bus.js.key_value(streams.KV_PLACEMENT)).watchall(),
            mirror(self.overrides, ModelOverride, self._override_changed),
        )

    def _override_changed(self) -> None:
        if self.on_override is not None:
            self.on_override()

    def effective(self, model: str) -> ModelEntry | None:
        """The catalog entry of `model` with the operator's override applied, if it has one."""
        entry = self.catalog.get(model)
        override = self.overrides.get(model)
        return override.apply(entry) if entry is not None and override is not None else entry

    def watch(self, watcher: Any, apply: Callable[[str, bytes | None], None]) -> None:
        self._tasks.append(asyncio.create_task(watch_bucket(watcher, apply)))

    async def unfollow(self) -> None:
        for task in self._tasks:
            task.cancel()
        for sub in self._subs:
            await sub.unsubscribe()

    def live_workers(self) -> list[WorkerStatus]:
        return self.workers.live(time.monotonic())

    async def _on_status(self, msg: Msg) -> None:
        if (status := decoded(WorkerStatus, msg)) is None:
            return
        self.workers.observe_status(status, time.monotonic())
        if self._on_status_hook is not None:
            await self._on_status_hook(status)

    async def _on_telemetry(self, msg: Msg) -> None:
        if (telemetry := decoded(NodeTelemetry, msg)) is None:
            return
        self.nodes.observe(telemetry.node, telemetry, time.monotonic())
