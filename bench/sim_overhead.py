"""Control-plane overhead with the SIMULATED engine, for machines without llama.cpp (the GPU proof):
the relay the gateway uses, the real scheduler, aggregator and worker runner, in one process on a
real nats-server, serving a simulated engine whose every answer takes no time. What a request waits
is then the control plane alone: JetStream hops, (de)serialising, scheduling, merging.

- `ttft_ms_*`: submit to first token at the relay, one request at a time.
- `ttft_ms_at_<n>_*`: the same with n clients at once, each sending its next request when its last
  one finished, and the requests finished per second.

Writes .data/bench/sim_overhead.json (or --out) labelled with the machine it ran on.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.fleet_sim import MODEL, SimFleet
from bench.overhead import percentile, write_report
from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, Sampling
from contracts.results import DeltaChunk, FinalChunk
from services.common.runtime import run
from services.devstack import NatsServer
from services.scheduler.policy import Policy
from services.workers.engines.simulated import SpeedProfile

# An engine that answers at once: every millisecond measured is the control plane's.
INSTANT = SpeedProfile("instant", "", tokens_per_s=1e9, ttft_s=0.0, slots=64, vram_mb=0)


async def one(fleet: SimFleet, max_tokens: int) -> tuple[float, float]:
    """Seconds from submit to the first token and to the final chunk, at the relay."""
    assert fleet.relay is not None
    request = ChatRequest(
        request_id=f"ovh-{uuid.uuid4().hex}",
        model=MODEL,
        stream=True,
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content="Tell me about the sea."),),
        sampling=Sampling(max_tokens=max_tokens),
    )
    started = time.perf_counter()
    first: float | None = None
    stream = await fleet.relay.submit(request)
    try:
        async for chunk in stream:
            if isinstance(chunk, DeltaChunk) and first is None:
                first = time.perf_counter() - started
            if isinstance(chunk, FinalChunk):
                total = time.perf_counter() - started
                return (first if first is not None else total), total
    finally:
        await stream.close()
    raise RuntimeError(f"{request.request_id}: the stream ended without a final chunk")


async def in_turn(fleet: SimFleet, max_tokens: int, count: int) -> list[float]:
    """One client's `count` requests, each sent when the one before it finished: their TTFTs."""
    return [(await one(fleet, max_tokens))[0] for _ in range(count)]


def figures(ttfts: list[float], prefix: str) -> dict[str, float]:
    ms = [t * 1000 for t in ttfts]
    return {
        f"{prefix}_p50": round(percentile(ms, 50), 3),
        f"{prefix}_p99": round(percentile(ms, 99), 3),
        f"{prefix}_mean": round(statistics.fmean(ms), 3),
    }


async def measure(url: str, runs: int, concurrency: list[int], max_tokens: int) -> dict[str, Any]:
    fleet = SimFleet(url, Policy.weighted, [(INSTANT, 1)])
    try:
        await fleet.start()
        for _ in range(20):  # warm: connections, consumers, first-use imports
            await one(fleet, max_tokens)
        result: dict[str, Any] = figures([(await one(fleet, max_tokens))[0] for _ in range(runs)], "ttft_ms")
        for n in concurrency:
            each = max(1, runs // n)
            began = time.perf_counter()
            streams = await asyncio.gather(*(in_turn(fleet, max_tokens, each) for _ in range(n)))
            wall = time.perf_counter() - began
            result |= figures([ttft for stream in streams for ttft in stream], f"ttft_ms_at_{n}")
            result[f"requests_per_s_at_{n}"] = round(n * each / wall, 1)
        return result
    finally:
        await fleet.stop()


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    label: dict[str, Any] = {
        "host": socket.gethostname(),
        "cpu_cores": os.cpu_count(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "processor": platform.processor() or None,
    }
    try:
        from services.monitor.sources.nvml import NvmlSource

        source = NvmlSource()
        if source.open() is None:
            label["gpus"] = [g.name for g in source.static().gpus]
            source.close()
    except ImportError:
        pass
    return label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--concurrency", default="8,32", help="streams at once, comma separated")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--label", default="", help="what to call this machine in the report")
    parser.add_argument("--out", type=Path, default=Path(".data/bench/sim_overhead.json"))
    args = parser.parse_args()
    levels = [int(n) for n in args.concurrency.split(",") if n.strip()]
    with tempfile.TemporaryDirectory() as store:
        server = NatsServer(store=Path(store)).start()
        try:
            result = run(lambda: measure(server.url, args.runs, levels, args.max_tokens))
        finally:
            server.stop()
    setup = {"runs": args.runs, "concurrency": levels, "max_tokens": args.max_tokens, "engine": "simulated, instant"}
    report = {**result, "setup": setup, "machine": {"label": args.label, **machine()}}
    write_report(args.out, report)


if __name__ == "__main__":
    main()
