"""Failover: the work of a worker that stopped sending heartbeats goes to another, and a streamed
answer continues after the text the client already has.

The durable truth is in JetStream, not in any scheduler's memory: a dead worker's unacknowledged
assignments are still in ASSIGNMENTS under `assign.<worker>`, and what was delivered is in RESULTS.
So a scheduler that started after the death can do this too, and two schedulers doing it at once
publish the same `<request>:<attempt>` message id, which JetStream de-duplicates.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from contracts import dedup, streams, subjects
from contracts.assignments import Assignment
from contracts.base import now_ms
from contracts.errors import ErrorCode
from contracts.requests import AnyRequest
from contracts.results import Timings, Usage
from services.common.bus import Bus
from services.common.merge import RequestMerge
from services.common.passes import SerialPasses
from services.common.results import ResultPublisher, replay_results
from services.common.tracing import extract, inject, tracer
from services.scheduler.metrics import REASSIGNED

log = logging.getLogger(__name__)
FAILOVER_ID = "failover"


def _nothing_to_release(worker_id: str) -> None:
    """For callers whose `choose` takes no slot."""


@dataclass(frozen=True)
class Died:
    """A worker that missed its heartbeats: everything in its queue moves, unless the very process
    declared dead is heard from again (it was cut off, not dead)."""

    process_ms: int | None  # when the process declared dead started; None when none was heard

    def moves(self, assigned_ms: int) -> bool:
        return True


@dataclass(frozen=True)
class Restarted:
    """A new process under a worker's id: what was assigned before it started was the old one's, and
    moves; what came after is the new process's own."""

    since_ms: int

    def moves(self, assigned_ms: int) -> bool:
        return assigned_ms < self.since_ms


Orphaned = Died | Restarted  # why a worker's queued work is to move, and which of it


async def queued_assignments(bus: Bus, worker_id: str) -> AsyncIterator[tuple[RawStreamMsg, Assignment]]:
    """The assignments waiting in ASSIGNMENTS for `worker_id` (unacknowledged), oldest first, each
    with its stored message (sequence and trace headers)."""
    seq = 1
    while True:
        try:
            raw = await bus.js.get_msg(streams.ASSIGNMENTS, seq=seq, subject=subjects.assign(worker_id), next=True)
        except NotFoundError:
            return
        seq = (raw.seq or 0) + 1
        yield raw, Assignment.decode(raw.data or b"")


@dataclass
class Failover:
    bus: Bus
    choose: Callable[[AnyRequest, str | None], str | None]  # (request, worker to avoid) -> worker, its slot taken
    max_attempts: int = 3
    release: Callable[[str], None] = _nothing_to_release  # gives back a slot `choose` took but a move did not use
    orphaned: dict[str, Orphaned] = field(default_factory=dict)  # the workers whose queued work is to move
    reassigned: int = 0
    started: dict[str, int] = field(default_factory=dict)  # worker -> start of its process, from heartbeats
    _drains: SerialPasses = field(init=False)

    def __post_init__(self) -> None:
        self._drains = SerialPasses(self._drain_once)

    async def worker_died(self, worker_id: str) -> None:
        """`worker_id` missed its heartbeats."""
        log.warning("worker %s missed its heartbeats: re-assigning its work", worker_id)
        self.orphaned[worker_id] = Died(self.started.get(worker_id))
        await self.drain()

    async def heard(self, worker_id: str, started_ms: int) -> None:
        """A heartbeat from the process of `worker_id` started at `started_ms`: a new process under a
        known id is a restart; the process declared dead is back. The first heartbeat this scheduler
        hears from a worker moves what an earlier process left in its queue: it may have restarted
        while no scheduler watched (the scheduler was restarting too), and its new process would get
        that work only at the redelivery timeout, and from scratch."""
        previous = self.started.get(worker_id)
        self.started[worker_id] = started_ms
        if previous is None:
            self.orphaned.setdefault(worker_id, Restarted(started_ms))
            await self.drain()
        elif previous != started_ms:
            await self.worker_restarted(worker_id, started_ms)
        self.worker_back(worker_id, started_ms)

    def worker_back(self, worker_id: str, started_ms: int) -> None:
        """From the very process declared dead, a heartbeat means that process was cut off (a network
        partition, a starved machine), not dead, and still works on what it holds: what was not
        moved yet stays with it, rather than run twice at the cost of an attempt."""
        if self.orphaned.get(worker_id) == Died(started_ms):
            log.warning("worker %s is back: its remaining work stays with it", worker_id)
            del self.orphaned[worker_id]

    async def worker_restarted(self, worker_id: str, started_ms: int) -> None:
        """A new process under the same id: what the old one held would only come back after the
        redelivery timeout, from scratch; move it now, as for a death."""
        log.warning("worker %s restarted: re-assigning what its previous process held", worker_id)
        if not isinstance(self.orphaned.get(worker_id), Died):  # a death moves all of it already
            self.orphaned[worker_id] = Restarted(started_ms)
        await self.drain()

    async def drain(self) -> None:
        """Re-assign what dead workers left; what finds no free worker now is retried on the next
        call (each heartbeat, and each status that may bring a free slot). One pass at a time; a call
        during a pass makes it run once more."""
        await self._drains.ask()

    async def settled(self) -> None:
        """Once no drain pass is running: what it could move has its slot."""
        await self._drains.idle()

    async def _drain_once(self) -> None:
        for worker_id in sorted(self.orphaned):
            if await self._drain_worker(worker_id, self.orphaned[worker_id]):
                self.orphaned.pop(worker_id, None)

    async def _drain_worker(self, worker_id: str, orphaned: Orphaned) -> bool:
        async for raw, old in queued_assignments(self.bus, worker_id):
            if not orphaned.moves(old.assigned_ms):
                continue  # given to the new process: it is working on it
            with tracer.start_as_current_span(
                "fail over",
                context=extract(raw.headers),
                attributes={"modalmesh.service": "scheduler", "modalmesh.request_id": old.request_id},
            ):
                moved = await self.move(old)
            if not moved:
                return False
            await self.bus.js.delete_msg(streams.ASSIGNMENTS, raw.seq or 0)
        return True  # nothing (left) in its queue

    async def move(self, old: Assignment, exclude: str | None = None, worker: str | None = None) -> bool:
        """Re-assign one assignment (to `worker`, or one chosen, not `exclude`); False when no
        worker can take it right now. The worker is chosen, and its slot taken, before what was
        delivered is read back, so new requests arriving meanwhile cannot take that slot first."""
        rid = old.request_id
        attempt = old.attempt + 1
        late, spent = now_ms() > old.request.deadline_ms, attempt > self.max_attempts
        ending = late or spent
        chosen = None
        if worker is None and not ending:
            worker = chosen = self.choose(old.request, exclude)
            if worker is None:
                return False
        merge = RequestMerge()
        for chunk in await replay_results(self.bus, rid):
            merge.accept(chunk)
        out = ResultPublisher(self.bus, rid, FAILOVER_ID, attempt, seq=merge.next_seq)
        remaining = old.request.sampling.max_tokens - merge.delivered_tokens
        if merge.done or ending or remaining <= 0:
            if chosen is not None:
                self.release(chosen)
            if merge.done:
                return True  # it had finished; the worker died before acknowledging
            if late:
                await out.error(ErrorCode.deadline_exceeded, "the deadline passed while the request was failing over")
            elif spent:
                await out.error(ErrorCode.engine_error, f"gave up after {old.attempt} attempts: the workers died")
            else:  # every token was delivered; only the final was lost
                await out.final("length", Usage(completion_tokens=merge.delivered_tokens), Timings())
            return True
        assert worker is not None
        new = Assignment(
            worker_id=worker,
            attempt=attempt,
            request=old.request,
            resume_text=merge.merged_text,
            resume_tokens=merge.delivered_tokens,
            first_seq=merge.next_seq,
            fallback_for=old.fallback_for,
        )
        await self.bus.js.publish(subjects.assign(worker), new.encode(), headers=inject(dedup.assignment(new)))
        self.reassigned += 1
        REASSIGNED.labels("moved").inc()
        log.info("request %s: attempt %d on %s after %d delivered tokens", rid, attempt, worker, merge.delivered_tokens)
        return True
