"""Policy benchmark on a SIMULATED fleet: the same seeded workload (Poisson arrivals at 80% of the
fleet's capacity, mixed prompt and answer lengths) against each scheduling policy, on a fresh real
nats-server each time. Writes .data/bench/policies.json and a plot of the latency distributions.

Also kills a node halfway through a weighted run (how fast it leaves the pool, what is lost), and
measures the scheduler's decision time with 64 workers. Latencies are in simulated seconds (real
seconds x time scale); a request that misses its deadline counts at its deadline in the percentiles
and in `failed`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.fleet_sim import MODEL, SimFleet
from bench.overhead import write_report
from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, Sampling
from contracts.results import FinalChunk
from contracts.telemetry import GpuInfo, GpuSample, NodeCapabilities, NodeTelemetry
from contracts.workers import WorkerStatus
from services.common.runtime import run
from services.devstack import NatsServer
from services.scheduler.app import Scheduler
from services.scheduler.policy import Policy
from services.scheduler.settings import SchedulerSettings
from services.workers.engines.simulated import PROFILES, SpeedProfile

ANSWER_TOKENS = (32, 64, 128, 256)
PROMPT_WORDS = (16, 64, 256, 1024)
LAYOUT = [(PROFILES["h100"], 2), (PROFILES["rtx3060"], 2), (PROFILES["orin"], 2), (PROFILES["cpu"], 2)]


@dataclass(frozen=True)
class Job:
    at_s: float
    prompt_words: int
    max_tokens: int


def mean_service_s(p: SpeedProfile) -> float:
    prompt = statistics.fmean(PROMPT_WORDS)
    return p.ttft_s * (0.5 + prompt / 1024) + statistics.fmean(ANSWER_TOKENS) / p.tokens_per_s


def capacity_rps(layout: list[tuple[SpeedProfile, int]]) -> float:
    return sum(count * p.slots / mean_service_s(p) for p, count in layout)


def workload(seed: int, rate: float, duration_s: float) -> list[Job]:
    rng = random.Random(seed)
    jobs: list[Job] = []
    t = 0.0
    while True:
        t += rng.expovariate(rate)
        if t >= duration_s:
            return jobs
        jobs.append(Job(t, rng.choice(PROMPT_WORDS), rng.choice(ANSWER_TOKENS)))


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def one_request(fleet: SimFleet, job: Job, deadline_s: float) -> tuple[float, bool]:
    assert fleet.relay is not None
    scale = fleet.time_scale
    request = ChatRequest(
        request_id=f"sim-{uuid.uuid4().hex}",
        model=MODEL,
        stream=True,
        deadline_ms=now_ms() + int(deadline_s / scale * 1000),
        messages=(ChatMessage(role="user", content=" ".join(["word"] * job.prompt_words)),),
        sampling=Sampling(max_tokens=job.max_tokens),
    )
    started = time.monotonic()
    try:
        stream = await fleet.relay.submit(request)
        try:
            async for chunk in stream:
                if isinstance(chunk, FinalChunk):
                    return (time.monotonic() - started) * scale, True
        finally:
            await stream.close()
    except Exception:
        pass
    return deadline_s, False


async def run_policy(policy: Policy, jobs: list[Job], args: argparse.Namespace) -> tuple[dict[str, Any], list[float]]:
    with tempfile.TemporaryDirectory() as store:
        server = NatsServer(Path(store)).start()
        fleet = SimFleet(server.url, policy, LAYOUT, time_scale=args.time_scale)
        try:
            await fleet.start()
            began = time.monotonic()
            tasks = []
            for i, job in enumerate(jobs):
                await asyncio.sleep(max(0.0, began + job.at_s / args.time_scale - time.monotonic()))
                tasks.append(asyncio.create_task(one_request(fleet, job, args.deadline)))
                progress(policy.value, i + 1, len(jobs))
            results = await asyncio.gather(*tasks)
            wall = (time.monotonic() - began) * args.time_scale
        finally:
            await fleet.stop()
            server.stop()
    latencies = [lat for lat, _ in results]
    completed = sum(ok for _, ok in results)
    return {
        "p50_ms": round(pct(latencies, 50) * 1000, 1),
        "p99_ms": round(pct(latencies, 99) * 1000, 1),
        "throughput_rps": round(completed / wall, 3),
        "completed": completed,
        "failed": len(results) - completed,
    }, latencies


async def kill_mid_run(jobs: list[Job], args: argparse.Namespace) -> dict[str, Any]:
    """Under the weighted policy and the same workload, kill an RTX 3060 node halfway through: how long
    until the scheduler stops offering it work, and what the run loses (no failover yet: requests in
    flight on the dead node end at their deadline)."""
    half = jobs[-1].at_s / 2 if jobs else 0.0
    with tempfile.TemporaryDirectory() as store:
        server = NatsServer(Path(store)).start()
        fleet = SimFleet(server.url, Policy.weighted, LAYOUT, time_scale=args.time_scale)
        try:
            await fleet.start()
            victim = next(n for n in fleet.nodes if n.profile.name == "rtx3060")
            began = time.monotonic()
            tasks: list[asyncio.Task[tuple[float, bool]]] = []
            left_pool_s = None
            for i, job in enumerate(jobs):
                await asyncio.sleep(max(0.0, began + job.at_s / args.time_scale - time.monotonic()))
                tasks.append(asyncio.create_task(one_request(fleet, job, args.deadline)))
                if left_pool_s is None and job.at_s >= half:
                    left_pool_s = await fleet.kill_and_time_exit(victim)
                progress("kill mid-run", i + 1, len(jobs))
            results = await asyncio.gather(*tasks)
        finally:
            await fleet.stop()
            server.stop()
    return {
        "node": victim.name,
        "left_pool_s": round(left_pool_s or 0.0, 3),
        "completed": sum(ok for _, ok in results),
        "failed": sum(not ok for _, ok in results),
    }


def decision_ms_p99(workers: int = 64, decisions: int = 5000) -> float:
    """The scheduler's own `decide` (snapshot and weighted policy) over a 64-worker fleet."""
    scheduler = Scheduler(SchedulerSettings(policy=Policy.weighted), bus=None)  # type: ignore[arg-type]
    now = time.monotonic()
    profiles = list(PROFILES.values())
    for i in range(workers):
        p = profiles[i % len(profiles)]
        node = f"n{i}"
        scheduler.fleet.workers.observe_status(
            WorkerStatus(
                worker_id=f"w{i}",
                node=node,
                engine="simulated",
                models=(MODEL,),
                slots_total=p.slots,
                slots_free=p.slots,
                outstanding=i % 3,
            ),
            now,
        )
        gpu = GpuSample(index=0, util_pct=30, mem_used_mb=1000, mem_total_mb=max(1.0, p.vram_mb), temp_c=55)
        scheduler.fleet.nodes.observe(
            node, NodeTelemetry(node=node, cpu_pct=5, mem_used_mb=1, mem_total_mb=2, gpus=(gpu,)), now
        )
        scheduler.fleet.capabilities[node] = NodeCapabilities(
            node=node,
            arch="x86_64",
            cpu_cores=8,
            mem_total_mb=1,
            gpus=(GpuInfo(index=0, name=p.gpu_name, vram_mb=p.vram_mb, fp16_tflops=100.0),),
        )
    request = ChatRequest(request_id="r", model=MODEL, deadline_ms=0, messages=(ChatMessage(role="user", content="x"),))
    for _ in range(decisions):
        scheduler.dispatcher.decide(request)
    return pct(scheduler.dispatcher.decision_seconds, 99) * 1000


def progress(label: str, done: int, total: int) -> None:
    if done != total and done % max(1, total // 40):
        return
    bar = "#" * (30 * done // total)
    sys.stderr.write(f"\r{label:<18} [{bar:<30}] {done}/{total}" + ("\n" if done == total else ""))
    sys.stderr.flush()


def plot(samples: dict[str, list[float]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cdf, box) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, values in samples.items():
        ordered = sorted(values)
        cdf.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=name)
    cdf.set_xscale("log")
    cdf.set_xlabel("latency, request to final (s, simulated)")
    cdf.set_ylabel("fraction of requests")
    cdf.set_title("Latency CDF per policy")
    cdf.legend()
    cdf.grid(alpha=0.3)
    box.boxplot(list(samples.values()), tick_labels=list(samples), whis=(1, 99), showfliers=False)
    box.set_yscale("log")
    box.set_ylabel("latency (s, simulated); whiskers P1-P99")
    box.set_title("Same seeded workload at 80% of fleet capacity (SIMULATION)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="simulated seconds of arrivals")
    parser.add_argument("--load", type=float, default=0.8, help="arrival rate as a fraction of capacity")
    parser.add_argument("--deadline", type=float, default=60.0, help="per request, simulated seconds")
    parser.add_argument("--time-scale", type=float, default=2.0, help="simulated seconds per real second")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(".data/bench/policies.json"))
    args = parser.parse_args()

    rate = args.load * capacity_rps(LAYOUT)
    jobs = workload(args.seed, rate, args.duration)
    result: dict[str, Any] = {"policies": {}}
    samples: dict[str, list[float]] = {}

    async def everything() -> None:
        for policy in (Policy.weighted, Policy.least_outstanding, Policy.round_robin, Policy.random):
            result["policies"][policy.value], samples[policy.value] = await run_policy(policy, jobs, args)
        result["kill_mid_run"] = await kill_mid_run(jobs, args)
        result["dead_node_left_pool_s"] = result["kill_mid_run"]["left_pool_s"]

    run(everything)
    result["decision_ms_p99_64_workers"] = round(decision_ms_p99(), 4)
    p = result["policies"]
    result["weighted_p99_vs_round_robin"] = round(p["weighted"]["p99_ms"] / p["round_robin"]["p99_ms"], 3)
    result["weighted_p99_vs_least_outstanding"] = round(p["weighted"]["p99_ms"] / p["least_outstanding"]["p99_ms"], 3)
    result["workload"] = {
        "simulation": True,
        "seed": args.seed,
        "requests": len(jobs),
        "arrival_rate_rps": round(rate, 3),
        "load_of_capacity": args.load,
        "capacity_rps": round(capacity_rps(LAYOUT), 3),
        "duration_s": args.duration,
        "deadline_s": args.deadline,
        "time_scale": args.time_scale,
        "nodes": {f"{prof.name}": count for prof, count in LAYOUT},
        "answer_tokens": ANSWER_TOKENS,
        "prompt_words": PROMPT_WORDS,
    }
    write_report(args.out, result)
    plot(samples, args.out.with_suffix(".png"))
    print(f"plot: {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
