"""The gateway's side of the bus: what is live, publishing requests, and reading their merged output."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import nats
import nats.js.errors
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import DeliverPolicy
from nats.js.kv import KeyValue

from contracts import dedup, streams, subjects
from contracts.base import now_ms
from contracts.control import Cancel
from contracts.errors import (
    BusUnavailable,
    DeadlineExceeded,
    ErrorCode,
    InvalidRequest,
    ModelNotFound,
    NoLiveWorker,
    Overloaded,
    error_for,
)
from contracts.queues import QueueReport
from contracts.requests import AnyRequest, ChatRequest, Modality
from contracts.results import AnyChunk, DeltaChunk, ErrorChunk, FinalChunk, ProgressChunk, Usage, decode_chunk
from contracts.tasks import FINAL_STATUSES, TaskState, TaskStatus
from contracts.telemetry import Alert, AlertState
from services.common.bus import Bus
from services.common.fleet import FleetView, decoded
from services.common.merge import RequestMerge
from services.common.results import replay_results
from services.common.tracing import inject
from services.gateway import metrics
from services.scheduler.routing import Way, route

log = logging.getLogger(__name__)
QUIET_S = 2.0  # a request silent this long is checked against RESULTS


@dataclass
class GatewayFleet(FleetView):
    """The fleet as the gateway needs it: besides workers and nodes, the catalog (`models` bucket)
    and alerts (stream ALERTS)."""

    queue_reports: dict[str, tuple[float, QueueReport]] = field(default_factory=dict)  # by scheduler, when heard
    alerts: deque[Alert] = field(default_factory=lambda: deque(maxlen=1000))
    active_alerts: dict[tuple[str, str, str], Alert] = field(default_factory=dict)

    def require_live(self, model: str, modality: Modality | None = None, images: bool = False) -> None:
        if model not in self.catalog:
            raise ModelNotFound(f"The model `{model}` does not exist")
        serves = self.catalog[model].modality
        if modality is not None and modality not in serves:
            raise InvalidRequest(f"The model `{model}` does {', '.join(m.value for m in serves)}, not {modality.value}")
        if images and "image" not in self.catalog[model].inputs:
            raise InvalidRequest(f"The model `{model}` cannot see images")
        # Served, or its fallback is, or a host can load it: the scheduler's own rule.
        if route(model, self.catalog, self.workers.live(time.monotonic())).way is Way.refused:
            raise NoLiveWorker(f"No live worker serves `{model}` right now; retry shortly")

    def record_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)
        key = (alert.name, alert.node, alert.subject_key)
        if alert.state is AlertState.firing:
            self.active_alerts[key] = alert
        else:
            self.active_alerts.pop(key, None)

    def live_queue_reports(self, now: float) -> list[QueueReport]:
        """The latest report of each scheduler heard from within `dead_after_s`."""
        return [r for heard, r in self.queue_reports.values() if now - heard <= self.dead_after_s]


class Relay:
    """Publishes requests and hands back their merged output, one `RequestStream` per request."""

    def __init__(self, bus: Bus, dead_after_s: float, max_inflight_per_model: int = 512) -> None:
        self.bus = bus
        self.fleet = GatewayFleet(dead_after_s=dead_after_s)
        self.max_inflight_per_model = max_inflight_per_model
        self.inflight: Counter[str] = Counter()
        self._alerts_sub: Any = None
        self._queues_sub: Any = None
        self._tasks: KeyValue | None = None

    @property
    def tasks(self) -> KeyValue:
        """The `tasks` bucket, looked up once at start rather than on every request."""
        assert self._tasks is not None, "Relay.start() first"
        return self._tasks

    async def start(self) -> None:
        self._tasks = await self.bus.js.key_value(streams.KV_TASKS)
        await self.fleet.follow(self.bus)
        await self.fleet.follow_catalog(self.bus)
        # Every alert still in the stream, then new ones; an ordered consumer needs no cleanup.
        self._alerts_sub = await self.bus.js.subscribe(
            subjects.ALERTS_ALL, cb=self._on_alert, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
        )
        self._queues_sub = await self.bus.nc.subscribe(subjects.QUEUE_REPORTS_ALL, cb=self._on_queue_report)

    async def stop(self) -> None:
        for sub in (self._alerts_sub, self._queues_sub):
            if sub is not None:
                await sub.unsubscribe()
        await self.fleet.unfollow()

    async def _on_alert(self, msg: Msg) -> None:
        if (alert := decoded(Alert, msg)) is not None:
            self.fleet.record_alert(alert)

    async def _on_queue_report(self, msg: Msg) -> None:
        if (report := decoded(QueueReport, msg)) is not None:
            self.fleet.queue_reports[report.scheduler_id] = (time.monotonic(), report)

    async def submit(self, request: AnyRequest) -> ChunkStream:
        """Publish `request` durably and return the stream of its merged output. A request whose id
        JetStream has seen within its de-duplication window (a retried idempotent request) is not run
        again: its stream replays the first run's result."""
        self.fleet.require_live(
            request.model, request.modality, images=isinstance(request, ChatRequest) and request.has_images
        )
        if self.inflight[request.model] >= self.max_inflight_per_model:
            raise Overloaded(f"`{request.model}` has {self.inflight[request.model]} requests in flight; retry shortly")
        stream = RequestStream(self.bus, request, on_close=self._done)
        await stream.open()
        self.inflight[request.model] += 1
        metrics.IN_FLIGHT.labels(request.model).set(self.inflight[request.model])
        try:
            ack = await self.bus.js.publish(
                subjects.request(request.modality),
                request.encode(),
                headers=inject(dedup.request(request.request_id)),
            )
        except nats.errors.Error as exc:
            await stream.close()  # it may be stored after all (the acknowledgement was lost): cancelled
            raise BusUnavailable("the message bus did not confirm the request; retry shortly") from exc
        except BaseException:
            await stream.close(cancel=False)
            raise
        if ack.duplicate:
            await stream.close(cancel=False)
            return ReplayStream(self.tasks, request)
        return stream

    async def enqueue(self, request: AnyRequest) -> TaskState:
        """Publish `request` as an async task: its state goes into the `tasks` bucket as queued, and
        nobody waits here. A request id seen before (a retried idempotent request) is not run again:
        its current state comes back."""
        self.fleet.require_live(request.model, request.modality)
        kv = self.tasks
        state = TaskState(
            request_id=request.request_id,
            status=TaskStatus.queued,
            model=request.model,
            modality=request.modality.value,
            created_ms=request.created_ms,
        )
        try:
            try:
                await kv.create(request.request_id, state.encode())
            except nats.js.errors.KeyWrongLastSequenceError:
                state = TaskState.decode((await kv.get(request.request_id)).value or b"")
                if state.status is not TaskStatus.queued:
                    return state
                # Still queued: perhaps its publish failed in an outage. Again (de-duplicated if stored).
            await self.bus.js.publish(
                subjects.request(request.modality),
                request.encode(),
                headers=inject(dedup.request(request.request_id)),
            )
        except nats.errors.Error as exc:
            raise BusUnavailable("the message bus did not confirm the task; retry it (same key) shortly") from exc
        return state

    def _done(self, request: AnyRequest) -> None:
        self.inflight[request.model] -= 1
        metrics.IN_FLIGHT.labels(request.model).set(max(0, self.inflight[request.model]))
        if self.inflight[request.model] <= 0:
            del self.inflight[request.model]


class ChunkStream(Protocol):
    finished: bool

    async def next(self) -> AnyChunk: ...

    def __aiter__(self) -> AsyncIterator[AnyChunk]: ...

    async def close(self, cancel: bool = True) -> None: ...


class ReplayStream:
    """The result of a request that already ran (or is running), read from the `tasks` bucket once it
    has ended, as one delta and the final chunk."""

    def __init__(self, tasks: KeyValue, request: AnyRequest) -> None:
        self.tasks = tasks
        self.request = request
        self.finished = False
        self._pending: list[AnyChunk] | None = None

    async def _final_state(self) -> TaskState:
        watcher = await self.tasks.watch(self.request.request_id)
        try:
            while True:
                remaining = (self.request.deadline_ms - now_ms()) / 1000
                try:
                    entry = await watcher.updates(timeout=max(remaining, 0.001))
                except nats.errors.TimeoutError:
                    raise DeadlineExceeded(f"the first run of {self.request.request_id} did not end in time") from None
                if entry is not None and entry.value:
                    state = TaskState.decode(entry.value)
                    if state.status in FINAL_STATUSES:
                        return state
        finally:
            await watcher.stop()

    async def next(self) -> AnyChunk:
        if self._pending is None:
            state = await self._final_state()
            if state.status is TaskStatus.failed:
                self.finished = True
                raise error_for(state.error_code or ErrorCode.engine_error, state.error or "failed")
            rid = self.request.request_id
            self._pending = [
                DeltaChunk(request_id=rid, seq=0, text=state.text),
                FinalChunk(
                    request_id=rid,
                    seq=1,
                    finish_reason=state.finish_reason or "stop",  # type: ignore[arg-type]
                    usage=state.usage or Usage(),
                ),
            ]
        chunk = self._pending.pop(0)
        self.finished = not self._pending
        return chunk

    async def __aiter__(self) -> AsyncIterator[AnyChunk]:
        while not self.finished:
            yield await self.next()

    async def close(self, cancel: bool = True) -> None:
        """Nothing to stop: the request belongs to its first caller."""


class RequestStream:
    """The merged output of one request, read from `out.<request>` until a terminal chunk or the deadline."""

    def __init__(self, bus: Bus, request: AnyRequest, on_close: Callable[[AnyRequest], None] | None = None) -> None:
        self.bus = bus
        self.request = request
        self._on_close = on_close
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub: Subscription | None = None
        self._next_seq = 0
        self._ready: deque[AnyChunk] = deque()
        self.finished = False
        self._output_seen = False

    async def open(self) -> None:
        self._sub = await self.bus.nc.subscribe(subjects.out(self.request.request_id), cb=self._queue.put)

    async def next(self) -> AnyChunk:
        """The next chunk; raises the request's error, or DeadlineExceeded when its deadline passes.

        `out.<request>` is core NATS: a NATS restart can drop some of it. So a chunk seen before is
        skipped by its seq, and a gap in the seqs, or a silence of QUIET_S, is filled from RESULTS,
        which keeps every chunk durably."""
        while True:
            if self._ready:
                chunk = self._ready.popleft()
            else:
                remaining = (self.request.deadline_ms - now_ms()) / 1000
                try:
                    msg = await asyncio.wait_for(self._queue.get(), timeout=max(min(remaining, QUIET_S), 0.001))
                except asyncio.TimeoutError:
                    if remaining <= QUIET_S:
                        raise DeadlineExceeded(
                            f"no answer within the request's deadline ({self.request.request_id})"
                        ) from None
                    self._ready.extend(await self._backfill())
                    continue
                chunk = decode_chunk(msg.data)
                if not isinstance(chunk, ErrorChunk) and chunk.seq > self._next_seq:
                    self._ready.extend(await self._backfill())
                    self._ready.append(chunk)
                    continue
            if isinstance(chunk, ErrorChunk) or chunk.seq >= self._next_seq:
                break
        self._next_seq = chunk.seq + 1
        metrics.observe_chunk(self.request, chunk, first=not self._output_seen)
        self._output_seen = self._output_seen or not isinstance(chunk, ProgressChunk)
        if isinstance(chunk, (FinalChunk, ErrorChunk)):
            self.finished = True
        if isinstance(chunk, ErrorChunk):
            raise error_for(chunk.code, chunk.message, chunk.param)
        return chunk

    async def _backfill(self) -> list[AnyChunk]:
        """The chunks after the last one delivered that RESULTS holds, in order. Retried while NATS
        cannot answer (just after a restart), up to the request's deadline: a chunk after a gap is
        never released before the gap is filled."""
        try:
            earlier_chunks = await replay_results(
                self.bus, self.request.request_id, within_s=(self.request.deadline_ms - now_ms()) / 1000
            )
        except (nats.errors.Error, asyncio.TimeoutError):
            raise DeadlineExceeded(
                f"RESULTS could not be read before the deadline ({self.request.request_id})"
            ) from None
        merge = RequestMerge()
        released = [c for earlier in earlier_chunks for c in merge.accept(earlier)]
        return [c for c in released if isinstance(c, ErrorChunk) or c.seq >= self._next_seq]

    async def __aiter__(self) -> AsyncIterator[AnyChunk]:
        while not self.finished:
            yield await self.next()

    async def close(self, cancel: bool = True) -> None:
        """Stop listening; if the request has not finished, tell the fleet to stop working on it."""
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
            if self._on_close is not None:
                self._on_close(self.request)
        if cancel and not self.finished and self.bus.nc.is_connected:
            reason = "deadline" if now_ms() >= self.request.deadline_ms else "client_disconnected"
            cancel_msg = Cancel(request_id=self.request.request_id, reason=reason)
            await self.bus.nc.publish(subjects.cancel(self.request.request_id), cancel_msg.encode())
