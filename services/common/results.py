"""Publishes one request's result chunks in order, numbered for the aggregator (workers, scheduler)."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.api import DeliverPolicy
from nats.js.errors import NotFoundError

from contracts import streams, subjects
from contracts.errors import ErrorCode
from contracts.results import AnyChunk, DeltaChunk, ErrorChunk, FinalChunk, Timings, Usage, decode_chunk
from services.common.bus import Bus


@dataclass
class ResultPublisher:
    """Numbers the chunks of one attempt from `first_seq` and publishes them on `result.<request>`.

    Deltas go out without waiting for the stream's acknowledgement (NATS keeps a connection's
    messages in order); the terminal chunk waits for it, so once it is acknowledged every earlier
    chunk has been stored too, and only then may the worker acknowledge its assignment.
    """

    bus: Bus
    request_id: str
    worker_id: str
    attempt: int
    seq: int = 0

    def _headers(self) -> dict[str, str]:
        return {"Nats-Msg-Id": f"{self.request_id}:{self.attempt}:{self.seq}"}

    async def delta(self, text: str, tokens: int) -> None:
        chunk = DeltaChunk(
            request_id=self.request_id, seq=self.seq, attempt=self.attempt, worker_id=self.worker_id,
            text=text, tokens=tokens,
        )
        await self.bus.nc.publish(subjects.result(self.request_id), chunk.encode(), headers=self._headers())
        self.seq += 1

    async def final(self, finish_reason: str, usage: Usage, timings: Timings) -> None:
        chunk = FinalChunk(
            request_id=self.request_id, seq=self.seq, attempt=self.attempt, worker_id=self.worker_id,
            finish_reason=finish_reason,  # type: ignore[arg-type]
            usage=usage, timings=timings,
        )
        await self._publish_acked(chunk.encode())

    async def error(self, code: ErrorCode, message: str) -> None:
        chunk = ErrorChunk(
            request_id=self.request_id, seq=self.seq, attempt=self.attempt, worker_id=self.worker_id,
            code=code, message=message,
        )
        await self._publish_acked(chunk.encode())

    async def _publish_acked(self, payload: bytes) -> None:
        await self.bus.js.publish(subjects.result(self.request_id), payload, headers=self._headers())
        self.seq += 1


async def replay_results(bus: Bus, request_id: str, timeout_s: float = 5.0) -> list[AnyChunk]:
    """Every chunk the RESULTS stream holds for `request_id`, in stream order (for rebuilding state
    after a restart or a failover)."""
    subject = subjects.result(request_id)
    try:
        last = await bus.js.get_last_msg(streams.RESULTS, subject)
    except NotFoundError:
        return []
    sub = await bus.js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    chunks: list[AnyChunk] = []
    try:
        while True:
            msg = await sub.next_msg(timeout=timeout_s)
            chunks.append(decode_chunk(msg.data))
            if msg.metadata.sequence.stream >= (last.seq or 0):
                return chunks
    finally:
        await sub.unsubscribe()
