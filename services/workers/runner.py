"""Worker lifecycle: load the engine, announce it, run assignments, honour cancels, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import nats
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, ObjectMeta
from nats.js.object_store import ObjectStore

from contracts import streams, subjects
from contracts.assignments import Assignment
from contracts.base import now_ms
from contracts.control import ModelCommand
from contracts.errors import ErrorCode, ModalMeshError
from contracts.requests import TEXT_MODALITIES, default_priority
from contracts.results import Artifact, Timings, Usage
from contracts.workers import ModelEntry, WorkerState, WorkerStatus
from services.common.bus import Bus, ack_confirmed, while_unanswered
from services.common.cancels import RecentCancels
from services.common.results import ResultPublisher
from services.common.shutdown import wait_or_stop
from services.common.tracing import extract, inject, tracer
from services.workers import metrics
from services.workers.engine import BackendLost, Data, Engine, File, Finished, Progress, TextDelta
from services.workers.settings import WorkerSettings

if TYPE_CHECKING:
    from services.workers.host import ModelHost

log = logging.getLogger(__name__)
STATUS_COALESCE_S = 0.02
STARTUP_RETRY_S = 60.0


@dataclass
class ProgressGate:
    """Which of one request's progress events go out: the first, the last (fraction 1), and between
    them at most one per `every_s`."""

    every_s: float
    _last: float | None = None

    def due(self, fraction: float, now: float) -> bool:
        if self._last is not None and fraction < 1.0 and now - self._last < self.every_s:
            return False
        self._last = now
        return True


@dataclass
class _InFlight:
    assignment: Assignment
    task: asyncio.Task[None]
    deadline_passed: bool = False


@dataclass
class Worker:
    settings: WorkerSettings
    engine: Engine
    bus: Bus
    domain: str = "default"
    state: WorkerState = WorkerState.ready
    started_ms: int = field(default_factory=now_ms)
    _in_flight: dict[str, _InFlight] = field(default_factory=dict)
    _cancels: RecentCancels = field(default_factory=RecentCancels)
    _status_pending: asyncio.Task[None] | None = None
    _status_sent: float = 0.0
    _status_due: float = 0.0  # when the pending status goes out
    _artifacts: ObjectStore | None = None
    _control_tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def worker_id(self) -> str:
        return self.settings.worker_id

    def status(self) -> WorkerStatus:
        busy = len(self._in_flight)
        metrics.IN_FLIGHT.labels(self.worker_id, self.domain).set(busy)
        metrics.SLOTS.labels(self.worker_id, self.domain).set(self.engine.slots)
        healthy, detail = self.engine.health()
        batch = self.engine.batch_load()
        if batch is not None:
            metrics.KV_CACHE.labels(self.worker_id, self.domain).set(batch.kv_cache_usage)
        state = self.state if healthy or self.state is WorkerState.draining else WorkerState.unavailable
        return WorkerStatus(
            worker_id=self.worker_id,
            node=self.settings.node,
            engine=self.engine.kind,
            models=self.engine.models,
            slots_total=self.engine.slots,
            slots_free=max(0, self.engine.slots - busy),
            outstanding=busy,
            state=state,
            detail=detail,
            domain=self.domain,
            memory_mb=self.engine.memory_mb,
            held=self.engine.held(),
            batch=batch,
            started_ms=self.started_ms,
        )

    async def run(self, stop: asyncio.Event) -> None:
        async for attempt in while_unanswered(STARTUP_RETRY_S):  # a NATS restarting as the worker starts
            with attempt:
                await self._register_models()
        cancel_sub = await self.bus.nc.subscribe(subjects.CANCEL_ALL, cb=self._on_cancel)
        control_sub = await self.bus.nc.subscribe(subjects.control(self.worker_id), cb=self._on_control)
        heartbeat = asyncio.create_task(self._heartbeat(stop))
        assign_sub = await self.bus.js.subscribe(
            subjects.assign(self.worker_id),
            durable=streams.worker_consumer(self.worker_id),
            stream=streams.ASSIGNMENTS,
            manual_ack=True,
            cb=self._on_assignment,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=DeliverPolicy.ALL,
                max_ack_pending=self.engine.max_unacked,
                ack_wait=self.settings.ack_wait_s,
            ),
        )
        await self._publish_status()
        log.info("worker %s ready: %s", self.worker_id, ", ".join(self.engine.models))
        await stop.wait()
        await self._drain(assign_sub)
        heartbeat.cancel()
        if self._status_pending is not None:
            self._status_pending.cancel()
        await cancel_sub.unsubscribe()
        await control_sub.unsubscribe()

    async def _on_control(self, msg: Msg) -> None:
        """A command: drain or resume (any worker), or load or unload a catalog model (host workers
        only). Loads and unloads run apart, so a long load holds up neither heartbeats nor cancels."""
        try:
            command = ModelCommand.decode(msg.data)
        except ValueError:
            log.warning("undecodable control message on %s", msg.subject)
            return
        if command.action in ("drain", "resume"):
            # Draining: the scheduler sends nothing new; what is queued or running here finishes.
            self.state = WorkerState.draining if command.action == "drain" else WorkerState.ready
            log.info("%s (%s)", command.action, command.reason or "operator")
            await self._publish_status()
            return
        host = self.engine.host()
        if host is None:
            log.warning("%s ignored: this worker has one fixed model", command.action)
            return
        task = asyncio.create_task(self._carry_out(host, command))
        self._control_tasks.add(task)
        task.add_done_callback(self._control_tasks.discard)

    async def _carry_out(self, host: ModelHost, command: ModelCommand) -> None:
        log.info(
            "%s %s (%s%s)", command.action, command.model, command.reason, f" by {command.by}" if command.by else ""
        )
        outcome = "ok"
        try:
            if command.action == "unload":
                unloading = host.unload(command.model, command.reason, command.by)
                self._status_soon()  # no new work for it from now on
                await unloading
            else:
                kv = await self.bus.js.key_value(streams.KV_MODELS)
                entry = ModelEntry.decode((await kv.get(command.model)).value or b"")
                loading = asyncio.ensure_future(host.load(entry, command.reason))
                self._status_soon()  # it is starting
                if await loading:
                    await self._register_models()
                else:
                    outcome = "no_room"
        except (Exception, SystemExit) as exc:  # a load that fails must not take the worker down
            outcome = "error"
            log.error("%s %s failed: %s", command.action, command.model, exc)
        metrics.MODEL_LOADS.labels(self.worker_id, command.model, command.action, outcome).inc()
        await self._publish_status()

    async def _register_models(self) -> None:
        """Enter each model in the catalog, unless the catalog file declares it (the operator's word wins)."""
        kv = await self.bus.js.key_value(streams.KV_MODELS)
        for model in self.engine.models:
            try:
                known = await kv.get(model)
                if known.value and ModelEntry.decode(known.value).declared:
                    continue
            except nats.js.errors.KeyNotFoundError:
                pass
            entry = ModelEntry(
                id=model,
                modality=self.engine.modalities,
                engine=self.engine.kind,
                inputs=self.engine.inputs,
                domain=self.domain,
                priority_class=self.settings.priority_class or default_priority(self.engine.modalities),
                source=str(getattr(getattr(self.engine, "config", None), "model_path", "")),
            )
            await kv.put(model, entry.encode())

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._publish_status()
            await wait_or_stop(stop, self.settings.heartbeat_s)

    async def _publish_status(self) -> None:
        self._status_sent = time.monotonic()
        if self.bus.nc.is_connected:
            await self.bus.nc.publish(subjects.worker_status(self.worker_id), self.status().encode())

    def _status_soon(self, slot_freed: bool = False) -> None:
        """Announce a change of load. A freed slot goes out on the loop's next pass: the scheduler
        holds waiting requests until it hears of one (every request ending in that pass shares the
        status). Other changes go out at once when the last status is older than STATUS_COALESCE_S,
        else once that much time has passed, so a busy worker sends one status for several."""
        now = time.monotonic()
        wait = 0.0 if slot_freed else max(0.0, self._status_sent + STATUS_COALESCE_S - now)
        pending = self._status_pending
        if pending is not None and not pending.done():
            if self._status_due <= now + wait:
                return  # the status on its way goes out soon enough, and says what is true then
            pending.cancel()  # still waiting out its delay: one sent sooner replaces it
        self._status_due = now + wait
        self._status_pending = asyncio.create_task(self._publish_status_after(wait))

    async def _publish_status_after(self, delay_s: float) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        await self._publish_status()

    async def _on_assignment(self, msg: Msg) -> None:
        try:
            assignment = Assignment.decode(msg.data)
        except ValueError:
            log.exception("undecodable assignment dropped")
            await msg.term()
            return
        rid = assignment.request_id
        if rid in self._in_flight:  # a redelivery of work already running here
            return
        if rid in self._cancels:  # cancelled while it waited in the queue: it never starts
            out = ResultPublisher(self.bus, rid, self.worker_id, assignment.attempt, seq=assignment.first_seq)
            await out.final("cancelled", Usage(), Timings())
            await ack_confirmed(msg)
            return
        task = asyncio.create_task(self._traced(assignment, msg))
        self._in_flight[rid] = _InFlight(assignment, task)
        self._status_soon()

    async def _traced(self, assignment: Assignment, msg: Msg) -> None:
        """Run the assignment in its trace (carried by the assignment's headers)."""
        request = assignment.request
        with tracer.start_as_current_span(
            "engine",
            context=extract(msg.headers),
            attributes={
                "modalmesh.service": "worker",
                "modalmesh.worker": self.worker_id,
                "modalmesh.model": request.model,
                "modalmesh.request_id": request.request_id,
                "modalmesh.attempt": assignment.attempt,
            },
        ):
            await self._execute(assignment, msg)

    async def _execute(self, assignment: Assignment, msg: Msg) -> None:
        rid = assignment.request_id
        out = ResultPublisher(
            self.bus,
            rid,
            self.worker_id,
            assignment.attempt,
            seq=assignment.first_seq,
            served_model=assignment.request.model if assignment.fallback_for else None,
        )
        keepalive = asyncio.create_task(self._keep_alive(msg))
        watchdog = asyncio.create_task(self._abort_at_deadline(assignment))
        outcome = "error"
        try:
            await self._generate(assignment, out)
            await ack_confirmed(msg)
            outcome = "ok"
        except BackendLost as exc:
            outcome = "handed_back"
            log.warning("request %s: %s; handing it back", rid, exc.message)
            if not await self._give_back(assignment, out):
                await out.error(exc.code, exc.message)
            await ack_confirmed(msg)
        except ModalMeshError as exc:
            await out.error(exc.code, exc.message, exc.param)
            await ack_confirmed(msg)
        except Exception as exc:
            log.exception("request %s failed", rid)
            await out.error(ErrorCode.engine_error, f"{type(exc).__name__}: {exc}")
            await ack_confirmed(msg)
        finally:
            metrics.REQUESTS.labels(self.worker_id, assignment.request.model, outcome).inc()
            keepalive.cancel()
            watchdog.cancel()
            self._in_flight.pop(rid, None)
            self._status_soon(slot_freed=True)

    async def _generate(self, assignment: Assignment, out: ResultPublisher) -> None:
        request = assignment.request
        if assignment.attempt > 1 and request.modality not in TEXT_MODALITIES:
            # Images, speech and video cannot continue where a dead worker stopped: they start over.
            await out.progress(0.0, f"restarted from the beginning on {self.worker_id} (attempt {assignment.attempt})")
        if assignment.resume_tokens:  # a continuation: only what is left of the answer
            sampling = request.sampling.model_copy(
                update={"max_tokens": max(1, request.sampling.max_tokens - assignment.resume_tokens)}
            )
            request = request.model_copy(update={"sampling": sampling})
        progress = ProgressGate(self.settings.progress_every_s)
        async for event in self.engine.generate(request, assignment.resume_text):
            if isinstance(event, TextDelta):
                await out.delta(event.text, event.tokens, event.tool_calls, event.logprobs)
            elif isinstance(event, Progress):
                if progress.due(event.fraction, time.monotonic()):
                    await out.progress(event.fraction, event.message)
            elif isinstance(event, Data):
                await out.data(event.data, event.content_type, event.index)
            elif isinstance(event, File):
                await out.artifact(await self._store(request.request_id, assignment.attempt, event))
            elif isinstance(event, Finished):
                inflight = self._in_flight.get(request.request_id)
                if inflight is not None and inflight.deadline_passed:
                    await out.error(ErrorCode.deadline_exceeded, "the request's deadline passed while generating")
                else:
                    await out.final(
                        event.finish_reason, _with_resumed(event.usage, assignment.resume_tokens), event.timings
                    )
                    self._observe(request.model, event)

    def _observe(self, model: str, finished: Finished) -> None:
        metrics.TOKENS.labels(self.worker_id, model, "prompt").inc(finished.usage.prompt_tokens)
        metrics.TOKENS.labels(self.worker_id, model, "completion").inc(finished.usage.completion_tokens)
        metrics.ENGINE_TTFT.labels(self.worker_id, model).observe(finished.timings.engine_ttft_ms / 1000)
        metrics.ENGINE_SECONDS.labels(self.worker_id, model).observe(finished.timings.engine_total_ms / 1000)

    async def _give_back(self, assignment: Assignment, out: ResultPublisher) -> bool:
        """Ask a scheduler to move `assignment` to another worker, once what was delivered is stored
        (the new attempt continues after it). False when no scheduler took it."""
        await out.settle()
        await self._publish_status()  # the engine says why it cannot serve: no new work comes here
        try:
            reply = await self.bus.nc.request(subjects.GIVEBACK, assignment.encode(), timeout=5, headers=inject())
        except nats.errors.Error:
            return False
        return reply.data == b"moved"

    async def _store(self, request_id: str, attempt: int, file: File) -> Artifact:
        """Put a finished file in the object store; its name is the id clients download it by."""
        name = f"{request_id}-{attempt}-{file.index}.{file.extension}"
        if self._artifacts is None:  # looked up once, on the first file
            self._artifacts = await self.bus.js.object_store(streams.OBJ_ARTIFACTS)
        await self._artifacts.put(name, file.data, meta=ObjectMeta(name=name, description=file.content_type))
        return Artifact(
            name=name, content_type=file.content_type, size=len(file.data), index=file.index, meta=file.meta
        )

    async def _keep_alive(self, msg: Msg) -> None:
        """Tell JetStream the assignment is being worked on, so it is not redelivered meanwhile."""
        while True:
            await asyncio.sleep(self.settings.ack_wait_s / 3)
            await msg.in_progress()

    async def _abort_at_deadline(self, assignment: Assignment) -> None:
        await asyncio.sleep(max(0.0, (assignment.request.deadline_ms - now_ms()) / 1000))
        inflight = self._in_flight.get(assignment.request_id)
        if inflight is not None:
            inflight.deadline_passed = True
        await self.engine.abort(assignment.request_id)

    async def _on_cancel(self, msg: Msg) -> None:
        cancel = self._cancels.observe(msg)
        if cancel is not None and cancel.request_id in self._in_flight:
            log.info("cancel %s (%s)", cancel.request_id, cancel.reason)
            await self.engine.abort(cancel.request_id)

    async def _drain(self, assign_sub: object) -> None:
        """Announce draining, stop taking work, let in-flight work finish, abort what is left."""
        self.state = WorkerState.draining
        await self._publish_status()
        await assign_sub.unsubscribe()  # type: ignore[attr-defined]
        tasks = [f.task for f in self._in_flight.values()]
        if tasks:
            log.info("draining %d request(s)", len(tasks))
            _, pending = await asyncio.wait(tasks, timeout=self.settings.drain_timeout_s)
            for rid in list(self._in_flight):
                await self.engine.abort(rid)
            if pending:
                await asyncio.wait(pending, timeout=5)


def _with_resumed(usage: Usage, resumed: int) -> Usage:
    """Usage of the whole answer: tokens delivered by earlier attempts are completion, not prompt."""
    if not resumed:
        return usage
    return Usage(
        prompt_tokens=max(0, usage.prompt_tokens - resumed), completion_tokens=usage.completion_tokens + resumed
    )
