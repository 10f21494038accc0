"""Aggregator process: consumes RESULTS, merges per request, publishes `out.<request>`, records tasks."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig
from nats.js.kv import KeyValue

from contracts import streams, subjects
from contracts.results import decode_chunk
from services.aggregator.store import final_state, record
from services.common.bus import Bus
from services.common.merge import RequestMerge
from services.common.results import replay_results

log = logging.getLogger(__name__)
FINISHED_MEMORY = 100_000  # finished request ids remembered to drop their late duplicates


@dataclass
class Aggregator:
    bus: Bus
    merges: dict[str, RequestMerge] = field(default_factory=dict)
    finished: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _tasks_kv: KeyValue | None = None
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    async def run(self, stop: asyncio.Event) -> None:
        self._tasks_kv = await self.bus.js.key_value(streams.KV_TASKS)
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
        if self._background:
            await asyncio.wait(self._background, timeout=5)

    async def _on_chunk(self, msg: Msg) -> None:
        try:
            chunk = decode_chunk(msg.data)
        except ValueError:
            log.exception("undecodable chunk dropped")
            await msg.term()
            return
        rid = chunk.request_id
        if rid in self.finished:
            await msg.ack()
            return
        merge = self.merges.get(rid)
        if merge is None:
            merge = self.merges[rid] = RequestMerge()
            if chunk.seq > 0:
                # Chunks before this one were handled before a restart: rebuild from RESULTS. What
                # went out already goes out again; the gateway drops what it has by seq.
                for earlier in await replay_results(self.bus, rid):
                    for ready in merge.accept(earlier):
                        await self.bus.nc.publish(subjects.out(rid), ready.encode())
        for ready in merge.accept(chunk):
            await self.bus.nc.publish(subjects.out(rid), ready.encode())
        await msg.ack()
        if merge.terminal is not None:
            del self.merges[rid]
            self._remember_finished(rid)
            state = final_state(rid, merge.merged_text, merge.terminal)
            # Off the hot path: the client already has its answer from `out.<request>`.
            task = asyncio.create_task(record(self._tasks_kv, state))  # type: ignore[arg-type]
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def _remember_finished(self, rid: str) -> None:
        self.finished[rid] = None
        while len(self.finished) > FINISHED_MEMORY:
            self.finished.popitem(last=False)
