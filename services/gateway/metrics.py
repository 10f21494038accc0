"""The gateway's Prometheus metrics, served on its own `/metrics`: HTTP requests by route and status,
and per model the time to first output, tokens, requests in flight and how requests ended."""

from __future__ import annotations

import time

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.base import now_ms
from contracts.requests import AnyRequest
from contracts.results import AnyChunk, ErrorChunk, FinalChunk, ProgressChunk
from services.common.metrics import SECONDS

HTTP_REQUESTS = Counter(
    "modalmesh_gateway_http_requests_total", "HTTP requests answered, by route and status.", ["route", "method", "code"]
)
HTTP_SECONDS = Histogram(
    "modalmesh_gateway_http_request_seconds",
    "HTTP request to the end of its response (the whole stream for SSE).",
    ["route", "method"],
    buckets=SECONDS,
)
TTFT = Histogram(
    "modalmesh_gateway_ttft_seconds",
    "Request accepted to its first output (a token, audio, a vector or a file) leaving the bus.",
    ["model", "modality"],
    buckets=SECONDS,
)
TOKENS = Counter(
    "modalmesh_gateway_tokens_total", "Prompt and completion tokens of finished requests.", ["model", "kind"]
)
FINISHED = Counter(
    "modalmesh_gateway_requests_finished_total",
    "Requests that ended, by outcome: a finish reason or an error code.",
    ["model", "outcome"],
)
IN_FLIGHT = Gauge("modalmesh_gateway_in_flight", "Requests whose output the gateway is relaying.", ["model"])


def observe_chunk(request: AnyRequest, chunk: AnyChunk, first: bool) -> None:
    """Account for one chunk of `request`'s merged output; `first`: the first that is not progress."""
    if first and not isinstance(chunk, (ProgressChunk, ErrorChunk)):
        TTFT.labels(request.model, request.modality.value).observe(max(0, now_ms() - request.created_ms) / 1000)
    if isinstance(chunk, FinalChunk):
        TOKENS.labels(request.model, "prompt").inc(chunk.usage.prompt_tokens)
        TOKENS.labels(request.model, "completion").inc(chunk.usage.completion_tokens)
        FINISHED.labels(request.model, chunk.finish_reason).inc()
    elif isinstance(chunk, ErrorChunk):
        FINISHED.labels(request.model, chunk.code.value).inc()


class HttpMetrics:
    """ASGI middleware: count and time every HTTP request by its route template (not its path, so
    ids do not make a series each), until the last byte of its response. (Its trace span is
    FastAPI's own: see `app.TELEMETRY`.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def observe(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(route, scope["method"], str(status)).inc()
            HTTP_SECONDS.labels(route, scope["method"]).observe(time.perf_counter() - started)


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
