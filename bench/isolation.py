"""Resource isolation: does real-time chat keep its time to first token while image jobs keep their
domain busy? The whole stack with its real default engines (tiny llama.cpp, tiny Stable Diffusion),
three times:

- `llm_ttft_p95_ms_idle`: realtime chat, nothing else running (domains on).
- `llm_ttft_p95_ms_loaded_isolated`: the same while image clients keep the image domain full, with
  domains on: `llm` and the control plane (NATS, gateway, scheduler, aggregator, monitor: the
  engine's own time to first token is the smaller part of a chat's) own CPU 0, `image` CPU 1 at
  niceness 19 and at most one job at a time.
- `llm_ttft_p95_ms_loaded_shared`: the same load with domains off (no domains file): the image
  engine's threads run on every core, beside the LLM's.

Each phase also reports the images made per second, the price the image domain pays for isolation.
Target: loaded_isolated within 10% of idle.

The bench's own clients are not the system under test: on a real fleet they sit on other machines.
Here they share the two cores, so in every phase the measured chat client runs on CPU 0 (beside the
realtime domain, where its CPU is not the image work's to take) and the image clients in a process
of their own on CPU 1. Left floating, a client waits behind the other kind's work, and the figure
includes the bench's own queueing.

Then a replayed workload on a host worker with room for two of three catalog models (no warm
minimum, unloaded after 3 s idle): `cold_starts` (requests that found their model unloaded and
waited for the placement controller to load it) and `warm_hits`, with the time to first token of
each kind.

Needs two CPU cores or more. Writes .data/bench/isolation.json and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import random
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.overhead import percentile, progress, stream_once, task_state, write_report
from contracts import streams
from services.common.bus import connect
from services.devstack import LocalStack

CHAT, IMAGE = "tiny-llama", "tiny-sd"
ISOLATED = """\
control_plane: {cpus: [0]}
domains:
  llm: {cpus: [0]}
  image: {cpus: [1], max_concurrency: 1, nice: 19}
"""
CHAT_CLIENT_CPUS, IMAGE_CLIENT_CPUS = {0}, {1}  # where the bench's own clients run, in every phase


async def chat_ttfts(client: httpx.AsyncClient, tasks: Any, runs: int, label: str) -> tuple[list[float], list[float]]:
    """Time to first token of `runs` realtime chats seen by the client, and the engine's own share
    of each (from the `tasks` bucket): whether load slows the engine or the way to it."""
    ttfts, engine = [], []
    for i in range(runs):
        rid, ttft, _, _ = await stream_once(client, 4, seed=i, model=CHAT, priority="realtime")
        ttfts.append(ttft * 1000)
        timings = (await task_state(tasks, rid)).timings
        engine.append(timings.engine_ttft_ms if timings is not None else 0.0)
        progress(label, i + 1, runs)
        await asyncio.sleep(0.02)  # a chat user's pace, not a flood
    return ttfts, engine


async def image_load(client: httpx.AsyncClient, made: Any, size: int, steps: int) -> None:
    """One image client: ask for the next image as soon as the last one is back; `made` gets the
    time each one came back."""
    body = {"model": IMAGE, "prompt": "a lighthouse at dusk", "size": f"{size}x{size}", "steps": steps,
            "response_format": "b64_json"}
    while True:
        res = await client.post("/v1/images/generations", json=body, timeout=600)
        res.raise_for_status()
        made.put(time.monotonic())


def image_clients(url: str, headers: dict[str, str], clients: int, size: int, steps: int, made: Any) -> None:
    """The image load, in a process of its own on IMAGE_CLIENT_CPUS, until it is terminated."""
    os.sched_setaffinity(0, IMAGE_CLIENT_CPUS)

    async def run() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120, headers=headers) as client:
            await asyncio.gather(*(image_load(client, made, size, steps) for _ in range(clients)))

    asyncio.run(run())


async def phase(stack: LocalStack, runs: int, clients: int, size: int, steps: int, label: str) -> dict[str, float]:
    bus = await connect(stack.nats_url, "bench-isolation")
    tasks = await bus.js.key_value(streams.KV_TASKS)
    async with httpx.AsyncClient(base_url=stack.url, timeout=120, headers=stack.headers) as client:
        for i in range(5):  # warm-up
            await stream_once(client, 2, seed=i, model=CHAT)
        if clients:
            spawn = multiprocessing.get_context("spawn")
            made = spawn.Queue()
            loader = spawn.Process(target=image_clients, daemon=True,
                                   args=(stack.url, stack.headers, clients, size, steps, made))
            loader.start()
            await asyncio.to_thread(made.get, timeout=600)  # the image domain has finished one job: it is busy
        started = time.monotonic()
        ttfts, engine = await chat_ttfts(client, tasks, runs, label)
        elapsed = time.monotonic() - started
    images = 0
    if clients:
        loader.terminate()
        loader.join()
        while not made.empty():
            images += made.get() >= started
    await bus.close()
    return {"ttft_p50_ms": round(percentile(ttfts, 50), 3), "ttft_p95_ms": round(percentile(ttfts, 95), 3),
            "engine_ttft_p50_ms": round(percentile(engine, 50), 3),
            "engine_ttft_p95_ms": round(percentile(engine, 95), 3),
            "images_per_s": round(images / elapsed, 3)}


REPLAY_CATALOG = "models:\n" + "".join(
    f"  {name}: {{engine: llama_cpp, source: tiny, modality: [chat, completion], memory_mb: 40, idle_unload_s: 3}}\n"
    for name in ("replay-a", "replay-b", "replay-c"))


def replay_trace(n: int, seed: int = 7) -> list[tuple[str, float]]:
    """(model, pause before it): a popular model, a second, a rare third, in bursts and lulls."""
    rng = random.Random(seed)
    return [(rng.choices(["replay-a", "replay-b", "replay-c"], weights=[6, 3, 1])[0],
             rng.choice([0.05, 0.05, 0.05, 0.5, 4.0])) for _ in range(n)]


async def replay(stack: LocalStack, trace: list[tuple[str, float]]) -> dict[str, Any]:
    ttfts: dict[bool, list[float]] = {True: [], False: []}
    async with httpx.AsyncClient(base_url=stack.url, timeout=120, headers=stack.headers) as client:
        for i, (model, pause) in enumerate(trace):
            await asyncio.sleep(pause)
            before = await _cold_starts(client)
            _, ttft, _, _ = await stream_once(client, 4, seed=i, model=model)
            await asyncio.sleep(0.6)  # the next queue report counts it
            ttfts[await _cold_starts(client) > before].append(ttft * 1000)
            progress("replayed workload", i + 1, len(trace))
        report = (await client.get("/v1/admin/queues")).json()
    return {"cold_starts": sum(d["cold_starts"] for d in report["data"]),
            "warm_hits": sum(d["warm_hits"] for d in report["data"]),
            "placements": report["placements"],
            "cold_ttft_p50_ms": round(percentile(ttfts[True], 50), 1) if ttfts[True] else None,
            "warm_ttft_p50_ms": round(percentile(ttfts[False], 50), 1) if ttfts[False] else None}


async def _cold_starts(client: httpx.AsyncClient) -> int:
    return sum(d["cold_starts"] for d in (await client.get("/v1/admin/queues")).json()["data"])


def run_replay(requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data:
        catalog = Path(data) / "catalog.yaml"
        catalog.write_text(REPLAY_CATALOG)
        env = {"MODALMESH_LOG_LEVEL": "WARNING", "MODALMESH_HOST_MEMORY_MB": "100",
               "MODALMESH_SCHEDULER_CATALOG_FILE": str(catalog), "MODALMESH_SCHEDULER_PLACEMENT_INTERVAL_S": "0.25"}
        with LocalStack(data=Path(data), env=env, modalities="text") as stack:
            return asyncio.run(replay(stack, replay_trace(requests)))


def run_phase(domains: str | None, **kwargs: Any) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as data:
        env = {"MODALMESH_LOG_LEVEL": "WARNING", "MODALMESH_WORKER_SLOTS": "1"}
        if domains is not None:
            (Path(data) / "domains.yaml").write_text(domains)
            env["MODALMESH_DOMAINS_FILE"] = str(Path(data) / "domains.yaml")
        with LocalStack(data=Path(data), env=env, modalities="text,image") as stack:
            every_cpu = os.sched_getaffinity(0)
            os.sched_setaffinity(0, CHAT_CLIENT_CPUS)  # after the stack started: its processes keep their own
            try:
                return asyncio.run(phase(stack, **kwargs))
            finally:
                os.sched_setaffinity(0, every_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="chats per phase")
    parser.add_argument("--image-clients", type=int, default=3, help="image clients that keep the domain full")
    parser.add_argument("--size", type=int, default=64,
                        help="image side (the tiny UNet attends at full size: 128 is 6x slower)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--replay", type=int, default=60, help="requests in the replayed workload")
    parser.add_argument("--out", type=Path, default=Path(".data/bench/isolation.json"))
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("isolation needs two CPU cores or more: one for chat, one for images")
    load = {"runs": args.runs, "size": args.size, "steps": args.steps}
    idle = run_phase(ISOLATED, clients=0, label="idle (domains on)", **load)
    isolated = run_phase(ISOLATED, clients=args.image_clients, label="image load, domains on", **load)
    shared = run_phase(None, clients=args.image_clients, label="image load, domains off", **load)
    replayed = run_replay(args.replay)
    result = {
        "llm_ttft_p95_ms_idle": idle["ttft_p95_ms"],
        "llm_ttft_p95_ms_loaded_isolated": isolated["ttft_p95_ms"],
        "llm_ttft_p95_ms_loaded_shared": shared["ttft_p95_ms"],
        "isolated_vs_idle": round(isolated["ttft_p95_ms"] / idle["ttft_p95_ms"], 4),
        "shared_vs_idle": round(shared["ttft_p95_ms"] / idle["ttft_p95_ms"], 4),
        "cold_starts": replayed["cold_starts"],
        "warm_hits": replayed["warm_hits"],
        "phases": {"idle": idle, "loaded_isolated": isolated, "loaded_shared": shared},
        "replay": {**replayed, "requests": args.replay, "host_memory_mb": 100, "catalog": REPLAY_CATALOG},
        "targets": {"isolated_vs_idle": 1.10},
        "setup": {**load, "image_clients": args.image_clients, "domains_on": ISOLATED, "cpus": os.cpu_count(),
                  "chat_client_cpus": sorted(CHAT_CLIENT_CPUS), "image_client_cpus": sorted(IMAGE_CLIENT_CPUS),
                  "machine": platform.machine(), "python": platform.python_version(), "run_id": uuid.uuid4().hex[:8]},
    }
    write_report(args.out, result)


if __name__ == "__main__":
    main()
