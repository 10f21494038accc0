"""A worker's Prometheus metrics: requests by outcome, tokens, the engine's own time to first token
and run time, slots in use, and (host workers) model loads."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from services.common.metrics import SECONDS

SLOTS = Gauge("modalmesh_worker_slots", "Requests the worker can run at once.", ["worker", "domain"])
IN_FLIGHT = Gauge("modalmesh_worker_in_flight", "Requests the worker is running.", ["worker", "domain"])
REQUESTS = Counter(
    "modalmesh_worker_requests_total",
    "Requests run, by how they ended: ok, error, handed_back (its engine lost its backend or its model was unloaded).",
    ["worker", "model", "outcome"],
)
TOKENS = Counter(
    "modalmesh_worker_tokens_total", "Prompt and completion tokens of finished requests.", ["worker", "model", "kind"]
)
ENGINE_TTFT = Histogram(
    "modalmesh_worker_engine_ttft_seconds",
    "Engine start to first token (or first output), as the engine measured it.",
    ["worker", "model"],
    buckets=SECONDS,
)
ENGINE_SECONDS = Histogram(
    "modalmesh_worker_engine_seconds",
    "Engine start to last output, as the engine measured it.",
    ["worker", "model"],
    buckets=SECONDS,
)
MODEL_LOADS = Counter(
    "modalmesh_worker_model_loads_total",
    "Catalog model loads and unloads on a host worker, by outcome.",
    ["worker", "model", "action", "outcome"],
)
KV_CACHE = Gauge(
    "modalmesh_worker_kv_cache_usage",
    "Share of a batching engine's KV cache in use (vLLM), 0..1.",
    ["worker", "domain"],
)
