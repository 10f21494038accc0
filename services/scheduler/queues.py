"""Work waiting for a free slot, per resource domain, served strictly by priority class.

A request is handed to a worker only when one of its domain's workers has a free slot and the
domain is under its cap on work in flight; until then it waits here, its JetStream message not yet
acknowledged (so a scheduler that dies loses none of it). The best waiting request goes first:
realtime before interactive before batch, within a class a re-queued continuation (a stream a
client is already reading) before new work, then first come first served; and every `aging_s` of
waiting lifts a request one class, so batch work is never starved forever.

Pure: no I/O, the clock passed in, so the ordering can be tested on its own.
"""

from __future__ import annotations

import statistics
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from contracts.queues import ClassQueue
from contracts.requests import AnyRequest, Priority

H = TypeVar("H")  # what acknowledges a request once dispatched (a JetStream message in the scheduler)
RECENT_WAITS = 500  # dispatched requests per domain and class whose waits the percentiles cover


def effective_rank(priority: Priority, waited_s: float, aging_s: float) -> int:
    """The class rank a request is served at: its own, one better for every `aging_s` it has waited."""
    if aging_s <= 0:
        return priority.rank
    return max(0, priority.rank - int(waited_s // aging_s))


@dataclass
class Waiting(Generic[H]):
    request: AnyRequest
    domain: str
    handle: H
    since: float  # monotonic seconds: when it began to wait
    touched: float = 0.0  # when the stream was last told it is still being worked on
    fallback_for: str | None = None  # the model asked for, once re-addressed to its fallback
    cold: bool = False  # no live worker held its model when it came
    handed_back: int = 0  # a re-queued request: the attempt a worker handed back (0: a new request)
    trace: dict[str, str] = field(default_factory=dict)  # the trace context its message carried

    @property
    def request_id(self) -> str:
        return self.request.request_id


def service_order(waiting: Iterable[Waiting[H]], now: float, aging_s: float) -> list[Waiting[H]]:
    """Best first: by class (aged), then continuations before new requests, then by arrival."""
    return sorted(
        waiting, key=lambda w: (effective_rank(w.request.priority, now - w.since, aging_s), not w.handed_back, w.since)
    )


def plan(
    order: Sequence[Waiting[H]], room: dict[str, int | None], pick: Callable[[Waiting[H]], str | None]
) -> list[tuple[Waiting[H], str]]:
    """Which waiting requests go to which worker now. Walks `order` best first; a request goes when
    its domain has room (None: no cap) and `pick` finds it a worker with a free slot (`pick` reserves
    that slot). A request that cannot go leaves later ones free to take other workers, never its own:
    those are full, so it keeps its place ahead of every lower class."""
    room = dict(room)
    chosen = []
    for waiting in order:
        left = room.get(waiting.domain)
        if left is not None and left <= 0:
            continue
        worker = pick(waiting)
        if worker is None:
            continue
        chosen.append((waiting, worker))
        if left is not None:
            room[waiting.domain] = left - 1
    return chosen


@dataclass
class Queues(Generic[H]):
    aging_s: float
    waiting: dict[str, Waiting[H]] = field(default_factory=dict)  # by request id
    dispatched_count: Counter[tuple[str, Priority]] = field(default_factory=Counter)
    cold_starts: Counter[str] = field(default_factory=Counter)  # per domain
    warm_hits: Counter[str] = field(default_factory=Counter)
    _waits: dict[tuple[str, Priority], deque[float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.waiting)

    def __contains__(self, request_id: str) -> bool:
        return request_id in self.waiting

    def add(self, waiting: Waiting[H]) -> None:
        """A redelivered request already waiting keeps its place (and takes the newer handle)."""
        earlier = self.waiting.get(waiting.request_id)
        if earlier is not None:
            earlier.handle = waiting.handle
            return
        self.waiting[waiting.request_id] = waiting

    def remove(self, request_id: str) -> Waiting[H] | None:
        return self.waiting.pop(request_id, None)

    def depth(self, domain: str) -> int:
        return sum(1 for w in self.waiting.values() if w.domain == domain)

    def order(self, now: float) -> list[Waiting[H]]:
        return service_order(self.waiting.values(), now, self.aging_s)

    def dispatched(self, waiting: Waiting[H], now: float) -> None:
        self.remove(waiting.request_id)
        key = (waiting.domain, waiting.request.priority)
        self.dispatched_count[key] += 1
        (self.cold_starts if waiting.cold else self.warm_hits)[waiting.domain] += 1
        self._waits.setdefault(key, deque(maxlen=RECENT_WAITS)).append((now - waiting.since) * 1000)

    def expired(self, now_ms: int) -> list[Waiting[H]]:
        """Those whose deadline passed while they waited, taken out."""
        gone = [w for w in self.waiting.values() if w.request.deadline_ms < now_ms]
        for w in gone:
            self.remove(w.request_id)
        return gone

    def to_touch(self, now: float, every_s: float) -> list[Waiting[H]]:
        """Those not reported as in progress for `every_s`, marked as reported now."""
        due = [w for w in self.waiting.values() if now - w.touched >= every_s]
        for w in due:
            w.touched = now
        return due

    def domains(self) -> set[str]:
        return {w.domain for w in self.waiting.values()} | {d for d, _ in self.dispatched_count}

    def classes(self, domain: str, now: float) -> dict[Priority, ClassQueue]:
        """Depth, oldest wait and recent waits per class, for the queue report."""
        out = {}
        for priority in Priority:
            key = (domain, priority)
            here = [
                now - w.since for w in self.waiting.values() if w.domain == domain and w.request.priority is priority
            ]
            waits = sorted(self._waits.get(key, ()))
            if not here and not waits:
                continue
            out[priority] = ClassQueue(
                waiting=len(here),
                oldest_wait_ms=max(here, default=0.0) * 1000,
                dispatched=self.dispatched_count[key],
                wait_p50_ms=statistics.median(waits) if waits else 0.0,
                wait_p95_ms=waits[min(len(waits) - 1, int(0.95 * len(waits)))] if waits else 0.0,
            )
        return out
