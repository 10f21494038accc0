"""What every gateway route does to take a request in: its id (idempotency), its deadline, its first
chunk (so early failures keep their HTTP status), and giving up when the client goes away."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Request

from contracts.base import now_ms
from contracts.errors import InvalidRequest, PermissionDenied
from contracts.requests import AnyRequest, Priority
from contracts.results import AnyChunk, ErrorChunk, FinalChunk
from services.gateway.cache import HEADER as CACHE_HEADER
from services.gateway.cache import CachedStream, ResponseCache, cache_key
from services.gateway.limits import check_request
from services.gateway.ratelimit import HEADERS_SCOPE, estimated_tokens
from services.gateway.relay import ChunkStream
from services.gateway.settings import GatewaySettings
from services.gateway.usage import TappedStream

TIMEOUT_HEADER = "X-ModalMesh-Timeout"
PRIORITY_HEADER = "X-ModalMesh-Priority"
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{1,200}")  # the shape of ids the gateway makes (and bus tokens allow)
LastEventId = Annotated[str | None, Header(alias="Last-Event-ID")]
IDEMPOTENCY_HEADER = "Idempotency-Key"


def request_id(prefix: str, request: Request, idempotency_key: str | None) -> str:
    """A fresh id, or, with an Idempotency-Key, the same id for the same key of the same API key, so
    JetStream's de-duplication window runs the request once."""
    if not idempotency_key:
        return f"{prefix}-{uuid.uuid4().hex}"
    if len(idempotency_key) > 255:
        raise InvalidRequest(f"{IDEMPOTENCY_HEADER} is longer than 255 characters")
    owner = request.state.api_key.digest
    return f"{prefix}-{hashlib.sha256(f'{owner}:{idempotency_key}'.encode()).hexdigest()[:32]}"


def deadline_ms(settings: GatewaySettings, timeout: str | None) -> int:
    seconds = settings.request_timeout_s
    if timeout is not None:
        try:
            seconds = float(timeout)
        except ValueError:
            raise InvalidRequest(f"{TIMEOUT_HEADER} must be a number of seconds") from None
        if not 0 < seconds <= settings.max_timeout_s:
            raise InvalidRequest(f"{TIMEOUT_HEADER} must be in (0, {settings.max_timeout_s}]")
    return now_ms() + int(seconds * 1000)


async def first_chunk(request: Request, stream: ChunkStream) -> AnyChunk:
    """The request's first chunk; on any failure or a disconnect the request is cancelled."""
    try:
        return await until_disconnected(request, stream.next())
    except BaseException:
        await stream.close()
        raise


async def until_disconnected(request: Request, work: Any) -> Any:
    """Run `work`, but give up (and let the caller cancel the request) if the client disconnects."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        raise asyncio.CancelledError("client disconnected")
    finally:
        watcher.cancel()


async def disconnected(request: Request) -> None:
    # Starlette offers no disconnect event to wait on before the response starts: poll it.
    while not await request.is_disconnected():  # noqa: ASYNC110
        await asyncio.sleep(0.25)


@dataclass
class Intake:
    """What a route needs to take one request in, as a FastAPI dependency (`Depends(intake)`)."""

    request: Request
    timeout: str | None
    idempotency_key: str | None
    priority_header: str | None = None
    counted: bool = False  # this HTTP request's one request of its key's rpm (n choices make several submits)

    @property
    def settings(self) -> GatewaySettings:
        return self.request.app.state.settings

    def request_id(self, prefix: str) -> str:
        return request_id(prefix, self.request, self.idempotency_key)

    @property
    def deadline_ms(self) -> int:
        return deadline_ms(self.settings, self.timeout)

    def prioritized(self, bus_request: AnyRequest, named: Priority | None) -> AnyRequest:
        """`bus_request` with its priority class: the one the body names, else the header's, else the
        API key's default, else the model's (from the catalog). A key kept to other models gets 403:
        the key is known and the model may well exist, and no retry with this key will help."""
        key = self.request.state.api_key
        if not key.allows(bus_request.model):
            raise PermissionDenied(f"The key `{key.name}` may not use the model `{bus_request.model}`", param="model")
        chosen = named or self._header_priority() or self.request.state.api_key.priority
        if chosen is None:
            entry = self.request.app.state.relay.fleet.catalog.get(bus_request.model)
            chosen = entry.priority_class if entry is not None else Priority.interactive
        return bus_request.model_copy(update={"priority": chosen})

    def _header_priority(self) -> Priority | None:
        if self.priority_header is None:
            return None
        try:
            return Priority(self.priority_header.strip().lower())
        except ValueError:
            raise InvalidRequest(f"{PRIORITY_HEADER} must be one of {', '.join(p.value for p in Priority)}") from None

    async def admit(self, bus_request: AnyRequest) -> None:
        """Refuse a key whose day's or month's quota is spent, then spend the request and its tokens
        of the key's per-minute limits (429 when over either)."""
        await self.request.app.state.quotas.check(self.request.state.api_key)
        requests, self.counted = (0 if self.counted else 1), True
        taken = await self.request.app.state.rate_limiter.take(
            self.request.state.api_key, requests, estimated_tokens(bus_request)
        )
        self.request.scope.setdefault(HEADERS_SCOPE, {}).update(taken)

    async def submit(self, bus_request: AnyRequest, priority: Priority | None = None) -> tuple[ChunkStream, AnyChunk]:
        """Check limits, publish, and wait for the first chunk (so early failures keep their status)."""
        check_request(bus_request, self.settings)
        bus_request = self.prioritized(bus_request, priority)
        await self.admit(bus_request)
        state = self.request.app.state
        usage = state.usage.tap(self.request.state.api_key, bus_request)
        cache: ResponseCache = state.cache
        key = None
        if self.settings.response_cache and self.request.state.api_key.cache:
            key = cache_key(bus_request, state.relay.fleet.catalog.get(bus_request.model))
        if key is not None and await self._body_declines_cache():
            key = None  # only a request whose answer is fixed reads its body again
        cached = None if key is None else await cache.get(key)
        if key is not None:
            self.request.scope.setdefault(HEADERS_SCOPE, {})[CACHE_HEADER] = "miss" if cached is None else "hit"
        if cached is not None:
            stream = TappedStream(CachedStream(bus_request.request_id, cached), usage)
        else:
            taps = (usage,) if key is None else (usage, cache.recorder(key))
            stream = TappedStream(await state.relay.submit(bus_request), *taps)
        return stream, await first_chunk(self.request, stream)

    async def _body_declines_cache(self) -> bool:
        """Whether the body turns the response cache off (`"cache": false`)."""
        if not self.request.headers.get("content-type", "").startswith("application/json"):
            return False
        try:
            body = json.loads(await self.request.body())  # read already: Starlette keeps it
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("cache") is False


async def intake(
    request: Request,
    timeout: str | None = Header(None, alias=TIMEOUT_HEADER),
    idempotency_key: str | None = Header(None, alias=IDEMPOTENCY_HEADER),
    priority: str | None = Header(None, alias=PRIORITY_HEADER),
) -> Intake:
    return Intake(request, timeout, idempotency_key, priority)


Take = Annotated[Intake, Depends(intake)]  # a route's parameter: `take: Take`


async def chunks_of(stream: ChunkStream, first: AnyChunk) -> AsyncGenerator[AnyChunk, None]:
    """The first chunk, then the rest up to the terminal one; the stream is closed in every case
    (and the request cancelled if it had not ended)."""
    try:
        chunk = first
        yield chunk
        while not isinstance(chunk, (FinalChunk, ErrorChunk)):
            chunk = await stream.next()
            yield chunk
    finally:
        await stream.close()


def last_event(header: str | None) -> int:
    """The chunk number in an SSE `Last-Event-ID` header; -1 (from the start) when absent or odd."""
    value = (header or "").strip()
    return int(value) if value.isdigit() else -1
