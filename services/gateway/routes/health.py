"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    """Ready when connected to NATS; also says how many workers are live."""
    relay = request.app.state.relay
    connected = relay.bus.nc.is_connected
    body = {
        "status": "ready" if connected else "not_ready",
        "nats": connected,
        "live_workers": len(relay.fleet.live_workers()),
    }
    return JSONResponse(body, status_code=200 if connected else 503)
