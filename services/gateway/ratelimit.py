"""Per-key requests and tokens per minute, counted in the `rates` bucket so every gateway shares them.

A fixed one-minute window per key: one bucket entry `<key id>.<minute>` holds both counts, and a
compare-and-set on its revision (a JetStream expected-last-sequence publish) adds to them, so two
gateways never both spend the last request. Tokens are reserved as OpenAI counts them on admission:
the prompt's estimate (4 characters a token) plus `max_tokens`. The `limits` library has the
algorithms but no NATS storage, and a storage for it would need this same compare-and-set.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import nats.errors
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.errors import BusUnavailable, Overloaded
from contracts.requests import AnyRequest, ChatRequest, CompletionRequest, EmbeddingRequest, RerankRequest
from services.gateway.auth import KeyEntry

WINDOW_S = 60
CAS_WITHIN_S = 2.0  # a compare-and-set still losing races after this long answers 429 (retry shortly)


class RateLimited(Overloaded):
    """429 with OpenAI's `x-ratelimit-*` headers (see services.gateway.errors)."""

    def __init__(self, message: str, headers: dict[str, str]) -> None:
        super().__init__(message)
        self.headers = headers


@dataclass(frozen=True)
class Window:
    """One key's counts in the current minute after a take (or the refused attempt)."""

    requests: int
    tokens: int
    reset_s: float


def estimated_tokens(request: AnyRequest) -> int:
    if isinstance(request, ChatRequest):
        chars = sum(len(m.content) for m in request.messages)
    elif isinstance(request, CompletionRequest):
        chars = len(request.prompt)
    elif isinstance(request, EmbeddingRequest):
        return sum(math.ceil(len(text) / 4) for text in request.inputs)
    elif isinstance(request, RerankRequest):
        return math.ceil((len(request.query) + sum(len(d) for d in request.documents)) / 4)
    else:
        return 0  # images, speech, video, transcription: metered by quotas, not tokens per minute
    return math.ceil(chars / 4) + request.sampling.max_tokens


def duration(seconds: float) -> str:
    """A reset time as OpenAI writes it: `120ms`, `6s`, `1m0s`."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:.0f}s" if minutes else f"{rest:.3g}s"


def headers(key: KeyEntry, window: Window) -> dict[str, str]:
    out: dict[str, str] = {}
    for kind, limit, used in (("requests", key.rpm, window.requests), ("tokens", key.tpm, window.tokens)):
        if limit is not None:
            out[f"x-ratelimit-limit-{kind}"] = str(limit)
            out[f"x-ratelimit-remaining-{kind}"] = str(max(limit - used, 0))
            out[f"x-ratelimit-reset-{kind}"] = duration(window.reset_s)
    return out


class RateLimiter:
    def __init__(self, kv: KeyValue, clock: Callable[[], float] = time.time) -> None:
        self.kv = kv
        self.clock = clock
        # What this gateway last wrote or read of each key's current minute: when no other gateway
        # wrote since, the compare-and-set goes through without a read first (one round trip, not two).
        self._seen: dict[str, tuple[int, int, list[int]]] = {}  # key id: (minute, revision, [requests, tokens])

    async def take(self, key: KeyEntry, requests: int, tokens: int) -> dict[str, str]:
        """Spend `requests` and `tokens` of `key`'s minute, and return the headers to answer with;
        RateLimited (nothing spent) when either would go over its limit."""
        if key.rpm is None and key.tpm is None:
            return {}
        try:
            return await self._take(key, requests, tokens)
        except nats.errors.Error as exc:
            # Counts unknown, and the request could not be published either: the client retries.
            raise BusUnavailable("the message bus did not answer the rate limiter; retry shortly") from exc

    async def _take(self, key: KeyEntry, requests: int, tokens: int) -> dict[str, str]:
        now = self.clock()
        minute = int(now // WINDOW_S)
        name = f"{key.id}.{minute}"
        reset_s = (minute + 1) * WINDOW_S - now
        give_up = time.monotonic() + CAS_WITHIN_S
        counts, revision = self._cached(key.id, minute)
        while True:
            after = Window(counts[0] + requests, counts[1] + tokens, reset_s)
            if over := self._over(key, after):
                refused = Window(counts[0], counts[1], reset_s)
                raise RateLimited(
                    f"Rate limit reached for key `{key.name}` on {over}: retry after {duration(reset_s)}",
                    {**headers(key, refused), "retry-after": str(math.ceil(reset_s))},
                )
            value = json.dumps([after.requests, after.tokens]).encode()
            try:
                if revision:
                    written = await self.kv.update(name, value, last=revision)
                else:
                    written = await self.kv.create(name, value)
            except KeyWrongLastSequenceError:
                # Another gateway (or request) counted first: read what it wrote and try again.
                if time.monotonic() > give_up:
                    raise Overloaded(f"too many concurrent requests on key `{key.name}`: retry shortly") from None
                counts, revision = await self._read(name)
                continue
            self._seen[key.id] = (minute, written, [after.requests, after.tokens])
            return headers(key, after)

    def _cached(self, key_id: str, minute: int) -> tuple[list[int], int]:
        seen = self._seen.get(key_id)
        if seen is None or seen[0] != minute:
            return [0, 0], 0  # a new minute: create it, or read it when another gateway did
        return list(seen[2]), seen[1]

    async def _read(self, name: str) -> tuple[list[int], int]:
        try:
            entry = await self.kv.get(name)
        except KeyNotFoundError:
            return [0, 0], 0
        return json.loads(entry.value or b"[0, 0]"), entry.revision or 0

    @staticmethod
    def _over(key: KeyEntry, after: Window) -> str | None:
        if key.rpm is not None and after.requests > key.rpm:
            return f"requests per minute (limit {key.rpm})"
        if key.tpm is not None and after.tokens > key.tpm:
            return f"tokens per minute (limit {key.tpm})"
        return None


HEADERS_SCOPE = "modalmesh.headers"  # where a route leaves headers for its answer (the ASGI scope)


class RateLimitHeaders:
    """Adds the headers a route left in the scope (its rate limits, the cache) to its answer, streamed ones included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and (taken := scope.get(HEADERS_SCOPE)):
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in taken.items() if k.encode() not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
