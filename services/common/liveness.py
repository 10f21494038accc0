"""Who is alive, from heartbeats. Pure: the caller passes the clock (monotonic seconds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from contracts.workers import WorkerState, WorkerStatus

T = TypeVar("T")


@dataclass
class LiveTable(Generic[T]):
    """The last heartbeat of each key and when it arrived; silent for `dead_after_s` = gone,
    and back with its next heartbeat."""

    dead_after_s: float
    _seen: dict[str, tuple[T, float]] = field(default_factory=dict)

    def observe(self, key: str, value: T, now: float) -> None:
        self._seen[key] = (value, now)

    def get(self, key: str, now: float) -> T | None:
        """The key's last heartbeat if it is alive, else None."""
        entry = self._seen.get(key)
        return entry[0] if entry is not None and now - entry[1] <= self.dead_after_s else None

    def is_down(self, key: str, now: float) -> bool:
        """Heard from once and silent since: down. Never heard from: not known to be down."""
        entry = self._seen.get(key)
        return entry is not None and now - entry[1] > self.dead_after_s

    def live_items(self, now: float) -> list[tuple[str, T]]:
        return [(k, v) for k, (v, t) in sorted(self._seen.items()) if now - t <= self.dead_after_s]

    def last_seen(self) -> dict[str, float]:
        return {k: t for k, (_, t) in self._seen.items()}

    def hold(self, now: float) -> None:
        """While the listener is cut off from the bus, silence proves nothing: every key alive now
        counts as heard from now, so after the outage each has a whole `dead_after_s` to be heard."""
        for key, (value, t) in self._seen.items():
            if now - t <= self.dead_after_s:
                self._seen[key] = (value, now)

    def forget_dead(self, now: float) -> list[str]:
        """Drop and return the keys silent for longer than `dead_after_s`."""
        dead = [k for k, (_, t) in self._seen.items() if now - t > self.dead_after_s]
        for k in dead:
            del self._seen[k]
        return dead


@dataclass
class WorkerTable(LiveTable[WorkerStatus]):
    def observe_status(self, status: WorkerStatus, now: float) -> None:
        self.observe(status.worker_id, status, now)

    def live(self, now: float) -> list[WorkerStatus]:
        """Heartbeats of the workers heard from within `dead_after_s`, in worker-id order."""
        return [s for _, s in self.live_items(now)]

    def serving(self, model: str, now: float) -> list[WorkerStatus]:
        """Live, non-draining workers that have `model` loaded."""
        return [s for s in self.live(now) if model in s.models and s.state is WorkerState.ready]
