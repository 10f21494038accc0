"""Load shapes as pure functions: arrival times for rates and ramps, and the class of each request."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

from loadgen.spec import Shape


def gamma_gaps(rng: random.Random, rate: float, burstiness: float, n: int) -> list[float]:
    """Gaps between arrivals with mean 1/rate. Burstiness is the gamma shape: 1 is a Poisson process,
    below 1 arrivals come in bursts, above 1 more evenly (vLLM's `--burstiness`)."""
    return [rng.gammavariate(burstiness, 1.0 / (rate * burstiness)) for _ in range(n)]


def ramp_time(work: float, start_rate: float, end_rate: float, ramp_s: float) -> float:
    """When the cumulative expected arrivals of a linear ramp reach `work`: inverts
    L(t) = r0 t + (r1 - r0) t^2 / (2 T) on [0, T], and goes on at r1 after T."""
    at_end = (start_rate + end_rate) * ramp_s / 2
    if work >= at_end:
        return ramp_s + (work - at_end) / end_rate
    slope = (end_rate - start_rate) / ramp_s
    if abs(slope) < 1e-12:
        return work / start_rate
    return (-start_rate + math.sqrt(start_rate**2 + 2 * slope * work)) / slope


def arrival_times(shape: Shape, n: int, ramp_s: float, seed: int) -> list[float]:
    """Seconds from the start at which each of n requests is sent. A ramp maps a unit-rate process of
    the same burstiness through the ramp's cumulative rate (time rescaling)."""
    rng = random.Random(seed)
    if shape.kind == "ramp":
        unit = _cumulative(gamma_gaps(rng, 1.0, shape.burstiness, n))
        end_rate = shape.end_rate or shape.rate
        return [ramp_time(w, shape.rate, end_rate, ramp_s) for w in unit]
    return _cumulative(gamma_gaps(rng, shape.rate, shape.burstiness, n))


def _cumulative(gaps: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for gap in gaps:
        total += gap
        out.append(total)
    return out


def class_sequence(weights: Sequence[float], n: int) -> list[int]:
    """Which class each of n requests belongs to, by smooth weighted round-robin (nginx's): the counts
    follow the weights as closely as n allows at every prefix, and classes interleave."""
    current = [0.0] * len(weights)
    total = sum(weights)
    order = []
    for _ in range(n):
        for i, w in enumerate(weights):
            current[i] += w
        pick = max(range(len(weights)), key=lambda i: current[i])
        current[pick] -= total
        order.append(pick)
    return order
