"""Intake: what comes to the scheduler besides heartbeats. New requests (they wait here,
unacknowledged, in their domain's queue), cancels of waiting ones, requests JetStream gave up
delivering (kept as dead letters) and work a worker hands back."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field

import nats
from nats.aio.msg import Msg

from contracts import dedup, streams, subjects
from contracts.assignments import Assignment
from contracts.base import now_ms
from contracts.errors import ErrorCode
from contracts.requests import AnyRequest, decode_request
from contracts.results import Timings, Usage
from services.common.bus import Bus
from services.common.cancels import RecentCancels
from services.common.results import ResultPublisher
from services.common.tracing import extract, inject, tracer
from services.scheduler import metrics
from services.scheduler.dispatch import Dispatcher
from services.scheduler.queues import Waiting
from services.scheduler.routing import Way
from services.scheduler.settings import SchedulerSettings

log = logging.getLogger(__name__)
SCHEDULER_ID = "scheduler"
ATTEMPT_HEADER = "ModalMesh-Attempt"  # on a re-queued request: the attempt that was handed back


async def fail(bus: Bus, request: AnyRequest, code: ErrorCode, message: str) -> None:
    """End `request` with an error its client sees."""
    log.info("request %s failed: %s", request.request_id, message)
    await ResultPublisher(bus, request.request_id, SCHEDULER_ID, attempt=1).error(code, message)


async def cancelled(bus: Bus, request_id: str) -> None:
    """End a request cancelled before it started."""
    await ResultPublisher(bus, request_id, SCHEDULER_ID, attempt=1).final("cancelled", Usage(), Timings())


@dataclass
class Intake:
    settings: SchedulerSettings
    bus: Bus
    dispatcher: Dispatcher
    _cancels: RecentCancels = field(default_factory=RecentCancels)

    async def on_request(self, msg: Msg) -> None:
        try:
            request = decode_request(msg.data)
        except ValueError:
            log.exception("undecodable request dropped")
            await msg.term()
            return
        if request.request_id in self._cancels:  # cancelled while queued: it never starts
            await cancelled(self.bus, request.request_id)
            await msg.ack()
            return
        if now_ms() > request.deadline_ms:
            await fail(self.bus, request, ErrorCode.deadline_exceeded, "deadline passed before a worker was free")
            await msg.ack()
            return
        route = self.dispatcher.route(request.model)  # served, else its fallback's domain, else where placed
        if route.domain is None:
            # Not an error yet: a worker may be starting. Redelivered, ever less often, until the
            # deadline or `max_deliver`.
            tries = msg.metadata.num_delivered or 1
            await msg.nak(delay=min(self.settings.retry_max_s, self.settings.retry_no_worker_s * 2 ** (tries - 1)))
            return
        queues = self.dispatcher.queues
        max_queue = self.dispatcher.domains.spec(route.domain).max_queue
        if max_queue is not None and request.request_id not in queues and queues.depth(route.domain) >= max_queue:
            message = f"the {route.domain} queue is full ({max_queue} waiting); retry shortly"
            await fail(self.bus, request, ErrorCode.overloaded, message)
            await msg.ack()
            return
        now = time.monotonic()
        attempt = int((msg.headers or {}).get(ATTEMPT_HEADER, 0))
        trace = dict(msg.headers or {})
        cold = route.way is not Way.served
        queues.add(
            Waiting(request, route.domain, msg, since=now, touched=now, cold=cold, handed_back=attempt, trace=trace)
        )
        await self.dispatcher.dispatch()

    async def tend(self) -> None:
        """Fail what waited past its deadline; tell JetStream the rest is still in hand."""
        queues = self.dispatcher.queues
        for waiting in queues.expired(now_ms()):
            message = f"the deadline passed while waiting for a free {waiting.domain} slot"
            await fail(self.bus, waiting.request, ErrorCode.deadline_exceeded, message)
            await waiting.handle.ack()
        for waiting in queues.to_touch(time.monotonic(), self.settings.ack_wait_s / 3):
            await waiting.handle.in_progress()

    async def on_cancel(self, msg: Msg) -> None:
        cancel = self._cancels.observe(msg)
        waiting = self.dispatcher.queues.remove(cancel.request_id) if cancel is not None else None
        if waiting is not None:  # cancelled while it waited for a slot: it never starts
            await cancelled(self.bus, waiting.request_id)
            await waiting.handle.ack()

    async def on_max_deliveries(self, msg: Msg) -> None:
        """A request JetStream stopped delivering: keep it in `dead.<modality>`, tell its client, and
        take it out of the work queue."""
        try:
            seq = int(json.loads(msg.data)["stream_seq"])
            raw = await self.bus.js.get_msg(streams.REQUESTS, seq)
            request = decode_request(raw.data or b"")
        except (ValueError, KeyError, nats.errors.Error) as exc:
            log.warning("max-deliveries advisory not handled: %s", exc)
            return
        dead = subjects.dead(request.modality)
        await self.bus.js.publish(dead, raw.data or b"", headers=dedup.dead_letter(request.request_id))
        tries = self.settings.max_deliver
        message = f"gave up after {tries} tries: no worker could take it (kept in {dead})"
        await fail(self.bus, request, ErrorCode.no_live_worker, message)
        await self.bus.js.delete_msg(streams.REQUESTS, seq)

    async def on_give_back(self, msg: Msg) -> None:
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
        to be placed again, when it is being unloaded here); False when nothing else will serve it."""
        if await self.dispatcher.failover.move(old, exclude=old.worker_id):
            return True
        if self.dispatcher.route(old.request.model, exclude=old.worker_id).way is Way.refused:
            return False
        # Back in REQUESTS, marked with its attempt: it waits in a scheduler like a new request and,
        # once dispatched, continues after what was delivered.
        log.info("request %s: no worker holds %s now; re-queued", old.request_id, old.request.model)
        metrics.REASSIGNED.labels("requeued").inc()
        headers = {**dedup.requeued(old.request_id, old.attempt), ATTEMPT_HEADER: str(old.attempt)}
        await self.bus.js.publish(subjects.request(old.request.modality), old.request.encode(), headers=inject(headers))
        return True
