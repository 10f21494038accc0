"""The scheduler's handlers: thin I/O around the pure policy and queues. A request waits here (its
message unacknowledged) until a worker of its domain has a free slot, the best priority first, and
is acknowledged only once its assignment is stored in ASSIGNMENTS, so a scheduler that dies mid-way
loses nothing."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections import Counter
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Literal

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, RetentionPolicy
from opentelemetry.trace import Span

from contracts import streams, subjects
from contracts.assignments import Assignment
from contracts.base import now_ms
from contracts.control import ModelCommand
from contracts.errors import ErrorCode
from contracts.queues import DomainQueue, QueueReport
from contracts.requests import AnyRequest, Priority, decode_request
from contracts.results import Timings, Usage
from contracts.workers import ModelState, WorkerState, WorkerStatus
from services.common.alert_rules import AlertKey, CrashLoop, evaluate_offline
from services.common.alerts import publish_alert
from services.common.bus import Bus
from services.common.cancels import RecentCancels
from services.common.domains import Domains
from services.common.passes import SerialPasses
from services.common.results import ResultPublisher
from services.common.shutdown import wait_or_stop
from services.common.tracing import extract, inject, tracer
from services.scheduler import metrics
from services.scheduler.catalog import follow_file
from services.scheduler.failover import Failover
from services.scheduler.placement import Command, Held, Host, Load, Unload, Wanted, command_settled
from services.scheduler.placement import plan as place
from services.scheduler.policy import choose
from services.scheduler.queues import Queues, Waiting, plan
from services.scheduler.routing import Route, Way, route
from services.scheduler.settings import SchedulerSettings
from services.scheduler.state import FleetState

log = logging.getLogger(__name__)
SCHEDULER_ID = "scheduler"
JETSTREAM_SAMPLE_S = 5.0  # how often the streams' and consumers' backlog is read for metrics
ATTEMPT_HEADER = "ModalMesh-Attempt"  # on a re-queued request: the attempt that was handed back


@dataclass
class Scheduler:
    settings: SchedulerSettings
    bus: Bus
    fleet: FleetState = field(init=False)
    failover: Failover = field(init=False)
    decisions: int = 0
    decision_seconds: list[float] = field(default_factory=list)  # recent decision times, for metrics
    _offline_firing: frozenset[AlertKey] = frozenset()
    _crash_loop: CrashLoop = field(init=False)
    _cancels: RecentCancels = field(default_factory=RecentCancels)
    domains: Domains = field(default_factory=Domains.load)
    queues: Queues[Msg] = field(init=False)
    scheduler_id: str = field(default_factory=lambda: f"{socket.gethostname().split('.')[0]}-{os.getpid()}")
    _dispatches: SerialPasses = field(init=False)
    # By (model, worker): the last load or unload sent there (what the host ends up doing).
    _commanded: dict[tuple[str, str], Command] = field(default_factory=dict)
    _placed_at: float = 0.0
    placements: Counter[str] = field(default_factory=Counter)  # commands sent, by reason
    _sampled_js: float = 0.0

    def __post_init__(self) -> None:
        self.queues = Queues(aging_s=self.settings.aging_s)
        self.fleet = FleetState(dead_after_s=self.settings.dead_after_s)
        self.fleet.on_override = self._place_soon
        self.failover = Failover(self.bus, self._free_worker, self.settings.max_attempts, release=self._free_slot)
        self._dispatches = SerialPasses(self._dispatch_once)
        self._crash_loop = CrashLoop(self.settings.crash_loop_restarts, int(self.settings.crash_loop_window_s * 1000))

    async def run(self, stop: asyncio.Event) -> None:
        await self.fleet.follow(self.bus, on_status=self._on_status)
        await self.fleet.follow_catalog(self.bus)
        await self._adopt_known_workers()
        housekeeping = asyncio.create_task(self._housekeeping(stop))
        catalog = (
            asyncio.create_task(follow_file(self.bus, self.settings.catalog_file, stop))
            if self.settings.catalog_file is not None
            else None
        )
        cancel_sub = await self.bus.nc.subscribe(subjects.CANCEL_ALL, cb=self._on_cancel)
        giveback_sub = await self.bus.nc.subscribe(
            subjects.GIVEBACK, queue=streams.SCHEDULER_CONSUMER, cb=self._on_give_back
        )
        # One durable consumer shared by every scheduler (a queue group): each request reaches one.
        req_sub = await self.bus.js.subscribe(
            subjects.REQUESTS_ALL,
            queue=streams.SCHEDULER_CONSUMER,
            durable=streams.SCHEDULER_CONSUMER,
            stream=streams.REQUESTS,
            manual_ack=True,
            cb=self._on_request,
            # Requests waiting here for a slot are unacknowledged: room for every queue's fill.
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.settings.ack_wait_s,
                max_deliver=self.settings.max_deliver,
                max_ack_pending=self.settings.max_waiting,
            ),
        )
        # One scheduler (a queue group) takes each request that ran out of deliveries.
        dead_sub = await self.bus.nc.subscribe(
            subjects.max_deliveries_advisory(streams.REQUESTS, streams.SCHEDULER_CONSUMER),
            queue=streams.SCHEDULER_CONSUMER,
            cb=self._on_max_deliveries,
        )
        log.info("scheduler ready, policy %s", self.settings.policy.value)
        await stop.wait()
        await req_sub.unsubscribe()
        await cancel_sub.unsubscribe()
        await dead_sub.unsubscribe()
        await giveback_sub.unsubscribe()
        await housekeeping
        if catalog is not None:
            await catalog
        await self.fleet.unfollow()

    async def _on_status(self, status: WorkerStatus) -> None:
        self.fleet.recent.pop(status.worker_id, None)
        await self.failover.heard(status.worker_id, status.started_ms)
        for alert in self._crash_loop.observe(status.worker_id, status.node, status.started_ms, now_ms()):
            await publish_alert(self.bus, alert, self.settings.webhook_url)
        if self.queues:  # a slot may have come free (a dead worker's streams take it first)
            await self.dispatch()
        elif self.failover.orphaned:
            await self.failover.drain()

    async def _adopt_known_workers(self) -> None:
        """Workers that have an assignment queue count as seen now: if one is already dead, it is
        noticed after `dead_after_s` like any other, and its work is re-assigned."""
        now = time.monotonic()
        for info in await self.bus.js.consumers_info(streams.ASSIGNMENTS):
            name = info.name or ""
            if name.startswith(streams.worker_consumer("")) and not self.fleet.workers.get(name, now):
                wid = name.removeprefix(streams.worker_consumer(""))
                self.fleet.workers.observe_status(
                    WorkerStatus(
                        worker_id=wid, node="", engine="", models=(), slots_total=0, slots_free=0, outstanding=0
                    ),
                    now,
                )

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        """Every heartbeat interval: re-assign the work of dead workers, raise node-offline alerts.
        While this scheduler is cut off from NATS it hears no heartbeat, and declares nobody dead."""
        while not stop.is_set():
            now = time.monotonic()
            if not self.bus.nc.is_connected:  # deaf, not a fleet gone dead (a NATS restart)
                self.fleet.hold(now)
                await wait_or_stop(stop, self.settings.heartbeat_s / 2)
                continue
            for worker_id in self.fleet.workers.forget_dead(now):
                await self.failover.worker_died(worker_id)
            await self.failover.drain()
            seen = {node: now_ms() - int((now - t) * 1000) for node, t in self.fleet.nodes.last_seen().items()}
            alerts, self._offline_firing = evaluate_offline(
                seen, now_ms(), int(self.settings.dead_after_s * 1000), self._offline_firing
            )
            for alert in alerts:
                await publish_alert(self.bus, alert, self.settings.webhook_url)
            await self._tend_queues()
            await wait_or_stop(stop, self.settings.heartbeat_s / 2)

    async def _tend_queues(self) -> None:
        """Fail what waited past its deadline, tell JetStream the rest is still in hand, dispatch what
        aging or freed capacity now lets go, and report the queues."""
        for waiting in self.queues.expired(now_ms()):
            await self._fail(
                waiting.request,
                ErrorCode.deadline_exceeded,
                f"the deadline passed while waiting for a free {waiting.domain} slot",
            )
            await waiting.handle.ack()
        for waiting in self.queues.to_touch(time.monotonic(), self.settings.ack_wait_s / 3):
            await waiting.handle.in_progress()
        if time.monotonic() - self._placed_at >= self.settings.placement_interval_s:
            self._placed_at = time.monotonic()
            await self._place()
        await self.dispatch()
        if self.bus.nc.is_connected:
            report = self.queue_report()
            await self.bus.nc.publish(subjects.queue_report(self.scheduler_id), report.encode())
            self._fleet_metrics(report)
            if time.monotonic() - self._sampled_js >= JETSTREAM_SAMPLE_S:
                self._sampled_js = time.monotonic()
                await self._jetstream_metrics()

    def _fleet_metrics(self, report: QueueReport) -> None:
        """The queues of `report`, live workers by domain and state, and every catalog model's
        replicas by state."""
        for d in report.domains:
            metrics.DOMAIN_IN_FLIGHT.labels(d.domain).set(d.in_flight)
            metrics.DOMAIN_SLOTS.labels(d.domain).set(d.slots)
            for priority in Priority:
                q = d.classes.get(priority)
                metrics.QUEUE_DEPTH.labels(d.domain, priority.value).set(q.waiting if q is not None else 0)
        live = self.fleet.workers.live(time.monotonic())
        workers: Counter[tuple[str, str]] = Counter((w.domain, w.state.value) for w in live)
        metrics.WORKERS.clear()
        for (domain, state), n in workers.items():
            metrics.WORKERS.labels(domain, state).set(n)
        replicas = Counter((model, r.state.value) for w in live for model, r in w.replicas().items())
        for model in self.fleet.catalog:
            for state in ModelState:
                metrics.MODEL_REPLICAS.labels(model, state.value).set(replicas[(model, state.value)])

    async def _jetstream_metrics(self) -> None:
        """The backlog of every stream and consumer: what waits to be delivered or acknowledged."""
        try:
            for stream in await self.bus.js.streams_info():
                name = stream.config.name or ""
                metrics.STREAM_MESSAGES.labels(name).set(stream.state.messages)
                if stream.config.retention is not RetentionPolicy.WORK_QUEUE and name != streams.RESULTS:
                    continue  # the KV and object-store streams have no consumers worth watching
                for consumer in await self.bus.js.consumers_info(name):
                    metrics.CONSUMER_PENDING.labels(name, consumer.name).set(consumer.num_pending or 0)
                    metrics.CONSUMER_ACK_PENDING.labels(name, consumer.name).set(consumer.num_ack_pending or 0)
        except nats.errors.Error as exc:
            log.debug("jetstream metrics not sampled: %s", exc)

    def queue_report(self) -> QueueReport:
        now = time.monotonic()
        load = self.fleet.load(now)
        domains = []
        for name in sorted(self.queues.domains() | set(load) | set(self.domains.domains)):
            spec = self.domains.spec(name)
            in_flight, slots = load.get(name, (0, 0))
            domains.append(
                DomainQueue(
                    domain=name,
                    in_flight=in_flight,
                    slots=slots,
                    max_queue=spec.max_queue,
                    max_concurrency=spec.max_concurrency,
                    classes=self.queues.classes(name, now),
                    cold_starts=self.queues.cold_starts[name],
                    warm_hits=self.queues.warm_hits[name],
                )
            )
        return QueueReport(scheduler_id=self.scheduler_id, domains=tuple(domains), placements=dict(self.placements))

    async def dispatch(self) -> None:
        """Send waiting requests to workers with free slots, best first (see `queues.plan`). One pass
        at a time; a call during a pass makes it run once more."""
        await self._dispatches.ask()

    async def _dispatch_once(self) -> None:
        if self.failover.orphaned:  # a dead worker's streams take free slots before new work
            await self.failover.drain()
            await self.failover.settled()
        now = time.monotonic()
        for waiting, worker in plan(self.queues.order(now), self._room(now), self._pick):
            self.queues.dispatched(waiting, now)
            wait = metrics.QUEUE_WAIT.labels(waiting.domain, waiting.request.priority.value)
            wait.observe(now - waiting.since)
            metrics.DISPATCHED.labels(waiting.domain, "cold" if waiting.cold else "warm").inc()
            with self._traced_dispatch(waiting, worker, now):
                if waiting.handed_back:  # a re-queued request: its next attempt continues it
                    await self.failover.move(
                        Assignment(
                            worker_id="",
                            attempt=waiting.handed_back,
                            request=waiting.request,
                            fallback_for=waiting.fallback_for,
                        ),
                        worker=worker,
                    )
                else:
                    await self._assign(waiting.request, worker, waiting.fallback_for)
            await waiting.handle.ack()

    def _traced_dispatch(self, waiting: Waiting[Msg], worker: str, now: float) -> AbstractContextManager[Span]:
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
        fallback once it has waited `fallback_after_s` (at once when nothing serves its model), in
        which case the request is re-addressed to the fallback model."""
        now = time.monotonic()
        way = self.route(waiting.request.model)
        waiting.domain = way.served_in or waiting.domain  # a model placed since it came
        worker = self.decide(waiting.request, domain=waiting.domain)
        if (
            worker is None
            and waiting.fallback_for is None
            and way.fallback_due(now - waiting.since, self.settings.fallback_after_s)
        ):
            rerouted = waiting.request.model_copy(update={"model": way.fallback})
            worker = self.decide(rerouted, domain=way.fallback_in)
            if worker is not None:
                log.info(
                    "request %s: %s has no capacity, served by its fallback %s",
                    waiting.request_id,
                    waiting.request.model,
                    way.fallback,
                )
                waiting.fallback_for, waiting.request = waiting.request.model, rerouted
        if worker is not None:
            self.fleet.recent[worker] += 1  # its slot is taken from now on
        return worker

    def _place_soon(self) -> None:
        """An operator changed a model's override: plan at the next housekeeping tick."""
        self._placed_at = 0.0

    def route(self, model: str, exclude: str | None = None) -> Route:
        """Where `model`'s requests can go now (see `routing.route`)."""
        return route(model, self.fleet.catalog, self.fleet.workers.live(time.monotonic()), exclude)

    async def _place(self) -> None:
        """Plan placement (services/scheduler/placement.py) over the host workers and the declared
        catalog, and send the load and unload commands. A command sent and not yet seen in the
        worker's heartbeat counts as under way for `placement_grace_s`, so nothing is asked twice
        (see `command_settled`)."""
        now, wall = time.monotonic(), now_ms()
        grace = self.settings.placement_grace_s
        self._commanded = {k: c for k, c in self._commanded.items() if now - c.sent_s <= grace}
        hosts, records = [], {}
        for w in self.fleet.workers.live(now):
            if w.memory_mb <= 0 or w.state is not WorkerState.ready:
                continue
            records[w.worker_id] = w.held
            holding = w.holding()
            held = {
                m: Held(
                    h.memory_mb,
                    last_used_s=now - (wall - h.last_used_ms) / 1000,
                    in_flight=h.in_flight,
                    pinned=m in self.fleet.overrides and self.fleet.overrides[m].pinned,
                )
                for m, h in holding.items()
            }
            for key in [k for k in self._commanded if k[1] == w.worker_id]:
                model, command = key[0], self._commanded[key]
                if command_settled(w.held.get(model), command):
                    del self._commanded[key]
                elif command.kind == "load":
                    entry = self.fleet.catalog.get(model)
                    held[model] = Held((entry.memory_mb or 0.0) if entry is not None else 0.0, last_used_s=now)
                else:
                    held.pop(model, None)
            caps = self.fleet.capabilities.get(w.node)
            hosts.append(Host(w.worker_id, w.memory_mb, caps.labels if caps else {}, held))
        if not hosts:
            return
        entries = [self.fleet.effective(model) for model, entry in self.fleet.catalog.items() if entry.placed]
        wanted = [
            Wanted(e.id, e.memory_mb or 0.0, e.priority, e.min_replicas, e.max_replicas, e.idle_unload_s, e.node_labels)
            for e in entries
            if e is not None
        ]
        waiting = Counter(w.request.model for w in self.queues.waiting.values())
        for action in place(hosts, wanted, waiting, now):
            kind: Literal["load", "unload"] = "load" if isinstance(action, Load) else "unload"
            record = records[action.worker_id].get(action.model)
            self._commanded[(action.model, action.worker_id)] = Command(kind, now, record.since_ms if record else None)
            self.placements[action.reason.name] += 1
            metrics.PLACEMENTS.labels(kind, action.reason.name).inc()
            by = action.by if isinstance(action, Unload) else None
            log.info(
                "%s %s on %s: %s%s", kind, action.model, action.worker_id, action.reason.value, f" ({by})" if by else ""
            )
            await self.bus.nc.publish(
                subjects.control(action.worker_id),
                ModelCommand(action=kind, model=action.model, reason=action.reason.name, by=by).encode(),
            )

    async def _assign(self, request: AnyRequest, worker: str, fallback_for: str | None = None) -> None:
        assignment = Assignment(worker_id=worker, request=request, fallback_for=fallback_for)
        await self.bus.js.publish(
            subjects.assign(worker), assignment.encode(), headers=inject({"Nats-Msg-Id": assignment.dedup_id})
        )

    def _free_worker(self, request: AnyRequest, exclude: str | None = None) -> str | None:
        """For a failover: a live worker of the model's domain with a free slot now (its slot taken
        from now on), or None, and the move waits for the next slot to free rather than queueing
        behind one worker's running request while another frees first."""
        domain = self.fleet.domain_of(request.model, time.monotonic())
        worker = self.decide(request, exclude=exclude, domain=domain) if domain is not None else None
        if worker is not None:
            self.fleet.recent[worker] += 1
        return worker

    def _free_slot(self, worker: str) -> None:
        """A slot `_free_worker` took and a move did not use."""
        self.fleet.recent[worker] = max(0, self.fleet.recent[worker] - 1)

    def decide(self, request: AnyRequest, exclude: str | None = None, domain: str | None = None) -> str | None:
        """The worker `request` should go to. With `domain`, only that domain's workers with a free
        slot count (None when there is none); without, any live worker serving the model does."""
        started = time.perf_counter()
        snapshot = self.fleet.snapshot(request.model, time.monotonic(), self.settings.weights, self.settings.limits)
        if exclude is not None or domain is not None:
            snapshot = replace(
                snapshot,
                candidates=tuple(
                    c
                    for c in snapshot.candidates
                    if c.worker.worker_id != exclude and (domain is None or (c.worker.domain == domain and c.free > 0))
                ),
            )
        worker = choose(self.settings.policy, snapshot, request_id=request.request_id, counter=self.decisions)
        self.decisions += 1
        self.decision_seconds.append(time.perf_counter() - started)
        metrics.DECISION.observe(self.decision_seconds[-1])
        del self.decision_seconds[:-1000]
        return worker

    async def _on_request(self, msg: Msg) -> None:
        try:
            request = decode_request(msg.data)
        except ValueError:
            log.exception("undecodable request dropped")
            await msg.term()
            return
        if request.request_id in self._cancels:  # cancelled while queued: it never starts
            await ResultPublisher(self.bus, request.request_id, SCHEDULER_ID, attempt=1).final(
                "cancelled", Usage(), Timings()
            )
            await msg.ack()
            return
        if now_ms() > request.deadline_ms:
            await self._fail(request, ErrorCode.deadline_exceeded, "deadline passed before a worker was free")
            await msg.ack()
            return
        now = time.monotonic()
        way = self.route(request.model)  # served, else where its fallback runs, else where it is placed
        domain = way.domain
        if domain is None:
            # Not an error yet: a worker may be starting. Redelivered, ever less often, until the
            # deadline or `max_deliver`.
            tries = msg.metadata.num_delivered or 1
            await msg.nak(delay=min(self.settings.retry_max_s, self.settings.retry_no_worker_s * 2 ** (tries - 1)))
            return
        max_queue = self.domains.spec(domain).max_queue
        if max_queue is not None and request.request_id not in self.queues and self.queues.depth(domain) >= max_queue:
            await ResultPublisher(self.bus, request.request_id, SCHEDULER_ID, attempt=1).error(
                ErrorCode.overloaded, f"the {domain} queue is full ({max_queue} waiting); retry shortly"
            )
            await msg.ack()
            return
        attempt = int((msg.headers or {}).get(ATTEMPT_HEADER, 0))
        self.queues.add(
            Waiting(
                request,
                domain,
                msg,
                since=now,
                touched=now,
                cold=way.way is not Way.served,
                handed_back=attempt,
                trace=dict(msg.headers or {}),
            )
        )
        await self.dispatch()

    async def _on_max_deliveries(self, msg: Msg) -> None:
        """A request JetStream stopped delivering: keep it in `dead.<modality>`, tell its client, and
        take it out of the work queue."""
        try:
            seq = int(json.loads(msg.data)["stream_seq"])
            raw = await self.bus.js.get_msg(streams.REQUESTS, seq)
            request = decode_request(raw.data or b"")
        except (ValueError, KeyError, nats.errors.Error) as exc:
            log.warning("max-deliveries advisory not handled: %s", exc)
            return
        await self.bus.js.publish(
            subjects.dead(request.modality), raw.data or b"", headers={"Nats-Msg-Id": f"dead:{request.request_id}"}
        )
        await self._fail(
            request,
            ErrorCode.no_live_worker,
            f"gave up after {self.settings.max_deliver} tries: no worker could take it "
            f"(kept in {subjects.dead(request.modality)})",
        )
        await self.bus.js.delete_msg(streams.REQUESTS, seq)

    async def _on_give_back(self, msg: Msg) -> None:
        """A worker whose engine lost its backend mid-request hands the assignment back: it moves to
        another worker with `attempt + 1`, continuing after what was delivered, as after a death."""
        try:
            old = Assignment.decode(msg.data)
        except ValueError:
            await msg.respond(b"undecodable")
            return
        with tracer.start_as_current_span(
            "hand back",
            context=extract(msg.headers),
            attributes={"modalmesh.service": "scheduler", "modalmesh.request_id": old.request_id},
        ):
            moved = await self._move_or_requeue(old)
        await msg.respond(b"moved" if moved else b"no-worker")

    async def _move_or_requeue(self, old: Assignment) -> bool:
        """To a free slot now, else back in the queue for the first one that frees (or for its model
        to be placed again, when it is being unloaded here)."""
        if await self.failover.move(old, exclude=old.worker_id):
            return True
        if self.route(old.request.model, exclude=old.worker_id).way is not Way.refused:
            await self._requeue(old)
            return True
        return False

    async def _requeue(self, old: Assignment) -> None:
        """Put a handed-back request back in REQUESTS, marked with its attempt, so that it waits in a
        scheduler like a new one and, once dispatched, continues after what was delivered."""
        log.info("request %s: no worker holds %s now; re-queued", old.request_id, old.request.model)
        metrics.REASSIGNED.labels("requeued").inc()
        await self.bus.js.publish(
            subjects.request(old.request.modality),
            old.request.encode(),
            headers=inject(
                {"Nats-Msg-Id": f"{old.request_id}:requeue:{old.attempt}", ATTEMPT_HEADER: str(old.attempt)}
            ),
        )

    async def _on_cancel(self, msg: Msg) -> None:
        cancel = self._cancels.observe(msg)
        waiting = self.queues.remove(cancel.request_id) if cancel is not None else None
        if waiting is not None:  # cancelled while it waited for a slot: it never starts
            await ResultPublisher(self.bus, waiting.request_id, SCHEDULER_ID, attempt=1).final(
                "cancelled", Usage(), Timings()
            )
            await waiting.handle.ack()

    async def _fail(self, request: AnyRequest, code: ErrorCode, message: str) -> None:
        log.info("request %s failed: %s", request.request_id, message)
        await ResultPublisher(self.bus, request.request_id, SCHEDULER_ID, attempt=1).error(code, message)
