"""The aggregator's Prometheus metrics: chunks merged and requests finished, by how they ended."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CHUNKS = Counter("modalmesh_aggregator_chunks_total", "Result chunks merged, by kind.", ["kind"])
FINISHED = Counter(
    "modalmesh_aggregator_requests_finished_total",
    "Requests whose merged output ended, by how: a finish reason (stop, length, cancelled) or an error code.",
    ["outcome"],
)
OPEN = Gauge("modalmesh_aggregator_open_requests", "Requests with chunks merged and no end yet.")
