"""Which workers are alive, from their heartbeats. Pure: the caller passes the clock."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.workers import WorkerState, WorkerStatus


@dataclass
class WorkerTable:
    """Last heartbeat of each worker and when it arrived (monotonic seconds, from the caller)."""

    dead_after_s: float
    _seen: dict[str, tuple[WorkerStatus, float]] = field(default_factory=dict)

    def observe(self, status: WorkerStatus, now: float) -> None:
        self._seen[status.worker_id] = (status, now)

    def live(self, now: float) -> list[WorkerStatus]:
        """Heartbeats of the workers heard from within `dead_after_s`, in worker-id order."""
        return [s for wid, (s, t) in sorted(self._seen.items()) if now - t <= self.dead_after_s]

    def serving(self, model: str, now: float) -> list[WorkerStatus]:
        """Live, non-draining workers that have `model` loaded."""
        return [s for s in self.live(now) if model in s.models and s.state is WorkerState.ready]

    def forget_dead(self, now: float) -> list[str]:
        """Drop and return the workers silent for longer than `dead_after_s`."""
        dead = [wid for wid, (_, t) in self._seen.items() if now - t > self.dead_after_s]
        for wid in dead:
            del self._seen[wid]
        return dead
