"""Publishing an alert: on `alert.<severity>.<node>` (stream ALERTS) and, if configured, to a webhook."""

from __future__ import annotations

import logging

import httpx

from contracts import dedup, subjects
from contracts.telemetry import Alert
from services.common.bus import Bus

log = logging.getLogger(__name__)


async def publish_alert(bus: Bus, alert: Alert, webhook_url: str | None = None) -> None:
    await bus.js.publish(subjects.alert(alert.severity.value, alert.node), alert.encode(), headers=dedup.alert(alert))
    log.warning("alert %s %s: %s", alert.name, alert.state.value, alert.message)
    if webhook_url:
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                (await client.post(webhook_url, json=alert.model_dump(mode="json"))).raise_for_status()
        except httpx.HTTPError as exc:  # the alert is on the bus already; a webhook outage must not stop us
            log.error("alert webhook %s failed: %s", webhook_url, exc)
