"""The admin API (keys of scope `admin`): what waits where, which models run where and in what state;
loading, unloading, pinning and re-prioritising catalog models (overrides in the `placement` bucket,
which the schedulers' placement controllers follow), and draining or resuming a worker."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from contracts import streams, subjects
from contracts.base import now_ms
from contracts.control import ModelCommand
from contracts.errors import InvalidRequest, ModelNotFound
from contracts.queues import QueueReport
from contracts.requests import Priority
from contracts.workers import ModelEntry, ModelOverride, ModelState, WorkerStatus
from services.gateway.relay import GatewayFleet, Relay

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
    return {
        "object": "list",
        "schedulers": sorted(r.scheduler_id for r in reports),
        "data": merge_reports(reports),
        "placements": dict(placements),
    }


def merge_reports(reports: list[QueueReport]) -> list[dict[str, Any]]:
    """One row per domain. Every scheduler sees the same workers (in flight, slots) but holds its own
    waiting requests: those add up; wait percentiles are the worst any scheduler reports."""
    domains: dict[str, dict[str, Any]] = {}
    for report in reports:
        for d in report.domains:
            row = domains.setdefault(
                d.domain,
                {
                    "domain": d.domain,
                    "in_flight": d.in_flight,
                    "slots": d.slots,
                    "max_concurrency": d.max_concurrency,
                    "max_queue": d.max_queue,
                    "cold_starts": 0,
                    "warm_hits": 0,
                    "classes": {
                        p.value: {
                            "waiting": 0,
                            "oldest_wait_ms": 0.0,
                            "dispatched": 0,
                            "wait_p50_ms": 0.0,
                            "wait_p95_ms": 0.0,
                        }
                        for p in Priority
                    },
                },
            )
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


# A model's state is its liveliest replica's: one running copy makes it running.
STATE_ORDER = (
    ModelState.running,
    ModelState.starting,
    ModelState.stopping,
    ModelState.error,
    ModelState.preempted,
    ModelState.stopped,
)


def replicas_of(model: str, live: list[WorkerStatus]) -> list[dict[str, Any]]:
    """Where `model` is, was lately, or is coming: every live worker serving it (a fixed worker's
    model runs since the worker started) or holding a record of it (a host worker's)."""
    return [
        {
            "worker": w.worker_id,
            "node": w.node,
            "state": r.state.value,
            "reason": r.reason,
            "since_ms": r.since_ms,
            "worker_state": w.state.value,
            "slots": w.slots_total,
            "in_flight": r.in_flight,
        }
        for w in live
        if (r := w.replicas().get(model)) is not None
    ]


def model_state(replicas: list[dict[str, Any]]) -> dict[str, Any]:
    """The model's state, with the reason and time of the replica that decides it."""
    if not replicas:
        return {"state": ModelState.stopped.value, "reason": "", "since_ms": None}
    first = min(replicas, key=lambda r: (STATE_ORDER.index(ModelState(r["state"])), -r["since_ms"]))
    return {"state": first["state"], "reason": first["reason"], "since_ms": first["since_ms"]}


def model_row(fleet: GatewayFleet, model: str) -> dict[str, Any]:
    catalog = fleet.catalog[model]
    entry = fleet.effective(model) or catalog
    override = fleet.overrides.get(model)
    replicas = replicas_of(model, fleet.live_workers())
    return {
        "id": entry.id,
        "engine": entry.engine,
        "modalities": [m.value for m in entry.modality],
        "source": entry.source,
        "domain": entry.domain,
        "priority_class": entry.priority_class.value,
        "declared": entry.declared,
        "priority": entry.priority,
        "memory_mb": entry.memory_mb,
        "min_replicas": entry.min_replicas,
        "max_replicas": entry.max_replicas,
        "idle_unload_s": entry.idle_unload_s,
        "node_labels": entry.node_labels,
        "fallback": entry.fallback,
        "pinned": override is not None and override.pinned,
        "override": override.model_dump(exclude={"model"}) if override is not None else None,
        **model_state(replicas),
        "replicas": replicas,
    }


@router.get("/models")
async def models(request: Request) -> dict[str, Any]:
    """The catalog with the operators' overrides: each model's engine, domain, class and priority,
    its state (the liveliest replica's, with why and since when) and its replicas."""
    fleet: GatewayFleet = request.app.state.relay.fleet
    return {"object": "list", "data": [model_row(fleet, model) for model in sorted(fleet.catalog)]}


class PinBody(BaseModel):
    pinned: bool = True


class PriorityBody(BaseModel):
    priority: int = Field(ge=1, le=10, description="Placement priority: a higher one may push a lower out.")


def _placed(fleet: GatewayFleet, model: str) -> ModelEntry:
    entry = fleet.catalog.get(model)
    if entry is None:
        raise ModelNotFound(f"The model `{model}` does not exist")
    if not entry.placed:
        raise InvalidRequest(
            f"`{model}` is not placed by the scheduler: it runs on its own worker. Declare it in "
            "the catalog file (with memory_mb) to load, unload, pin or re-prioritise it"
        )
    return entry


async def _override(request: Request, model: str, **changes: Any) -> dict[str, Any]:
    """Write the operator's new word on `model` to the `placement` bucket, which every scheduler follows."""
    relay: Relay = request.app.state.relay
    _placed(relay.fleet, model)
    current = relay.fleet.overrides.get(model) or ModelOverride(model=model)
    new = current.model_copy(update={**changes, "updated_ms": now_ms()})
    await (await relay.bus.js.key_value(streams.KV_PLACEMENT)).put(model, new.encode())
    relay.fleet.overrides[model] = new  # here at once; the bucket's watch says the same shortly
    return model_row(relay.fleet, model)


@router.post("/models/{model}/load")
async def load(model: str, request: Request) -> dict[str, Any]:
    """Keep at least one replica of `model` loaded (the placement controller loads it within a few
    seconds), until it is unloaded."""
    entry = _placed(request.app.state.relay.fleet, model)
    return await _override(request, model, min_replicas=max(1, entry.min_replicas))


@router.post("/models/{model}/unload")
async def unload(model: str, request: Request) -> dict[str, Any]:
    """Unload every replica of `model` now (work in flight finishes, or is handed back at the drain
    timeout) and keep none warm; a request for it later loads it again."""
    relay: Relay = request.app.state.relay
    row = await _override(request, model, min_replicas=0, pinned=False)
    command = ModelCommand(action="unload", model=model, reason="operator").encode()
    for w in relay.fleet.live_workers():
        if model in w.holding():
            await relay.bus.nc.publish(subjects.control(w.worker_id), command)
    return row


@router.post("/models/{model}/pin")
async def pin(model: str, body: PinBody, request: Request) -> dict[str, Any]:
    """Pin `model` (a replica stays loaded: never unloaded idle, never preempted) or unpin it."""
    return await _override(request, model, pinned=body.pinned)


@router.post("/models/{model}/priority")
async def priority(model: str, body: PriorityBody, request: Request) -> dict[str, Any]:
    """Change `model`'s placement priority (1-10) over the catalog file's."""
    return await _override(request, model, priority=body.priority)


async def _command_worker(request: Request, worker_id: str, action: str) -> dict[str, Any]:
    relay: Relay = request.app.state.relay
    if worker_id not in {w.worker_id for w in relay.fleet.live_workers()}:
        raise ModelNotFound(f"No live worker `{worker_id}`")
    await relay.bus.nc.publish(subjects.control(worker_id), ModelCommand(action=action, reason="operator").encode())  # type: ignore[arg-type]
    return {"worker": worker_id, "action": action}


@router.post("/workers/{worker_id}/drain")
async def drain(worker_id: str, request: Request) -> dict[str, Any]:
    """The worker takes no new work; what it has queued or running finishes. It stays up, drained."""
    return await _command_worker(request, worker_id, "drain")


@router.post("/workers/{worker_id}/resume")
async def resume(worker_id: str, request: Request) -> dict[str, Any]:
    """A drained worker takes work again."""
    return await _command_worker(request, worker_id, "resume")
