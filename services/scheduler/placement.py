"""Model placement, planned: which model to load or unload on which worker, from the catalog, what
each worker holds and has room for, and the work waiting. Pure: no I/O, the clock passed in, so
the rules below are properties the tests check on random fleets:

- never over-commit: what a worker holds after the plan fits in its memory;
- never preempt a model of equal or higher priority;
- converge without flapping: applying a plan and planning again, with the same demand, comes to a
  plan with nothing to do, and never unloads what an earlier round loaded.

A model is placed where its memory fits, on a worker whose labels match, tightest fit first (bin
packing), preferring a worker that has its files already. Each model keeps `min_replicas` loaded,
gets one more (up to `max_replicas`) while requests wait for it, and loses replicas beyond its
minimum once idle for `idle_unload_s`. When nowhere has room, a model pushes out models of lower
priority, the least important and the fewest bytes first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

from contracts.workers import HeldModel, ModelState


@dataclass(frozen=True)
class Held:
    """A model loaded on a worker."""

    memory_mb: float
    last_used_s: float  # monotonic: when it last had work
    in_flight: int = 0
    pinned: bool = False  # the operator asked to keep it: never unloaded by the planner


@dataclass(frozen=True)
class Host:
    """A worker that can load models: its memory for models, its node's labels, what it holds."""

    worker_id: str
    capacity_mb: float
    labels: Mapping[str, str] = field(default_factory=dict)
    held: Mapping[str, Held] = field(default_factory=dict)
    cached: frozenset[str] = frozenset()  # models whose files are on its node already

    @property
    def used_mb(self) -> float:
        return sum(h.memory_mb for h in self.held.values())


@dataclass(frozen=True)
class Wanted:
    """A catalog model the planner manages."""

    model: str
    memory_mb: float
    priority: int = 5  # 1-10
    min_replicas: int = 0
    max_replicas: int = 1
    idle_unload_s: float | None = None
    node_labels: Mapping[str, str] = field(default_factory=dict)


class Reason(str, Enum):
    warm = "keeps min_replicas warm"
    demand = "requests are waiting"
    idle = "idle past idle_unload_s"
    surplus = "beyond max_replicas"
    preempted = "pushed out for a higher priority"


@dataclass(frozen=True)
class Load:
    model: str
    worker_id: str
    reason: Reason


@dataclass(frozen=True)
class Unload:
    model: str
    worker_id: str
    reason: Reason
    by: str | None = None  # for a preemption: the model that needed the room


Action = Load | Unload


def _fits_labels(host: Host, wanted: Wanted) -> bool:
    return all(host.labels.get(k) == v for k, v in wanted.node_labels.items())


def plan(hosts: Iterable[Host], wanted: Iterable[Wanted], waiting: Mapping[str, int], now: float) -> list[Action]:
    """The actions that bring the fleet to what the catalog and the waiting work ask for."""
    planner = _Planner(sorted(hosts, key=lambda h: h.worker_id), {w.model: w for w in wanted}, now)
    planner.shrink(waiting)
    planner.grow(waiting)
    return planner.actions


@dataclass
class _Planner:
    hosts: list[Host]
    catalog: dict[str, Wanted]
    now: float
    actions: list[Action] = field(default_factory=list)
    held: dict[str, dict[str, Held]] = field(init=False)  # what each worker holds as the plan goes

    def __post_init__(self) -> None:
        self.held = {h.worker_id: dict(h.held) for h in self.hosts}
        self._capacity = {h.worker_id: h.capacity_mb for h in self.hosts}

    def free(self, worker_id: str) -> float:
        return self._capacity[worker_id] - sum(h.memory_mb for h in self.held[worker_id].values())

    def replicas(self, model: str) -> list[str]:
        return [wid for wid, models in self.held.items() if model in models]

    def unload(self, model: str, worker_id: str, reason: Reason, by: str | None = None) -> None:
        del self.held[worker_id][model]
        self.actions.append(Unload(model, worker_id, reason, by))

    def shrink(self, waiting: Mapping[str, int]) -> None:
        """Unload replicas beyond `max_replicas`, and idle ones beyond `min_replicas`, first: the room
        they free is there for the loads after."""
        for w in self.catalog.values():

            def idlest(wid: str, model: str = w.model) -> tuple[int, float]:
                return self.held[wid][model].in_flight, self.held[wid][model].last_used_s

            placed = sorted(self.replicas(w.model), key=idlest)
            removable = [wid for wid in placed if not self.held[wid][w.model].pinned]
            for wid in removable[: max(0, len(placed) - w.max_replicas)]:
                self.unload(w.model, wid, Reason.surplus)
            if waiting.get(w.model, 0) or w.idle_unload_s is None:
                continue
            for wid in removable:
                if len(self.replicas(w.model)) <= w.min_replicas or w.model not in self.held[wid]:
                    continue
                h = self.held[wid][w.model]
                if h.in_flight == 0 and self.now - h.last_used_s >= w.idle_unload_s:
                    self.unload(w.model, wid, Reason.idle)

    def grow(self, waiting: Mapping[str, int]) -> None:
        """Load up to `min_replicas`, and one more while requests wait, the highest priority first."""
        for w in sorted(self.catalog.values(), key=lambda w: (-w.priority, w.model)):
            have = len(self.replicas(w.model))
            target = min(w.max_replicas, max(w.min_replicas, have + 1 if waiting.get(w.model, 0) > 0 else have))
            reason = Reason.warm if have < w.min_replicas else Reason.demand
            while have < target:
                worker_id = self.room_for(w) or self.preempt_for(w)
                if worker_id is None:
                    break
                self.held[worker_id][w.model] = Held(w.memory_mb, last_used_s=self.now)
                self.actions.append(Load(w.model, worker_id, reason))
                have += 1

    def candidates(self, w: Wanted) -> list[Host]:
        return [h for h in self.hosts if _fits_labels(h, w) and w.model not in self.held[h.worker_id]]

    def room_for(self, w: Wanted) -> str | None:
        """The worker where `w` fits tightest, those with its files first; None when none has room."""
        fits = [h for h in self.candidates(w) if self.free(h.worker_id) >= w.memory_mb]
        if not fits:
            return None
        return min(
            fits, key=lambda h: (w.model not in h.cached, self.free(h.worker_id) - w.memory_mb, h.worker_id)
        ).worker_id

    def preempt_for(self, w: Wanted) -> str | None:
        """Make room for `w` by unloading models of strictly lower priority (never pinned ones) on one
        worker: the one where the most important model pushed out is least important, then where
        the fewest megabytes go; and no model that the others pushed out leave room without. None
        when no worker can be cleared enough."""
        best: tuple[tuple[int, float, str], str, list[str]] | None = None
        for h in self.candidates(w):
            held = self.held[h.worker_id]
            victims = sorted(
                (
                    m
                    for m, x in held.items()
                    if not x.pinned and m in self.catalog and self.catalog[m].priority < w.priority
                ),
                key=lambda m: (self.catalog[m].priority, held[m].memory_mb, m),
            )
            need = w.memory_mb - self.free(h.worker_id)
            chosen, freed = [], 0.0
            for m in victims:
                if freed >= need:
                    break
                chosen.append(m)
                freed += held[m].memory_mb
            if not chosen or freed < need:
                continue
            for m in list(chosen):  # the least important first; keep each that the rest make room without
                if freed - held[m].memory_mb >= need:
                    chosen.remove(m)
                    freed -= held[m].memory_mb
            key = (max(self.catalog[m].priority for m in chosen), freed, h.worker_id)
            if best is None or key < best[0]:
                best = (key, h.worker_id, chosen)
        if best is None:
            return None
        _, worker_id, chosen = best
        for m in chosen:
            self.unload(m, worker_id, Reason.preempted, by=w.model)
        return worker_id


@dataclass(frozen=True)
class Command:
    """A load or unload sent to a host: which, when (monotonic), and when the host's record of the
    model had last changed then (the host's clock; None: it had no record)."""

    kind: Literal["load", "unload"]
    sent_s: float
    record_since_ms: int | None


def command_settled(record: HeldModel | None, command: Command) -> bool:
    """Whether a host's heartbeat shows a load or unload done, so the planner stops counting it as
    under way: the model held, or not, as asked. Or, for a load, the model's record has changed since
    and it holds no memory: the host loaded it and it was unloaded again (an operator's unload)
    between two heartbeats; counted as loading still, it kept its memory from the plan for the whole
    grace time. A load that failed stays under way until then, so a broken model is not retried
    every round."""
    holds = record is not None and record.state.holds_memory
    if holds == (command.kind == "load"):
        return True
    return (
        command.kind == "load"
        and record is not None
        and record.since_ms != command.record_since_ms
        and record.state is not ModelState.error
    )
