"""Runs over several loads: a sweep over rates or concurrencies, and the SLO search, which bisects for
the highest load at which every class still meets its targets (as GuideLLM's)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Literal

from loadgen.spec import RunSpec, Shape
from loadgen.stats import meets_slo

By = Literal["rate", "concurrency"]
# Runs one load and returns its summary (the caller writes its files and shows it).
RunAt = Callable[[RunSpec], Awaitable[dict[str, Any]]]


def shape_at(base: Shape, by: By, load: float) -> Shape:
    if by == "concurrency":
        return base.model_copy(update={"kind": "concurrency", "concurrency": max(1, round(load))})
    return base.model_copy(update={"kind": "rate", "rate": load})


def verdict(spec: RunSpec, summary: dict[str, Any]) -> dict[str, bool]:
    """Per class, whether it met its SLO at this load."""
    return {c.name: meets_slo(summary["classes"][c.name], c.slo) for c in spec.classes}


async def sweep(spec: RunSpec, by: By, loads: list[float], run_at: RunAt) -> list[dict[str, Any]]:
    points = []
    for load in loads:
        summary = await run_at(spec.with_shape(shape_at(spec.shape, by, load)))
        points.append({"by": by, "load": load, "summary": summary, "meets_slo": verdict(spec, summary)})
    return points


def next_load(low: float, high: float, by: By) -> float | None:
    """The middle of the interval, or None once it cannot be split further."""
    if by == "concurrency":
        return None if high - low <= 1 else float((int(low) + int(high)) // 2)
    return (low + high) / 2


async def slo_search(spec: RunSpec, by: By, low: float, high: float, iterations: int, run_at: RunAt) -> dict[str, Any]:
    """Bisection between `low` (expected to meet the SLOs) and `high` (expected not to): after each run
    the interval halves toward the side that holds the boundary. `best` is the highest load that met
    every class's targets (None if even `low` did not)."""
    steps: list[dict[str, Any]] = []

    async def probe(load: float) -> bool:
        summary = await run_at(spec.with_shape(shape_at(spec.shape, by, load)))
        met = verdict(spec, summary)
        steps.append({"load": load, "meets_slo": met, "summary": summary})
        return all(met.values())

    if not await probe(low):
        return {"by": by, "best": None, "steps": steps}
    if await probe(high):
        return {"by": by, "best": high, "steps": steps}
    best = low
    for _ in range(iterations):
        middle = next_load(low, high, by)
        if middle is None:
            break
        if await probe(middle):
            best, low = middle, middle
        else:
            high = middle
    return {"by": by, "best": best, "steps": steps}
