"""The placement loop: every `placement_interval_s` (or at once after an operator's override), the
host workers and the catalog go to the planner (`placement.plan`), and its loads and unloads go
to the hosts as `control.<worker>` commands."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from contracts import subjects
from contracts.base import now_ms
from contracts.control import ModelCommand
from contracts.workers import WorkerState
from services.common.bus import Bus
from services.common.fleet import FleetView
from services.scheduler import metrics
from services.scheduler.placement import Command, Held, Host, Load, Unload, Wanted, command_settled, plan

log = logging.getLogger(__name__)
Commands = Mapping[tuple[str, str], Command]  # by (model, worker): the last load or unload sent there


def hosts(
    fleet: FleetView, commands: Commands, now: float, wall_ms: int
) -> tuple[list[Host], dict[tuple[str, str], Command]]:
    """The host workers as the planner sees them, and the commands still under way. A host holds
    what its heartbeat says, plus the models a load command under way brings, less those an unload
    under way takes; a command the heartbeat shows done (see `command_settled`) is no longer under
    way. `now` is monotonic, `wall_ms` the wall clock the hosts' records are in."""
    under_way = dict(commands)
    found = []
    for w in fleet.workers.live(now):
        if w.memory_mb <= 0 or w.state is not WorkerState.ready:
            continue
        held = {
            m: Held(
                h.memory_mb,
                last_used_s=now - (wall_ms - h.last_used_ms) / 1000,
                in_flight=h.in_flight,
                pinned=m in fleet.overrides and fleet.overrides[m].pinned,
            )
            for m, h in w.holding().items()
        }
        for (model, worker), command in commands.items():
            if worker != w.worker_id:
                continue
            if command_settled(w.held.get(model), command):
                del under_way[(model, worker)]
            elif command.kind == "load":
                entry = fleet.catalog.get(model)
                held[model] = Held((entry.memory_mb or 0.0) if entry is not None else 0.0, last_used_s=now)
            else:
                held.pop(model, None)
        caps = fleet.capabilities.get(w.node)
        found.append(Host(w.worker_id, w.memory_mb, caps.labels if caps else {}, held))
    return found, under_way


def wanted(fleet: FleetView) -> list[Wanted]:
    """The catalog models the planner manages (the placed ones), with the operators' overrides."""
    entries = (fleet.effective(model) for model, entry in fleet.catalog.items() if entry.placed)
    return [
        Wanted(e.id, e.memory_mb or 0.0, e.priority, e.min_replicas, e.max_replicas, e.idle_unload_s, e.node_labels)
        for e in entries
        if e is not None
    ]


@dataclass
class Placer:
    bus: Bus
    fleet: FleetView
    interval_s: float
    grace_s: float  # a command not yet seen in the host's heartbeat counts as under way this long
    placements: Counter[str] = field(default_factory=Counter)  # commands sent, by reason
    _commanded: dict[tuple[str, str], Command] = field(default_factory=dict)
    _placed_at: float = 0.0

    def soon(self) -> None:
        """An operator changed a model's override: plan at the next housekeeping tick."""
        self._placed_at = 0.0

    async def tick(self, waiting: Iterable[str]) -> None:
        """Plan and send, when `interval_s` has passed since the last time; `waiting` holds the model
        of each request waiting for a slot."""
        now = time.monotonic()
        if now - self._placed_at < self.interval_s:
            return
        self._placed_at = now
        recent = {k: c for k, c in self._commanded.items() if now - c.sent_s <= self.grace_s}
        found, self._commanded = hosts(self.fleet, recent, now, now_ms())
        if found:
            for action in plan(found, wanted(self.fleet), Counter(waiting), now):
                await self._send(action, now)

    async def _send(self, action: Load | Unload, now: float) -> None:
        kind: Literal["load", "unload"] = "load" if isinstance(action, Load) else "unload"
        status = self.fleet.workers.get(action.worker_id, now)
        record = status.held.get(action.model) if status is not None else None
        self._commanded[(action.model, action.worker_id)] = Command(kind, now, record.since_ms if record else None)
        self.placements[action.reason.name] += 1
        metrics.PLACEMENTS.labels(kind, action.reason.name).inc()
        by = action.by if isinstance(action, Unload) else None
        log.info(
            "%s %s on %s: %s%s", kind, action.model, action.worker_id, action.reason.value, f" ({by})" if by else ""
        )
        command = ModelCommand(action=kind, model=action.model, reason=action.reason.name, by=by)
        await self.bus.nc.publish(subjects.control(action.worker_id), command.encode())
