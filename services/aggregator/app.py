"""Aggregator process: consumes RESULTS, merges per request, publishes `out.<request>`, records tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig

from contracts import streams, subjects
from contracts.base import now_ms
from contracts.results import AnyChunk, ErrorChunk, FinalChunk, ProgressChunk, decode_chunk
from contracts.tasks import TaskState
from services.aggregator import metrics
from services.aggregator.store import TaskWriter, final_state, running_state
from services.common.bus import Bus
from services.common.merge import RequestMerge
from services.common.results import replay_results
from services.common.tracing import extract, tracer

log = logging.getLogger(__name__)
FINISHED_MEMORY = 100_000  # finished request ids remembered to drop their late duplicates
PROGRESS_EVERY_MS = 250  # the most often a running task's progress is written to the `tasks` bucket


@dataclass
class Aggregator:
    bus: Bus
    merges: dict[str, RequestMerge] = field(default_factory=dict)
    finished: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _writer: TaskWriter | None = None
    _started_ms: dict[str, int] = field(default_factory=dict)
    _progress_written_ms: dict[str, int] = field(default_factory=dict)

    async def run(self, stop: asyncio.Event) -> None:
        self._writer = TaskWriter(await self.bus.js.key_value(streams.KV_TASKS))
        writing = asyncio.create_task(self._writer.run())
        sub = await self.bus.js.subscribe(
            subjects.RESULTS_ALL,
            queue=streams.AGGREGATOR_CONSUMER,
            durable=streams.AGGREGATOR_CONSUMER,
            stream=streams.RESULTS,
            manual_ack=True,
            cb=self._on_chunk,
            # Short: after a crash, chunks it held come back soon (rebuilding handles the order).
            config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, ack_wait=5),
        )
        log.info("aggregator ready")
        await stop.wait()
        await sub.unsubscribe()
        await self._writer.close(timeout_s=5)
        await writing

    async def _on_chunk(self, msg: Msg) -> None:
        try:
            chunk = decode_chunk(msg.data)
        except ValueError:
            log.exception("undecodable chunk dropped")
            await msg.term()
            return
        # The end of a request is a span in its trace; the chunks before it are not worth one each.
        span = (
            tracer.start_as_current_span(
                "aggregate",
                context=extract(msg.headers),
                attributes={"modalmesh.service": "aggregator", "modalmesh.request_id": chunk.request_id},
            )
            if isinstance(chunk, (FinalChunk, ErrorChunk))
            else contextlib.nullcontext()
        )
        with span:
            await self._merge(chunk, msg)

    async def _merge(self, chunk: AnyChunk, msg: Msg) -> None:
        rid = chunk.request_id
        if rid in self.finished:
            await msg.ack()
            return
        merge = self.merges.get(rid)
        if merge is None:
            merge = self.merges[rid] = RequestMerge()
            self._started_ms[rid] = now_ms()
            if chunk.seq > 0:
                # Chunks before this one were handled before a restart: rebuild from RESULTS. What
                # went out already goes out again; the gateway drops what it has by seq.
                for earlier in await replay_results(self.bus, rid):
                    for ready in merge.accept(earlier):
                        await self.bus.nc.publish(subjects.out(rid), ready.encode())
        for ready in merge.accept(chunk):
            await self.bus.nc.publish(subjects.out(rid), ready.encode())
        await msg.ack()
        metrics.CHUNKS.labels(chunk.kind).inc()
        if merge.terminal is not None:
            terminal = merge.terminal
            metrics.FINISHED.labels(
                terminal.code.value if isinstance(terminal, ErrorChunk) else terminal.finish_reason
            ).inc()
            del self.merges[rid]
            self._started_ms.pop(rid, None)
            self._progress_written_ms.pop(rid, None)
            self._remember_finished(rid)
            self._write(final_state(rid, merge))
        elif isinstance(chunk, ProgressChunk) and now_ms() - self._progress_written_ms.get(rid, 0) >= PROGRESS_EVERY_MS:
            self._progress_written_ms[rid] = now_ms()
            self._write(running_state(rid, merge, self._started_ms[rid]))
        metrics.OPEN.set(len(self.merges))

    def _write(self, state: TaskState) -> None:
        """Off the hot path: the client already has its chunks from `out.<request>`."""
        assert self._writer is not None
        self._writer.put(state)

    def _remember_finished(self, rid: str) -> None:
        self.finished[rid] = None
        while len(self.finished) > FINISHED_MEMORY:
            self.finished.popitem(last=False)
