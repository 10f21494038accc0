"""The fleet as the gateway sees it: nodes (telemetry and capabilities), workers, alerts."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from services.gateway.relay import Relay

router = APIRouter(prefix="/v1", tags=["fleet"])


@router.get("/nodes")
async def nodes(request: Request) -> dict[str, Any]:
    """Every node known from capabilities or telemetry, with its latest telemetry when it is online."""
    fleet = request.app.state.relay.fleet
    now = time.monotonic()
    names = sorted(set(fleet.capabilities) | {k for k, _ in fleet.nodes.live_items(now)} | set(fleet.nodes.last_seen()))
    data = []
    for name in names:
        telemetry = fleet.nodes.get(name, now)
        caps = fleet.capabilities.get(name)
        data.append(
            {
                "node": name,
                "online": telemetry is not None,
                "capabilities": caps.model_dump(mode="json") if caps else None,
                "telemetry": telemetry.model_dump(mode="json") if telemetry else None,
            }
        )
    return {"object": "list", "data": data}


@router.get("/workers")
async def workers(request: Request) -> dict[str, Any]:
    """Every live worker's last heartbeat."""
    relay: Relay = request.app.state.relay
    return {"object": "list", "data": [w.model_dump(mode="json") for w in relay.fleet.live_workers()]}


@router.get("/alerts")
async def alerts(request: Request, limit: int = 100) -> dict[str, Any]:
    """Alerts firing now, and the most recent transitions (newest first)."""
    fleet = request.app.state.relay.fleet
    recent = list(fleet.alerts)[-max(0, min(limit, 1000)) :][::-1]
    return {
        "active": [a.model_dump(mode="json") for a in fleet.active_alerts.values()],
        "recent": [a.model_dump(mode="json") for a in recent],
    }
