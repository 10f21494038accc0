"""Prometheus metrics every service exports: the names are `modalmesh_<service>_*`, listed in the
README and used by the Grafana dashboards in deploy/compose/grafana (a test checks that every
dashboard query names a metric a running stack exports). Each service defines its metrics in its
own `metrics.py` on the default registry and serves them here, on `MODALMESH_METRICS_PORT`; the
gateway serves them on its own `/metrics` instead."""

from __future__ import annotations

import logging

from prometheus_client import start_http_server

log = logging.getLogger(__name__)

# Latency buckets from a millisecond (a control-plane hop) to ten minutes (a video).
SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 180.0, 600.0)


def serve_metrics(port: int | None, addr: str = "0.0.0.0") -> None:
    """Serve `/metrics` on `port` (in a thread of its own); no port, no endpoint. A port in use is
    logged, not fatal: the service itself matters more than its metrics."""
    if not port:
        return
    try:
        start_http_server(port, addr=addr)
    except OSError as exc:
        log.error("metrics not served on :%d: %s", port, exc)
        return
    log.info("metrics on :%d/metrics", port)
