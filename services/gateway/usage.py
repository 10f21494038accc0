"""Usage by key: each finished request is recorded on the USAGE stream (once, under its request id),
and `GET /v1/admin/usage` sums the records of a time range by key, model, modality and day."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import nats.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from prometheus_client import Counter

from contracts import dedup, streams, subjects
from contracts.base import now_ms
from contracts.keys import UsageRecord
from contracts.requests import AnyRequest
from contracts.results import AnyChunk, FinalChunk
from services.common.bus import Bus
from services.gateway.auth import KeyEntry
from services.gateway.quotas import Quotas
from services.gateway.relay import ChunkStream

log = logging.getLogger(__name__)
MAX_KEY_LABELS = 100  # keys past this many count under `other`: Prometheus series stay bounded
KEY_REQUESTS = Counter(
    "modalmesh_gateway_key_requests_total", "Finished requests by API key name (the first 100 keys seen).", ["key"]
)
KEY_TOKENS = Counter(
    "modalmesh_gateway_key_tokens_total", "Prompt and completion tokens by API key name (likewise).", ["key", "kind"]
)
GROUPS = ("key", "model", "modality", "day")
READ_BATCH = 1000
READ_WAIT_S = 0.5  # a fetch that gets nothing this long means the range has no more records


def key_id(key: KeyEntry) -> str:
    """The admin API's id of a managed key; for a file or environment key, the same shape from its digest."""
    return key.id or f"key_{key.digest[:16]}"


class UsageRecorder:
    """Publishes a request's usage when its final chunk passes, without holding the answer up."""

    def __init__(self, bus: Bus, quotas: Quotas) -> None:
        self.bus = bus
        self.quotas = quotas
        self._pending: set[asyncio.Task[None]] = set()
        self._labelled: set[str] = set()

    def _label(self, name: str) -> str:
        if name not in self._labelled and len(self._labelled) < MAX_KEY_LABELS:
            self._labelled.add(name)
        return name if name in self._labelled else "other"

    def tap(self, key: KeyEntry, request: AnyRequest) -> Callable[[AnyChunk], None]:
        """A tap (see TappedStream) that records `request`'s usage when its final chunk passes."""

        def on_chunk(chunk: AnyChunk) -> None:
            if isinstance(chunk, FinalChunk):
                self.record(key, request, chunk)

        return on_chunk

    def record(self, key: KeyEntry, request: AnyRequest, final: FinalChunk) -> None:
        record = UsageRecord(
            request_id=request.request_id,
            key_id=key_id(key),
            key_name=key.name,
            model=final.model or request.model,
            modality=request.modality.value,
            prompt_tokens=final.usage.prompt_tokens,
            completion_tokens=final.usage.completion_tokens,
            finished_ms=now_ms(),
        )
        label = self._label(key.name)
        KEY_REQUESTS.labels(label).inc()
        KEY_TOKENS.labels(label, "prompt").inc(record.prompt_tokens)
        KEY_TOKENS.labels(label, "completion").inc(record.completion_tokens)
        task = asyncio.create_task(self._publish(key, record))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _publish(self, key: KeyEntry, record: UsageRecord) -> None:
        try:
            ack = await self.bus.js.publish(
                subjects.usage(record.key_id), record.encode(), headers=dedup.usage(record.request_id)
            )
            if not ack.duplicate:  # a replayed request's tokens are in its quotas already
                await self.quotas.add(key, record.prompt_tokens + record.completion_tokens)
        except nats.errors.Error as exc:
            log.warning("usage of %s not recorded: %s", record.request_id, exc)

    async def drain(self) -> None:
        if self._pending:
            await asyncio.wait(self._pending, timeout=5)


class TappedStream:
    """A request's chunk stream that shows each chunk to `taps` as it passes (usage, the cache)."""

    def __init__(self, inner: ChunkStream, *taps: Callable[[AnyChunk], None]) -> None:
        self.inner = inner
        self.taps = taps

    @property
    def finished(self) -> bool:
        return self.inner.finished

    @finished.setter
    def finished(self, value: bool) -> None:
        self.inner.finished = value

    def seen(self, chunk: AnyChunk) -> AnyChunk:
        for tap in self.taps:
            tap(chunk)
        return chunk

    async def next(self) -> AnyChunk:
        return self.seen(await self.inner.next())

    async def __aiter__(self) -> AsyncIterator[AnyChunk]:
        while not self.finished:
            yield await self.next()

    async def close(self, cancel: bool = True) -> None:
        await self.inner.close(cancel)


async def read(bus: Bus, start_ms: int, end_ms: int) -> list[UsageRecord]:
    """Every record of requests finished in [start_ms, end_ms), from the stream."""
    since = dt.datetime.fromtimestamp(start_ms / 1000, tz=dt.timezone.utc)
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_TIME,
        opt_start_time=since,
        ack_policy=AckPolicy.NONE,
        inactive_threshold=30.0,
    )
    sub = await bus.js.pull_subscribe(subjects.USAGE_ALL, stream=streams.USAGE, config=config)
    out: list[UsageRecord] = []
    try:
        if (await sub.consumer_info()).num_pending == 0:
            return out  # nothing since `start_ms`: no fetch to wait out
        while True:
            try:
                msgs = await sub.fetch(READ_BATCH, timeout=READ_WAIT_S)
            except nats.errors.TimeoutError:
                return out
            for msg in msgs:
                try:
                    record = UsageRecord.decode(msg.data)
                except ValueError:
                    log.warning("undecodable usage record at %d", msg.metadata.sequence.stream)
                    continue
                if record.finished_ms >= end_ms:
                    return out
                if record.finished_ms >= start_ms:
                    out.append(record)
            if msgs and msgs[-1].metadata.num_pending == 0:
                return out
    finally:
        await sub.unsubscribe()


def day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).date().isoformat()


def summed(records: Iterable[UsageRecord], group_by: tuple[str, ...]) -> list[dict[str, Any]]:
    """One row per group: requests, prompt, completion and total tokens."""
    rows: dict[tuple[str, ...], dict[str, Any]] = {}
    for r in records:
        # A key is grouped by its id (names may repeat); its name comes along for the reader.
        values = {"key": r.key_id, "model": r.model, "modality": r.modality, "day": day(r.finished_ms)}
        group = tuple(values[g] for g in group_by)
        row = rows.setdefault(
            group,
            {
                **{g: values[g] for g in group_by},
                **({"key_name": r.key_name} if "key" in group_by else {}),
                "requests": 0,
                "prompt_tokens": 0,
                "completion_tokens": 0,
            },
        )
        row["requests"] += 1
        row["prompt_tokens"] += r.prompt_tokens
        row["completion_tokens"] += r.completion_tokens
    for row in rows.values():
        row["total_tokens"] = row["prompt_tokens"] + row["completion_tokens"]
    return [rows[group] for group in sorted(rows)]
