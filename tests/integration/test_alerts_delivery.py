"""An alert reaches the ALERTS stream and the configured webhook."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from nats.js.api import DeliverPolicy

from contracts import subjects
from contracts.telemetry import Alert, AlertState, Severity
from services.common.alerts import publish_alert
from services.common.bus import Bus


async def test_alert_goes_to_stream_and_webhook(bus: Bus) -> None:
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    alert = Alert(
        name="gpu_temperature",
        node="hook-node",
        severity=Severity.critical,
        state=AlertState.firing,
        subject_key="gpu0",
        value=91,
        threshold=85,
        message="hot",
    )
    try:
        await publish_alert(bus, alert, f"http://127.0.0.1:{server.server_port}/hook")
    finally:
        server.shutdown()
    assert received and received[0]["name"] == "gpu_temperature" and received[0]["state"] == "firing"
    sub = await bus.js.subscribe(
        subjects.alert("critical", "hook-node"), ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    stored = Alert.decode((await sub.next_msg(timeout=5)).data)
    await sub.unsubscribe()
    assert stored == alert


async def test_unreachable_webhook_does_not_lose_the_alert(bus: Bus) -> None:
    alert = Alert(name="vram_pressure", node="nohook-node", severity=Severity.warning, state=AlertState.firing)
    await publish_alert(bus, alert, "http://127.0.0.1:9/nowhere")  # nothing listens on port 9
    sub = await bus.js.subscribe(
        subjects.alert("warning", "nohook-node"), ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    assert Alert.decode((await sub.next_msg(timeout=5)).data).name == "vram_pressure"
    await sub.unsubscribe()
