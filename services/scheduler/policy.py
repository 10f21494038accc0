"""Scheduling policies: pure functions from a fleet snapshot to a choice. No I/O, no clock, no
randomness inside (`random` draws from a hash of the request id), so a snapshot always gives the
same answer and every policy can be tested exhaustively.

Every policy first drops the candidates that must not get work: draining, overheating, or without
the memory the model needs. Then:

- `least_outstanding`: fewest requests in hand.
- `round_robin`: the next in worker-id order after the given counter.
- `random`: uniform over the eligible, seeded by the request id.
- `weighted` (the default): the shortest expected wait, i.e. requests in hand per slot divided by
  the node's speed (its GPUs' FP16 TFLOPS), made worse by utilization, memory and temperature
  pressure, thermal throttling and a batching engine's KV-cache use (vLLM reports it), better where
  the model is already loaded. Weights come from configuration.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from contracts.telemetry import NodeCapabilities, NodeTelemetry
from contracts.workers import WorkerState, WorkerStatus


class Policy(str, Enum):
    weighted = "weighted"
    least_outstanding = "least_outstanding"
    round_robin = "round_robin"
    random = "random"


@dataclass(frozen=True)
class Candidate:
    """A worker that could take the request, with what is known of its node."""

    worker: WorkerStatus
    telemetry: NodeTelemetry | None = None
    capabilities: NodeCapabilities | None = None
    recent: int = 0  # assignments sent since its last heartbeat, which it cannot count yet
    model_loaded: bool = True

    @property
    def worker_id(self) -> str:
        return self.worker.worker_id

    @property
    def in_hand(self) -> int:
        return self.worker.outstanding + self.recent

    @property
    def free(self) -> int:
        """Slots it has left, counting what was sent since its heartbeat."""
        return max(0, self.worker.slots_total - self.in_hand)


@dataclass(frozen=True)
class Weights:
    utilization: float = 0.5
    memory: float = 0.5
    temperature: float = 1.0
    throttled: float = 2.0
    loaded_bonus: float = 0.5
    kv_cache: float = 1.0  # a batching engine's KV cache filling up: its next request waits for room
    cpu_tflops: float = 1.0  # speed assumed for a node without a known GPU


@dataclass(frozen=True)
class Limits:
    max_gpu_temp_c: float = 90.0
    warm_gpu_temp_c: float = 70.0  # above this, temperature starts to count against a node


@dataclass(frozen=True)
class Snapshot:
    candidates: tuple[Candidate, ...]
    model_mem_mb: float = 0.0
    weights: Weights = field(default_factory=Weights)
    limits: Limits = field(default_factory=Limits)


def _hottest(c: Candidate) -> float:
    temps = [g.temp_c for g in (c.telemetry.gpus if c.telemetry else ()) if g.temp_c is not None]
    return max(temps, default=0.0)


def _free_mem_mb(c: Candidate) -> float:
    """The most memory one device of the node has free (a model lives on one device here)."""
    if c.telemetry is None:
        return math.inf  # nothing known: trust the worker, which loaded the model already
    if c.telemetry.gpus:
        return max(g.mem_free_mb for g in c.telemetry.gpus)
    return max(0.0, c.telemetry.mem_total_mb - c.telemetry.mem_used_mb)


def eligible(c: Candidate, snapshot: Snapshot) -> bool:
    if c.worker.state is not WorkerState.ready or c.worker.slots_total == 0:
        return False
    if _hottest(c) >= snapshot.limits.max_gpu_temp_c:
        return False
    return c.model_loaded or _free_mem_mb(c) >= snapshot.model_mem_mb


def expected_cost(c: Candidate, snapshot: Snapshot) -> float:
    """Lower is better: the `weighted` policy's estimate of how long the request would wait."""
    w, lim = snapshot.weights, snapshot.limits
    speed = (c.capabilities.fp16_tflops if c.capabilities else 0.0) or w.cpu_tflops
    queue = (c.in_hand + 1) / c.worker.slots_total
    pressure = 1.0
    t = c.telemetry
    if t is not None and t.gpus:
        pressure += w.utilization * max(g.util_pct for g in t.gpus) / 100
        pressure += w.memory * max(g.mem_pct for g in t.gpus) / 100
        warm_span = lim.max_gpu_temp_c - lim.warm_gpu_temp_c
        pressure += w.temperature * max(0.0, _hottest(c) - lim.warm_gpu_temp_c) / warm_span
        pressure += w.throttled * any(g.thermally_throttled for g in t.gpus)
    elif t is not None:
        pressure += w.utilization * t.cpu_pct / 100
    if c.worker.batch is not None:
        pressure += w.kv_cache * c.worker.batch.kv_cache_usage
    bonus = w.loaded_bonus if c.model_loaded else 0.0
    return queue / speed * pressure * (1.0 - bonus / (1.0 + bonus))


def choose(policy: Policy, snapshot: Snapshot, *, request_id: str = "", counter: int = 0) -> str | None:
    """The worker id `policy` picks for a request, or None when no candidate may take it."""
    pool = sorted((c for c in snapshot.candidates if eligible(c, snapshot)), key=lambda c: c.worker_id)
    if not pool:
        return None
    if policy is Policy.round_robin:
        return pool[counter % len(pool)].worker_id
    if policy is Policy.random:
        draw = int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:8], "big")
        return pool[draw % len(pool)].worker_id
    if policy is Policy.least_outstanding:
        return min(pool, key=lambda c: (c.in_hand, -c.worker.slots_free, c.worker_id)).worker_id
    return min(pool, key=lambda c: (expected_cost(c, snapshot), c.worker_id)).worker_id


def least_outstanding(workers: Sequence[WorkerStatus], recent: dict[str, int]) -> str | None:
    """Shorthand kept for callers that know only heartbeats."""
    candidates = tuple(Candidate(w, recent=recent.get(w.worker_id, 0)) for w in workers)
    return choose(Policy.least_outstanding, Snapshot(candidates))
