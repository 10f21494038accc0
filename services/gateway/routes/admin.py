"""The admin API (keys of scope `admin`): what waits where, and which models run where."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from fastapi import APIRouter, Request

from contracts.queues import QueueReport
from contracts.requests import Priority
from services.gateway.relay import GatewayFleet

router = APIRouter(prefix="/v1/admin", tags=["admin"])


@router.get("/queues")
async def queues(request: Request) -> dict[str, Any]:
    """Per resource domain and priority class: requests waiting for a slot, how long the oldest has
    waited, and the queue wait of recently dispatched ones, summed over the live schedulers."""
    fleet: GatewayFleet = request.app.state.relay.fleet
    reports = fleet.live_queue_reports(time.monotonic())
    placements: Counter[str] = Counter()
    for report in reports:
        placements.update(report.placements)
    return {"object": "list", "schedulers": sorted(r.scheduler_id for r in reports), "data": merge_reports(reports),
            "placements": dict(placements)}


def merge_reports(reports: list[QueueReport]) -> list[dict[str, Any]]:
    """One row per domain. Every scheduler sees the same workers (in flight, slots) but holds its own
    waiting requests: those add up; wait percentiles are the worst any scheduler reports."""
    domains: dict[str, dict[str, Any]] = {}
    for report in reports:
        for d in report.domains:
            row = domains.setdefault(d.domain, {
                "domain": d.domain, "in_flight": d.in_flight, "slots": d.slots,
                "max_concurrency": d.max_concurrency, "max_queue": d.max_queue, "cold_starts": 0, "warm_hits": 0,
                "classes": {p.value: {"waiting": 0, "oldest_wait_ms": 0.0, "dispatched": 0,
                                      "wait_p50_ms": 0.0, "wait_p95_ms": 0.0} for p in Priority},
            })
            row["cold_starts"] += d.cold_starts
            row["warm_hits"] += d.warm_hits
            for priority, q in d.classes.items():
                row_class = row["classes"][priority.value]
                row_class["waiting"] += q.waiting
                row_class["dispatched"] += q.dispatched
                for worst in ("oldest_wait_ms", "wait_p50_ms", "wait_p95_ms"):
                    row_class[worst] = round(max(row_class[worst], getattr(q, worst)), 3)
            row["waiting"] = sum(c["waiting"] for c in row["classes"].values())
    return [domains[name] for name in sorted(domains)]


@router.get("/models")
async def models(request: Request) -> dict[str, Any]:
    """The catalog: each model's engine, domain, default class, and the live workers serving it."""
    fleet: GatewayFleet = request.app.state.relay.fleet
    live = fleet.live_workers()
    data = []
    for entry in sorted(fleet.catalog.values(), key=lambda e: e.id):
        replicas = [{"worker": w.worker_id, "node": w.node, "state": w.state.value, "slots": w.slots_total,
                     "in_flight": w.outstanding} for w in live if entry.id in w.models]
        data.append({"id": entry.id, "engine": entry.engine, "modalities": [m.value for m in entry.modality],
                     "source": entry.source, "domain": entry.domain, "priority_class": entry.priority_class.value,
                     "declared": entry.declared, "priority": entry.priority, "memory_mb": entry.memory_mb,
                     "min_replicas": entry.min_replicas, "max_replicas": entry.max_replicas,
                     "idle_unload_s": entry.idle_unload_s, "node_labels": entry.node_labels,
                     "fallback": entry.fallback, "state": "running" if replicas else "stopped",
                     "replicas": replicas})
    return {"object": "list", "data": data}
