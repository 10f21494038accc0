"""The gateway's FastAPI application: `create_app` builds it, the lifespan connects it to the bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.telemetry import TelemetryConfig

from contracts import streams
from services.common.bus import connect
from services.gateway import errors
from services.gateway.auth import KeyRing, authenticate, require_admin
from services.gateway.cache import ResponseCache
from services.gateway.files import Files
from services.gateway.keys import KeyStore
from services.gateway.limits import BodySizeLimit
from services.gateway.metrics import HttpMetrics, metrics_endpoint
from services.gateway.quotas import Quotas
from services.gateway.ratelimit import RateLimiter, RateLimitHeaders
from services.gateway.relay import Relay
from services.gateway.routes import (
    admin,
    console,
    fleet,
    health,
    keys,
    media,
    openai,
    rerank,
    responses,
    tasks,
    transcriptions,
    usage,
)
from services.gateway.settings import GatewaySettings
from services.gateway.usage import UsageRecorder

# FastAPI's own OpenTelemetry server span per HTTP request (on when a tracer provider is set: see
# services.common.tracing) continues the client's `traceparent`; the request's NATS messages carry
# it on. Prometheus has the HTTP metrics already, and probes are not worth a span.
TELEMETRY: TelemetryConfig = {
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "exclude": lambda scope: scope.get("path") in ("/healthz", "/readyz", "/metrics"),
}


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bus = await connect(settings.nats_url, "gateway", settings.nats_replicas)
        relay = Relay(bus, dead_after_s=settings.dead_after_s, max_inflight_per_model=settings.max_inflight_per_model)
        await relay.start()
        app.state.relay = relay
        app.state.files = Files(bus, settings.url_secret, settings.url_ttl_s)
        app.state.key_store = await KeyStore.follow(bus, app.state.keys)
        app.state.rate_limiter = RateLimiter(await bus.js.key_value(streams.KV_RATES))
        app.state.quotas = Quotas(await bus.js.key_value(streams.KV_QUOTAS))
        app.state.usage = UsageRecorder(bus, app.state.quotas)
        app.state.cache = ResponseCache(await bus.js.key_value(streams.KV_CACHE))
        try:
            yield
        finally:
            await app.state.cache.drain()
            await app.state.usage.drain()
            await app.state.key_store.stop()
            await relay.stop()
            await bus.close()

    app = FastAPI(
        title="ModalMesh",
        version="0.1.0",
        lifespan=lifespan,
        telemetry=TELEMETRY,
        description="OpenAI-compatible multimodal serving over NATS JetStream.",
    )
    app.state.settings = settings
    # No key, no gateway: a config error fails here, loudly, with the variable's name.
    app.state.keys = KeyRing.load(settings.api_keys, settings.api_keys_file)
    errors.install(app, retry_after_s=settings.dead_after_s)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(HttpMetrics)
    app.add_middleware(RateLimitHeaders)
    app.add_middleware(console.ContentSecurityPolicy, exempt=("/docs", "/redoc"))
    app.add_route("/metrics", metrics_endpoint, include_in_schema=False)  # for Prometheus: no key, like /healthz
    app.include_router(health.router)
    app.include_router(openai.router, dependencies=[Depends(authenticate)])
    app.include_router(responses.router, dependencies=[Depends(authenticate)])
    app.include_router(rerank.router, dependencies=[Depends(authenticate)])
    app.include_router(transcriptions.router, dependencies=[Depends(authenticate)])
    app.include_router(media.router, dependencies=[Depends(authenticate)])
    app.include_router(tasks.router, dependencies=[Depends(authenticate)])
    app.include_router(media.files_router)  # the API key or a signed URL: see Files.authorize
    app.include_router(fleet.router, dependencies=[Depends(authenticate)])
    app.include_router(admin.router, dependencies=[Depends(authenticate), Depends(require_admin)])
    app.include_router(keys.router, dependencies=[Depends(authenticate), Depends(require_admin)])
    app.include_router(usage.router, dependencies=[Depends(authenticate), Depends(require_admin)])
    app.include_router(console.router, dependencies=[Depends(authenticate)])
    console.mount_assets(app)

    return app
