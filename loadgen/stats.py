"""Figures from records, per class and in all: pure functions, no I/O and no clock."""

from __future__ import annotations

import math
import statistics
import struct
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from loadgen.record import Record
from loadgen.spec import TEXT_KINDS, Slo

QUANTILES = (50, 90, 99)


def percentile(values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks, as numpy's default."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = q / 100 * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: Sequence[float], scale: float = 1000.0) -> dict[str, float | int]:
    """mean, p50, p90, p99, max and count, in ms by default (values in seconds)."""
    if not values:
        return {"n": 0}
    out: dict[str, float | int] = {"n": len(values), "mean": statistics.fmean(values) * scale}
    for q in QUANTILES:
        out[f"p{q}"] = percentile(values, q) * scale
    out["max"] = max(values) * scale
    return out


def tpot(record: Record) -> float | None:
    """Time per output token after the first, vLLM's definition."""
    if record.ttft is None or record.output_tokens < 2:
        return None
    return (record.latency - record.ttft) / (record.output_tokens - 1)


def wav_seconds(data: bytes) -> float | None:
    """Seconds of audio in a WAV file's bytes, from its `fmt ` chunk and the bytes after `data`. The size in
    the `data` header is ignored: a streamed WAV writes an open-ended one."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return None
    offset, byte_rate = 12, 0
    while offset + 8 <= len(data):
        chunk, size = data[offset : offset + 4], struct.unpack_from("<I", data, offset + 4)[0]
        if chunk == b"fmt ":
            byte_rate = struct.unpack_from("<I", data, offset + 16)[0]
        elif chunk == b"data":
            return (len(data) - offset - 8) / byte_rate if byte_rate else None
        offset += 8 + size
    return None


def measured(records: Iterable[Record]) -> list[Record]:
    return [r for r in records if not r.warmup]


def window(records: Sequence[Record]) -> float:
    """Seconds from the first measured start to the last measured end."""
    if not records:
        return 0.0
    return max(r.end for r in records) - min(r.start for r in records)


def is_good(record: Record, slo: Slo) -> bool:
    """A request that succeeded and met every target its class sets."""
    if not record.ok:
        return False
    checks = [
        (slo.ttft_ms, record.ttft),
        (slo.tpot_ms, tpot(record)),
        (slo.e2e_ms, record.latency),
        (slo.first_byte_ms, record.first_byte - record.start if record.first_byte is not None else None),
    ]
    if slo.itl_ms is not None and record.itls and max(record.itls) * 1000 > slo.itl_ms:
        return False
    return all(target is None or (value is not None and value * 1000 <= target) for target, value in checks)


def errors_by_code(records: Iterable[Record]) -> dict[str, int]:
    return dict(Counter(r.error or f"http_{r.status}" for r in records if not r.ok))


def summarize_class(records: Sequence[Record], kind: str, slo: Slo) -> dict[str, Any]:
    """The figures of one class's measured records."""
    done = [r for r in records if r.ok]
    span = window(records)
    rate = lambda n: n / span if span > 0 else 0.0  # noqa: E731
    out: dict[str, Any] = {
        "kind": kind,
        "requests": len(records),
        "completed": len(done),
        "failed": len(records) - len(done),
        "errors": errors_by_code(records),
        "duration_s": span,
        "requests_per_s": rate(len(done)),
        "e2e_ms": distribution([r.latency for r in done]),
    }
    good = [r for r in done if is_good(r, slo)]
    out["goodput_per_s"] = rate(len(good))
    out["good_fraction"] = len(good) / len(records) if records else 0.0
    if kind in TEXT_KINDS:
        out["ttft_ms"] = distribution([r.ttft for r in done if r.ttft is not None])
        out["itl_ms"] = distribution([itl for r in done for itl in r.itls])
        out["tpot_ms"] = distribution([t for r in done if (t := tpot(r)) is not None])
        out["input_tokens"] = sum(r.input_tokens for r in done)
        out["output_tokens"] = sum(r.output_tokens for r in done)
        out["output_tokens_per_s"] = rate(out["output_tokens"])
    elif kind == "embedding":
        out["inputs_per_s"] = rate(sum(r.items for r in done))
        out["latency_ms"] = out["e2e_ms"]
    elif kind == "image":
        out["images_per_s"] = rate(sum(r.items for r in done))
        out["latency_ms"] = out["e2e_ms"]
        out["first_progress_ms"] = distribution(
            [r.first_progress - r.start for r in done if r.first_progress is not None]
        )
    elif kind == "speech":
        out["first_byte_ms"] = distribution([r.first_byte - r.start for r in done if r.first_byte is not None])
        out["real_time_factor"] = distribution([r.latency / r.audio_s for r in done if r.audio_s], scale=1.0)
        out["audio_s_per_s"] = rate(sum(r.audio_s or 0.0 for r in done))
    elif kind == "video":
        out["queue_wait_ms"] = distribution([r.queue_wait for r in done if r.queue_wait is not None])
        out["completion_ms"] = out["e2e_ms"]
    return out


def summarize(records: Sequence[Record], classes: Mapping[str, tuple[str, Slo]]) -> dict[str, Any]:
    """Per class (name -> (kind, slo)) and in all, warm-up excluded."""
    kept = measured(records)
    per_class = {
        name: summarize_class([r for r in kept if r.cls == name], kind, slo) for name, (kind, slo) in classes.items()
    }
    done = [r for r in kept if r.ok]
    span = window(kept)
    overall = {
        "requests": len(kept),
        "completed": len(done),
        "failed": len(kept) - len(done),
        "warmup_requests": len(records) - len(kept),
        "errors": errors_by_code(kept),
        "duration_s": span,
        "requests_per_s": len(done) / span if span > 0 else 0.0,
        "goodput_per_s": sum(c["goodput_per_s"] for c in per_class.values()),
        "output_tokens_per_s": sum(c.get("output_tokens_per_s", 0.0) for c in per_class.values()),
        "e2e_ms": distribution([r.latency for r in done]),
    }
    return {"classes": per_class, "overall": overall}


def meets_slo(summary: dict[str, Any], slo: Slo) -> bool:
    """A class meets its targets when nothing failed and the SLO's percentile of each target figure is
    within it (the figure GuideLLM's and vLLM's SLO runs hold)."""
    if summary["failed"] or not summary["completed"]:
        return False
    targets = {
        "ttft_ms": slo.ttft_ms,
        "tpot_ms": slo.tpot_ms,
        "itl_ms": slo.itl_ms,
        "e2e_ms": slo.e2e_ms,
        "first_byte_ms": slo.first_byte_ms,
    }
    for figure, target in targets.items():
        if target is None:
            continue
        dist = summary.get(figure) or {}
        if not dist.get("n"):
            return False
        if percentile_of(dist, slo.quantile) > target:
            return False
    return True


def percentile_of(dist: dict[str, float | int], q: float) -> float:
    """The nearest reported percentile at or above q (p50, p90, p99, max)."""
    for known in QUANTILES:
        if q <= known:
            return float(dist[f"p{known}"])
    return float(dist["max"])


def throughput_series(records: Sequence[Record], bucket_s: float) -> list[dict[str, float]]:
    """Completed requests and output tokens per second, in buckets of the run's time by end time."""
    done = [r for r in records if r.ok]
    if not done:
        return []
    buckets = math.floor(max(r.end for r in done) / bucket_s) + 1
    requests = [0] * buckets
    tokens = [0] * buckets
    for r in done:
        i = math.floor(r.end / bucket_s)
        requests[i] += 1
        tokens[i] += r.output_tokens
    return [
        {"t": i * bucket_s, "requests_per_s": requests[i] / bucket_s, "output_tokens_per_s": tokens[i] / bucket_s}
        for i in range(buckets)
    ]
