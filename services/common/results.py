"""Publishes one request's result chunks in order, numbered for the aggregator (workers, scheduler)."""

from __future__ import annotations

from dataclasses import dataclass

from contracts import subjects
from contracts.errors import ErrorCode
from contracts.results import DeltaChunk, ErrorChunk, FinalChunk, Timings, Usage
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
