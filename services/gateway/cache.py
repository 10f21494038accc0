"""An exact-match response cache shared by every gateway, in the `cache` bucket (TTL and size bound).

A request whose answer is fixed (a chat or completion at temperature 0 or with a seed; embeddings and
speech always) is keyed by the sha256 of every field that shapes its answer, and of the catalog entry
of its model (engine, source, options, and when it was entered, which a worker's reload renews), so a
new version or a reload of the model misses. A miss that finishes normally stores its chunks; a hit
replays them, streamed or not, with `x-modalmesh-cache: hit`. `"cache": false` in the body, or a key
made with `"cache": false`, turns it off; the gateway keeps the cache only with
`MODALMESH_GATEWAY_RESPONSE_CACHE=true`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Callable

import nats.errors
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.requests import AnyRequest, ChatRequest, CompletionRequest, EmbeddingRequest, SpeechRequest
from contracts.results import AnyChunk, FinalChunk, ProgressChunk, decode_chunk
from contracts.workers import ModelEntry

log = logging.getLogger(__name__)
HEADER = "x-modalmesh-cache"
MAX_ENTRY_BYTES = 512 * 1024  # under NATS's default 1 MiB message: larger answers are not kept
# Fields that do not shape the answer: ids, times, scheduling, and whether the client reads it streamed.
UNKEYED = {"request_id", "created_ms", "deadline_ms", "priority", "stream", "schema_version"}
KEPT_ENDINGS = ("stop", "length", "tool_calls")  # a cancelled answer is not the answer


def cacheable(request: AnyRequest) -> bool:
    if isinstance(request, (EmbeddingRequest, SpeechRequest)):
        return True
    if isinstance(request, (ChatRequest, CompletionRequest)):
        return request.sampling.temperature == 0 or request.sampling.seed is not None
    return False


def cache_key(request: AnyRequest, entry: ModelEntry | None) -> str | None:
    """The key of `request`'s answer, or None when its answer is not fixed."""
    if not cacheable(request):
        return None
    fields = request.model_dump(mode="json", exclude=UNKEYED)
    version = entry.model_dump(mode="json", include={"engine", "source", "options", "created_ms"}) if entry else None
    text = json.dumps({"request": fields, "model": version}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class CachedStream:
    """A stored answer replayed as the chunks of a new request."""

    def __init__(self, request_id: str, chunks: list[AnyChunk]) -> None:
        self._chunks = [c.model_copy(update={"request_id": request_id}) for c in chunks]
        self.finished = not self._chunks

    async def next(self) -> AnyChunk:
        chunk = self._chunks.pop(0)
        self.finished = not self._chunks
        return chunk

    async def __aiter__(self) -> AsyncIterator[AnyChunk]:
        while not self.finished:
            yield await self.next()

    async def close(self, cancel: bool = True) -> None:
        """Nothing runs for a cached answer."""


class ResponseCache:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._pending: set[asyncio.Task[None]] = set()

    async def get(self, key: str) -> list[AnyChunk] | None:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        except nats.errors.Error as exc:  # the cache is an optimisation: without it, the request runs
            log.warning("response cache not read: %s", exc)
            return None
        try:
            return [decode_chunk(c.encode()) for c in json.loads(entry.value or b"[]")]
        except ValueError:
            return None

    def recorder(self, key: str) -> Callable[[AnyChunk], None]:
        """A tap (services.gateway.usage.TappedStream) that stores the answer once it ends normally."""
        kept: list[AnyChunk] = []

        def on_chunk(chunk: AnyChunk) -> None:
            if not isinstance(chunk, ProgressChunk):
                kept.append(chunk)
            if isinstance(chunk, FinalChunk) and chunk.finish_reason in KEPT_ENDINGS:
                task = asyncio.create_task(self._put(key, kept))
                self._pending.add(task)
                task.add_done_callback(self._pending.discard)

        return on_chunk

    async def _put(self, key: str, chunks: list[AnyChunk]) -> None:
        value = json.dumps([c.model_dump_json() for c in chunks]).encode()
        if len(value) > MAX_ENTRY_BYTES:
            return
        try:
            await self.kv.put(key, value)
        except nats.errors.Error as exc:
            log.warning("response cache not written: %s", exc)

    async def drain(self) -> None:
        if self._pending:
            await asyncio.wait(self._pending, timeout=5)
