"""The gateway's side of the bus: what is live, publishing requests, and reading their merged output."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts import streams, subjects
from contracts.base import now_ms
from contracts.control import Cancel
from contracts.errors import DeadlineExceeded, ModelNotFound, NoLiveWorker, error_for
from contracts.requests import TextRequest
from contracts.results import AnyChunk, ErrorChunk, FinalChunk, decode_chunk
from contracts.workers import ModelEntry, WorkerStatus
from services.common.bus import Bus
from services.common.liveness import WorkerTable

log = logging.getLogger(__name__)


@dataclass
class Fleet:
    """What the gateway knows of the fleet: the catalog (from the `models` bucket) and live workers."""

    table: WorkerTable
    catalog: dict[str, ModelEntry] = field(default_factory=dict)

    def require_live(self, model: str) -> None:
        if model not in self.catalog:
            raise ModelNotFound(f"The model `{model}` does not exist")
        if not self.table.serving(model, time.monotonic()):
            raise NoLiveWorker(f"No live worker serves `{model}` right now; retry shortly")

    def live_workers(self) -> list[WorkerStatus]:
        return self.table.live(time.monotonic())


class Relay:
    """Publishes requests and hands back their merged output, one `RequestStream` per request."""

    def __init__(self, bus: Bus, dead_after_s: float) -> None:
        self.bus = bus
        self.fleet = Fleet(WorkerTable(dead_after_s=dead_after_s))
        self._subs: list[Subscription] = []
        self._watch_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._subs.append(await self.bus.nc.subscribe(subjects.WORKER_STATUS_ALL, cb=self._on_status))
        kv = await self.bus.js.key_value(streams.KV_MODELS)
        watcher = await kv.watchall()
        self._watch_task = asyncio.create_task(self._watch_models(watcher))

    async def stop(self) -> None:
        if self._watch_task:
            self._watch_task.cancel()
        for sub in self._subs:
            await sub.unsubscribe()

    async def _on_status(self, msg: Msg) -> None:
        try:
            self.fleet.table.observe_status(WorkerStatus.decode(msg.data), time.monotonic())
        except ValueError:
            log.warning("undecodable worker status on %s", msg.subject)

    async def _watch_models(self, watcher: object) -> None:
        async for entry in watcher:  # type: ignore[attr-defined]
            if entry is None:  # end of the initial values
                continue
            if entry.operation in ("DEL", "PURGE") or not entry.value:
                self.fleet.catalog.pop(entry.key, None)
                continue
            try:
                self.fleet.catalog[entry.key] = ModelEntry.decode(entry.value)
            except ValueError:
                log.warning("undecodable catalog entry %s", entry.key)

    async def submit(self, request: TextRequest) -> RequestStream:
        """Publish `request` durably and return the stream of its merged output."""
        self.fleet.require_live(request.model)
        stream = RequestStream(self.bus, request)
        await stream.open()
        try:
            await self.bus.js.publish(
                subjects.request(request.modality), request.encode(),
                headers={"Nats-Msg-Id": request.request_id},
            )
        except BaseException:
            await stream.close(cancel=False)
            raise
        return stream


class RequestStream:
    """The merged output of one request, read from `out.<request>` until a terminal chunk or the deadline."""

    def __init__(self, bus: Bus, request: TextRequest) -> None:
        self.bus = bus
        self.request = request
        self._queue: asyncio.Queue[Msg] = asyncio.Queue()
        self._sub: Subscription | None = None
        self.finished = False

    async def open(self) -> None:
        self._sub = await self.bus.nc.subscribe(subjects.out(self.request.request_id), cb=self._queue.put)

    async def next(self) -> AnyChunk:
        """The next chunk; raises the request's error, or DeadlineExceeded when its deadline passes."""
        remaining = (self.request.deadline_ms - now_ms()) / 1000
        try:
            msg = await asyncio.wait_for(self._queue.get(), timeout=max(remaining, 0.001))
        except asyncio.TimeoutError:
            raise DeadlineExceeded(f"no answer within the request's deadline ({self.request.request_id})") from None
        chunk = decode_chunk(msg.data)
        if isinstance(chunk, (FinalChunk, ErrorChunk)):
            self.finished = True
        if isinstance(chunk, ErrorChunk):
            raise error_for(chunk.code, chunk.message)
        return chunk

    async def __aiter__(self) -> AsyncIterator[AnyChunk]:
        while not self.finished:
            yield await self.next()

    async def close(self, cancel: bool = True) -> None:
        """Stop listening; if the request has not finished, tell the fleet to stop working on it."""
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        if cancel and not self.finished and self.bus.nc.is_connected:
            reason = "deadline" if now_ms() >= self.request.deadline_ms else "client_disconnected"
            cancel_msg = Cancel(request_id=self.request.request_id, reason=reason)
            await self.bus.nc.publish(subjects.cancel(self.request.request_id), cancel_msg.encode())
