"""Scheduling policies: pure functions from a snapshot of live workers to a choice. No I/O, no clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from contracts.workers import WorkerStatus


def least_outstanding(candidates: Sequence[WorkerStatus], recent: Mapping[str, int]) -> str | None:
    """The candidate with the fewest requests in hand, counting `recent` assignments its last
    heartbeat cannot know of yet. Ties go to the most free slots, then the smallest id, so the
    choice is deterministic for a given snapshot."""
    if not candidates:
        return None
    best = min(
        candidates,
        key=lambda w: (w.outstanding + recent.get(w.worker_id, 0), -w.slots_free, w.worker_id),
    )
    return best.worker_id
