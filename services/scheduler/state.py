"""What the scheduler knows of the fleet, turned into the policy's snapshot."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from services.common.fleet import FleetView
from services.scheduler.policy import Candidate, Limits, Snapshot, Weights


@dataclass
class FleetState(FleetView):
    # Assignments sent to each worker since its last heartbeat, which does not count them yet.
    recent: Counter[str] = field(default_factory=Counter)

    def snapshot(self, model: str, now: float, weights: Weights, limits: Limits, model_mem_mb: float = 0.0) -> Snapshot:
        """Candidates for `model`: live workers serving it on nodes not known to be down."""
        candidates = tuple(
            Candidate(
                worker=w,
                telemetry=self.nodes.get(w.node, now),
                capabilities=self.capabilities.get(w.node),
                recent=self.recent.get(w.worker_id, 0),
            )
            for w in self.workers.serving(model, now)
            if not self.nodes.is_down(w.node, now)
        )
        return Snapshot(candidates, model_mem_mb=model_mem_mb, weights=weights, limits=limits)

    def load(self, now: float) -> dict[str, tuple[int, int]]:
        """Per domain: requests its live workers have in hand, and their slots."""
        load: dict[str, tuple[int, int]] = {}
        for w in self.workers.live(now):
            in_hand, slots = load.get(w.domain, (0, 0))
            load[w.domain] = (in_hand + w.outstanding + self.recent.get(w.worker_id, 0), slots + w.slots_total)
        return load
