"""The scheduler's handlers: thin I/O around `policy`. A request is acknowledged only once its
assignment is stored in ASSIGNMENTS, so a scheduler that dies mid-way loses nothing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from contracts import streams, subjects
from contracts.assignments import Assignment
from contracts.base import now_ms
from contracts.errors import ErrorCode
from contracts.requests import TextRequest, decode_request
from contracts.workers import WorkerStatus
from services.common.bus import Bus
from services.common.liveness import WorkerTable
from services.common.results import ResultPublisher
from services.scheduler.policy import least_outstanding
from services.scheduler.settings import SchedulerSettings

log = logging.getLogger(__name__)
SCHEDULER_ID = "scheduler"


@dataclass
class Scheduler:
    settings: SchedulerSettings
    bus: Bus
    table: WorkerTable = field(init=False)
    # Assignments sent to each worker since its last heartbeat, which does not count them yet.
    recent: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.table = WorkerTable(dead_after_s=self.settings.dead_after_s)

    async def run(self, stop: asyncio.Event) -> None:
        status_sub = await self.bus.nc.subscribe(subjects.WORKER_STATUS_ALL, cb=self._on_status)
        # One durable consumer shared by every scheduler (a queue group): each request reaches one.
        req_sub = await self.bus.js.subscribe(
            subjects.REQUESTS_ALL,
            queue=streams.SCHEDULER_CONSUMER,
            durable=streams.SCHEDULER_CONSUMER,
            stream=streams.REQUESTS,
            manual_ack=True,
            cb=self._on_request,
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=self.settings.ack_wait_s),
        )
        log.info("scheduler ready")
        await stop.wait()
        await req_sub.unsubscribe()
        await status_sub.unsubscribe()

    async def _on_status(self, msg: Msg) -> None:
        try:
            status = WorkerStatus.decode(msg.data)
        except ValueError:
            return
        self.table.observe(status, time.monotonic())
        self.recent.pop(status.worker_id, None)

    async def _on_request(self, msg: Msg) -> None:
        try:
            request = decode_request(msg.data)
        except ValueError:
            log.exception("undecodable request dropped")
            await msg.term()
            return
        if now_ms() > request.deadline_ms:
            await self._fail(request, ErrorCode.deadline_exceeded, "deadline passed before a worker was free")
            await msg.ack()
            return
        worker = least_outstanding(self.table.serving(request.model, time.monotonic()), self.recent)
        if worker is None:
            # Not an error yet: a worker may be starting. Redelivered until the deadline.
            await msg.nak(delay=self.settings.retry_no_worker_s)
            return
        assignment = Assignment(worker_id=worker, request=request)
        await self.bus.js.publish(
            subjects.assign(worker), assignment.encode(), headers={"Nats-Msg-Id": assignment.dedup_id}
        )
        self.recent[worker] += 1
        await msg.ack()

    async def _fail(self, request: TextRequest, code: ErrorCode, message: str) -> None:
        log.info("request %s failed: %s", request.request_id, message)
        await ResultPublisher(self.bus, request.request_id, SCHEDULER_ID, attempt=1).error(code, message)
