"""Where a model's requests can go: the one rule for served, fallback, placeable or refused.

Pure, as `policy.py`: from the catalog and the live workers' heartbeats to a `Route`, no I/O and
no clock. The scheduler reads it when a request comes in (which domain's queue it waits in), when
it picks a worker (whether to try the fallback) and when a worker hands work back (whether it can
wait for another); the gateway reads it to admit a request or answer 503 at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum

from contracts.workers import ModelEntry, WorkerState, WorkerStatus


class Way(str, Enum):
    served = "served"  # a live worker has the model loaded
    fallback = "fallback"  # none has, but one has the catalog's fallback for it
    placeable = "placeable"  # none has, and the placement controller can load it onto a live host
    refused = "refused"  # nothing serves it and nothing will without a new worker


@dataclass(frozen=True)
class Route:
    """What the fleet offers a model now: the domain serving it, its fallback's, and where it
    would be placed; each None when the fleet does not offer it."""

    model: str
    served_in: str | None = None
    fallback: str | None = None
    fallback_in: str | None = None
    place_in: str | None = None

    @property
    def way(self) -> Way:
        """The first of served, fallback, placeable that the fleet offers; else refused."""
        if self.served_in is not None:
            return Way.served
        if self.fallback_in is not None:
            return Way.fallback
        if self.place_in is not None:
            return Way.placeable
        return Way.refused

    @property
    def domain(self) -> str | None:
        """The domain a request for the model waits in: where `way` sends it; None when refused."""
        return self.served_in or self.fallback_in or self.place_in

    def fallback_due(self, waited_s: float, after_s: float) -> bool:
        """Whether a request that found no free slot for its model goes to the fallback instead: at
        once when nothing serves its model, else once it has waited `after_s`."""
        return self.fallback_in is not None and (self.served_in is None or waited_s >= after_s)


def serving_domain(model: str, live: Iterable[WorkerStatus], exclude: str | None = None) -> str | None:
    """The domain of the ready workers that have `model` loaded (the first by name, should they be
    in several), leaving out `exclude`; None while none has."""
    return min(
        (w.domain for w in live if model in w.models and w.state is WorkerState.ready and w.worker_id != exclude),
        default=None,
    )


def route(
    model: str, catalog: Mapping[str, ModelEntry], live: Iterable[WorkerStatus], exclude: str | None = None
) -> Route:
    """Where `model`'s requests can go, from the catalog and the heartbeats of the live workers,
    leaving out worker `exclude` (one that hands the work back). A model is placeable when its
    catalog entry is placed and a host worker (one with memory for models) is live to load it: any
    host, `exclude` too, which may load the model again once it has room."""
    workers = list(live)
    entry = catalog.get(model)
    fallback = entry.fallback if entry is not None else None
    hosts = any(w.memory_mb > 0 for w in workers)
    return Route(
        model=model,
        served_in=serving_domain(model, workers, exclude),
        fallback=fallback,
        fallback_in=serving_domain(fallback, workers, exclude) if fallback is not None else None,
        place_in=entry.domain if entry is not None and entry.placed and hosts else None,
    )
