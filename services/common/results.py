"""Publishes one request's result chunks in order, numbered for the aggregator (workers, scheduler)."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from typing import Any

from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from contracts import dedup, streams, subjects
from contracts.errors import ErrorCode
from contracts.results import (
    AnyChunk,
    Artifact,
    ArtifactChunk,
    DataChunk,
    DeltaChunk,
    ErrorChunk,
    FinalChunk,
    ProgressChunk,
    Timings,
    TokenLogprob,
    ToolCallDelta,
    Usage,
    decode_chunk,
)
from services.common.bus import Bus, while_unanswered
from services.common.merge import RequestMerge
from services.common.tracing import inject

log = logging.getLogger(__name__)
ACK_WAIT_S = 2.0  # a delta unacknowledged this long is sent again
PUBLISH_RETRY_S = 30.0  # how long a terminal chunk keeps trying through a NATS outage
REPLAY_ANSWER_S = 1.0  # a read of RESULTS not answered this soon (NATS restarted under it) starts over
REPLAY_WITHIN_S = 30.0  # for this long, by default


@dataclass
class ResultPublisher:
    """Numbers the chunks of one attempt from `first_seq` and publishes them on `result.<request>`.

    Deltas go out without waiting for the stream's acknowledgement; before the terminal chunk, every
    delta's acknowledgement is awaited and a delta that got none (lost in a NATS restart) is sent
    again under the same `Nats-Msg-Id`, which the stream de-duplicates. So when the terminal chunk
    is acknowledged, every chunk before it is stored, and only then may the worker acknowledge its
    assignment.
    """

    bus: Bus
    request_id: str
    worker_id: str
    attempt: int
    seq: int = 0
    served_model: str | None = None  # set when a fallback model answers: every chunk says so
    _unsettled: list[tuple[bytes, dict[str, str], asyncio.Future[Any]]] = field(default_factory=list)

    def _headers(self) -> dict[str, str]:
        return dedup.chunk(self.request_id, self.attempt, self.seq)

    def _ids(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "seq": self.seq,
            "attempt": self.attempt,
            "worker_id": self.worker_id,
            "model": self.served_model,
        }

    async def delta(
        self,
        text: str,
        tokens: int,
        tool_calls: tuple[ToolCallDelta, ...] = (),
        logprobs: tuple[TokenLogprob, ...] = (),
    ) -> None:
        chunk = DeltaChunk(**self._ids(), text=text, tokens=tokens, tool_calls=tool_calls, logprobs=logprobs)
        await self._publish_fast(chunk)

    async def progress(self, fraction: float, message: str = "") -> None:
        await self._publish_fast(ProgressChunk(**self._ids(), fraction=min(1.0, max(0.0, fraction)), message=message))

    async def data(self, data: bytes, content_type: str, index: int = 0) -> None:
        await self._publish_fast(
            DataChunk(**self._ids(), content_type=content_type, data_b64=base64.b64encode(data).decode(), index=index)
        )

    async def artifact(self, artifact: Artifact) -> None:
        await self._publish_fast(ArtifactChunk(**self._ids(), artifact=artifact))

    async def _publish_fast(self, chunk: AnyChunk) -> None:
        """Publish without waiting for the stream's acknowledgement (settled before the terminal chunk)."""
        payload, headers = chunk.encode(), self._headers()
        ack = await self.bus.js.publish_async(subjects.result(self.request_id), payload, headers=headers)
        self._unsettled.append((payload, headers, ack))
        if len(self._unsettled) >= 256:  # keep only those still waiting (or failed)
            self._unsettled = [u for u in self._unsettled if not u[2].done() or u[2].exception() is not None]
        self.seq += 1

    async def settle(self) -> None:
        """Wait until every chunk published so far is stored (resending those that were lost). One
        wait of ACK_WAIT_S for all of them, not one each: a NATS restart can lose many deltas at
        once, and a wait per delta would hold the answer's end back by ACK_WAIT_S for every one."""
        if self._unsettled:
            await asyncio.wait([ack for _, _, ack in self._unsettled], timeout=ACK_WAIT_S)
        for payload, headers, ack in self._unsettled:
            if ack.done() and not ack.cancelled() and ack.exception() is None:
                continue
            log.warning("delta %s got no acknowledgement: sending it again", headers[dedup.MSG_ID])
            await self._publish_retrying(payload, headers)
        self._unsettled.clear()

    async def final(self, finish_reason: str, usage: Usage, timings: Timings) -> None:
        chunk = FinalChunk(**self._ids(), finish_reason=finish_reason, usage=usage, timings=timings)  # type: ignore[arg-type]
        await self._publish_acked(chunk.encode())

    async def error(self, code: ErrorCode, message: str, param: str | None = None) -> None:
        chunk = ErrorChunk(**self._ids(), code=code, message=message, param=param)
        await self._publish_acked(chunk.encode())

    async def _publish_acked(self, payload: bytes) -> None:
        await self.settle()
        # The terminal chunk carries the trace on to the aggregator (deltas stay lean).
        await self._publish_retrying(payload, inject(self._headers()))
        self.seq += 1

    async def _publish_retrying(self, payload: bytes, headers: dict[str, str]) -> None:
        """Publish and wait for the stream's acknowledgement, through a NATS restart if need be."""
        async for attempt in while_unanswered(PUBLISH_RETRY_S, max_wait_s=2.0):
            with attempt:
                await self.bus.js.publish(subjects.result(self.request_id), payload, headers=headers)


async def replay_results(bus: Bus, request_id: str, within_s: float = REPLAY_WITHIN_S) -> list[AnyChunk]:
    """Every chunk the RESULTS stream holds for `request_id`, in stream order (for rebuilding state
    after a restart or a failover). A NATS restart can lose a read's answer: each NATS call waits
    REPLAY_ANSWER_S for it, and the read starts over, for up to `within_s` (then the error is raised).
    Waiting out JetStream's own 5 s timeout held failovers after a NATS restart for seconds."""
    return await while_unanswered(within_s)(_replay_once, bus, request_id, REPLAY_ANSWER_S)


async def _replay_once(bus: Bus, request_id: str, timeout_s: float) -> list[AnyChunk]:
    subject = subjects.result(request_id)
    js = bus.nc.jetstream(timeout=timeout_s)
    try:
        last = await js.get_last_msg(streams.RESULTS, subject)
    except NotFoundError:
        return []
    sub = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    chunks: list[AnyChunk] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=timeout_s)
            chunks.append(decode_chunk(msg.data))
            if msg.metadata.sequence.stream >= (last.seq or 0):
                return chunks
    finally:
        await sub.unsubscribe()


async def follow_results(bus: Bus, request_id: str, after: int = -1) -> AsyncGenerator[AnyChunk, None]:
    """The request's chunks in order, those stored in RESULTS and then those still to come, from seq
    `after + 1` on, up to its terminal chunk: a reader that went away picks up where it left off."""
    merge = RequestMerge()
    sub = await bus.js.subscribe(subjects.result(request_id), ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    try:
        while not merge.done:
            msg = await sub.next_msg(timeout=None)
            for chunk in merge.accept(decode_chunk(msg.data)):
                if isinstance(chunk, ErrorChunk) or chunk.seq > after:
                    yield chunk
    finally:
        await sub.unsubscribe()


async def has_results(bus: Bus, request_id: str) -> bool:
    try:
        await bus.js.get_last_msg(streams.RESULTS, subjects.result(request_id))
    except NotFoundError:
        return False
    return True
