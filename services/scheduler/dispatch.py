"""Dispatch: waiting requests to workers with a free slot, the best priority first, each assignment
stored in ASSIGNMENTS before its request is acknowledged (a scheduler that dies mid-way loses
nothing). A dead worker's work, moved by `failover`, takes free slots before new work."""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace

from nats.aio.msg import Msg
from opentelemetry.trace import Span

from contracts import dedup, subjects
from contracts.assignments import Assignment
from contracts.requests import AnyRequest
from services.common.bus import Bus
from services.common.domains import Domains
from services.common.passes import SerialPasses
from services.common.tracing import extract, inject, tracer
from services.scheduler import metrics
from services.scheduler.failover import Failover
from services.scheduler.policy import choose
from services.scheduler.queues import Queues, Waiting, plan
from services.scheduler.routing import Route, route
from services.scheduler.settings import SchedulerSettings
from services.scheduler.state import FleetState

log = logging.getLogger(__name__)


@dataclass
class Dispatcher:
    settings: SchedulerSettings
    bus: Bus
    fleet: FleetState
    queues: Queues[Msg]
    domains: Domains
    failover: Failover = field(init=False)
    decisions: int = 0
    decision_seconds: list[float] = field(default_factory=list)  # recent decision times, for metrics
    _passes: SerialPasses = field(init=False)

    def __post_init__(self) -> None:
        self.failover = Failover(self.bus, self.free_worker, self.settings.max_attempts, release=self.free_slot)
        self._passes = SerialPasses(self._dispatch_once)

    def route(self, model: str, exclude: str | None = None) -> Route:
        """Where `model`'s requests can go now (see `routing.route`)."""
        return route(model, self.fleet.catalog, self.fleet.workers.live(time.monotonic()), exclude)

    async def dispatch(self) -> None:
        """Send waiting requests to workers with free slots, best first (see `queues.plan`). One pass
        at a time; a call during a pass makes it run once more."""
        await self._passes.ask()

    async def _dispatch_once(self) -> None:
        if self.failover.orphaned:  # a dead worker's streams take free slots before new work
            await self.failover.drain()
            await self.failover.settled()
        now = time.monotonic()
        for waiting, worker in plan(self.queues.order(now), self._room(now), self._pick):
            self.queues.dispatched(waiting, now)
            metrics.QUEUE_WAIT.labels(waiting.domain, waiting.request.priority.value).observe(now - waiting.since)
            metrics.DISPATCHED.labels(waiting.domain, "cold" if waiting.cold else "warm").inc()
            with self._traced(waiting, worker, now):
                if waiting.handed_back:  # a re-queued request: its next attempt continues it
                    handed_back = Assignment(
                        worker_id="",
                        attempt=waiting.handed_back,
                        request=waiting.request,
                        fallback_for=waiting.fallback_for,
                    )
                    await self.failover.move(handed_back, worker=worker)
                else:
                    await self._assign(waiting.request, worker, waiting.fallback_for)
            await waiting.handle.ack()

    def _traced(self, waiting: Waiting[Msg], worker: str, now: float) -> AbstractContextManager[Span]:
        """Two spans in the trace the request's message carried: `queue wait`, from its arrival here
        to now, and `schedule`, its assignment to `worker` (which carries the trace on)."""
        context = extract(waiting.trace)
        attributes = {
            "modalmesh.service": "scheduler",
            "modalmesh.request_id": waiting.request_id,
            "modalmesh.domain": waiting.domain,
            "modalmesh.priority": waiting.request.priority.value,
        }
        waited_ns = int((now - waiting.since) * 1e9)
        tracer.start_span(
            "queue wait", context=context, start_time=time.time_ns() - waited_ns, attributes=attributes
        ).end()
        return tracer.start_as_current_span(
            "schedule",
            context=context,
            attributes={**attributes, "modalmesh.worker": worker, "modalmesh.queue_wait_ms": waited_ns / 1e6},
        )

    def _room(self, now: float) -> dict[str, int | None]:
        """Per domain with waiting work: how many more requests its cap lets in flight (None: no cap)."""
        load = self.fleet.load(now)
        room: dict[str, int | None] = {}
        for domain in self.queues.domains():
            cap = self.domains.spec(domain).max_concurrency
            room[domain] = None if cap is None else cap - load.get(domain, (0, 0))[0]
        return room

    def _pick(self, waiting: Waiting[Msg]) -> str | None:
        """A worker with a free slot for the waiting request; failing that, one for its model's catalog
        fallback once it is due (see `Route.fallback_due`), the request then re-addressed to it."""
        where = self.route(waiting.request.model)
        waiting.domain = where.served_in or waiting.domain  # a model placed since it came
        worker = self.decide(waiting.request, domain=waiting.domain)
        waited = time.monotonic() - waiting.since
        if (
            worker is None
            and waiting.fallback_for is None
            and where.fallback_due(waited, self.settings.fallback_after_s)
        ):
            rerouted = waiting.request.model_copy(update={"model": where.fallback})
            worker = self.decide(rerouted, domain=where.fallback_in)
            if worker is not None:
                log.info(
                    "request %s: %s has no capacity, served by %s", waiting.request_id, where.model, where.fallback
                )
                waiting.fallback_for, waiting.request = waiting.request.model, rerouted
        if worker is not None:
            self.fleet.recent[worker] += 1  # its slot is taken from now on
        return worker

    async def _assign(self, request: AnyRequest, worker: str, fallback_for: str | None = None) -> None:
        assignment = Assignment(worker_id=worker, request=request, fallback_for=fallback_for)
        await self.bus.js.publish(
            subjects.assign(worker), assignment.encode(), headers=inject(dedup.assignment(assignment))
        )

    def free_worker(self, request: AnyRequest, exclude: str | None = None) -> str | None:
        """For a failover: a live worker of the model's domain with a free slot now (its slot taken
        from now on), or None, and the move waits for the next slot to free rather than queueing
        behind one worker's running request while another frees first."""
        domain = self.route(request.model).served_in
        worker = self.decide(request, exclude=exclude, domain=domain) if domain is not None else None
        if worker is not None:
            self.fleet.recent[worker] += 1
        return worker

    def free_slot(self, worker: str) -> None:
        """A slot `free_worker` took and a move did not use."""
        self.fleet.recent[worker] = max(0, self.fleet.recent[worker] - 1)

    def decide(self, request: AnyRequest, exclude: str | None = None, domain: str | None = None) -> str | None:
        """The worker `request` should go to. With `domain`, only that domain's workers with a free
        slot count (None when there is none); without, any live worker serving the model does."""
        started = time.perf_counter()
        snapshot = self.fleet.snapshot(request.model, time.monotonic(), self.settings.weights, self.settings.limits)
        if exclude is not None or domain is not None:
            kept = tuple(
                c
                for c in snapshot.candidates
                if c.worker.worker_id != exclude and (domain is None or (c.worker.domain == domain and c.free > 0))
            )
            snapshot = replace(snapshot, candidates=kept)
        worker = choose(self.settings.policy, snapshot, request_id=request.request_id, counter=self.decisions)
        self.decisions += 1
        self.decision_seconds.append(time.perf_counter() - started)
        metrics.DECISION.observe(self.decision_seconds[-1])
        del self.decision_seconds[:-1000]
        return worker
