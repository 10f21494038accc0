"""Resource isolation: does real-time chat keep its time to first token while image jobs keep their
domain busy? The whole stack with its real default engines (tiny llama.cpp, tiny Stable Diffusion),
twice:

- domains on: `llm` owns CPU 0, `image` CPU 1 at most one job at a time, at niceness 19 and
  SCHED_IDLE, so the control plane (NATS, gateway, scheduler, aggregator, monitor: the engine's own
  time to first token is the smaller part of a chat's) takes either core the moment it wakes.
  Pinning the control plane to CPU 0 instead measured slower, idle and loaded. Realtime chats in
  blocks that take turns: a block with nothing else running (`llm_ttft_p95_ms_idle`), then one
  while image clients keep the image domain full (`llm_ttft_p95_ms_loaded_isolated`), and so on.
- domains off (no domains file): the image engine's threads run on every core, beside the LLM's.
  The same turns give `llm_ttft_p95_ms_loaded_shared`, and its own idle blocks.

Turns, not one phase after the other: this VM's speed drifts by a fifth within minutes, and phases
minutes apart compared two machines. Each setting also reports the images made per second under
load, the price the image domain pays for isolation. Target: loaded_isolated within 10% of idle.

The bench's own clients are not the system under test: on a real fleet they sit on other machines.
Here they share the two cores, so in every turn the measured chat client runs on CPU 0 (beside the
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
domains:
  llm: {cpus: [0]}
  image: {cpus: [1], max_concurrency: 1, nice: 19, sched_idle: true}
"""
CHAT_CLIENT_CPUS, IMAGE_CLIENT_CPUS = {0}, {1}  # where the bench's own clients run, in every phase


async def chat_ttfts(client: httpx.AsyncClient, tasks: Any, runs: int) -> tuple[list[float], list[float]]:
    """Time to first token of `runs` realtime chats seen by the client, and the engine's own share
    of each (from the `tasks` bucket): whether load slows the engine or the way to it."""
    ttfts, engine = [], []
    for i in range(runs):
        rid, ttft, _, _ = await stream_once(client, 4, seed=i, model=CHAT, priority="realtime")
        ttfts.append(ttft * 1000)
        timings = (await task_state(tasks, rid)).timings
        engine.append(timings.engine_ttft_ms if timings is not None else 0.0)
        await asyncio.sleep(0.02)  # a chat user's pace, not a flood
    return ttfts, engine


async def image_load(client: httpx.AsyncClient, on: Any, busy: Any, made: Any, size: int, steps: int) -> None:
    """One image client: while `on` is set, ask for the next image as soon as the last one is back.
    `busy` counts the clients waiting for an image, `made` the images made."""
    body = {
        "model": IMAGE,
        "prompt": "a lighthouse at dusk",
        "size": f"{size}x{size}",
        "steps": steps,
        "response_format": "b64_json",
    }
    while True:
        if not on.is_set():
            await asyncio.sleep(0.02)
            continue
        with busy.get_lock():
            busy.value += 1
        try:
            res = await client.post("/v1/images/generations", json=body, timeout=600)
            res.raise_for_status()
            with made.get_lock():
                made.value += 1
        finally:
            with busy.get_lock():
                busy.value -= 1


def image_clients(
    url: str, headers: dict[str, str], clients: int, size: int, steps: int, on: Any, busy: Any, made: Any
) -> None:
    """The image load, in a process of its own on IMAGE_CLIENT_CPUS, until it is terminated."""
    os.sched_setaffinity(0, IMAGE_CLIENT_CPUS)

    async def run() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120, headers=headers) as client:
            await asyncio.gather(*(image_load(client, on, busy, made, size, steps) for _ in range(clients)))

    asyncio.run(run())


class ImageLoad:
    """Image clients switched on and off between blocks of chats."""

    def __init__(self, stack: LocalStack, clients: int, size: int, steps: int) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.on, self.busy, self.made = spawn.Event(), spawn.Value("i", 0), spawn.Value("i", 0)
        self.process = spawn.Process(
            target=image_clients,
            daemon=True,
            args=(stack.url, stack.headers, clients, size, steps, self.on, self.busy, self.made),
        )
        self._switched, self._before = 0.0, 0

    def __enter__(self) -> ImageLoad:
        self.process.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.process.terminate()
        self.process.join()

    async def start(self) -> None:
        """Switch the clients on; back once an image is made: the domain is busy."""
        self._before = self.made.value
        self.on.set()
        self._switched = time.monotonic()
        while self.made.value == self._before:  # noqa: ASYNC110 - a counter shared with another process
            await asyncio.sleep(0.02)

    async def stop(self) -> tuple[int, float]:
        """Switch the clients off; back once the last image asked for is made (the domain is idle),
        with the images made since the switch-on and the seconds it took (the domain full all along)."""
        self.on.clear()
        while self.busy.value:  # noqa: ASYNC110 - a counter shared with another process
            await asyncio.sleep(0.05)
        return self.made.value - self._before, time.monotonic() - self._switched


async def turns(
    stack: LocalStack, runs: int, block: int, clients: int, size: int, steps: int, label: str
) -> dict[str, dict[str, float]]:
    """`runs` chats with nothing else running and `runs` under image load, in blocks of `block`
    that take turns."""
    bus = await connect(stack.nats_url, "bench-isolation")
    tasks = await bus.js.key_value(streams.KV_TASKS)
    measured: dict[bool, tuple[list[float], list[float]]] = {False: ([], []), True: ([], [])}
    images, image_seconds = 0, 0.0  # made in the loaded turns, and their length
    async with httpx.AsyncClient(base_url=stack.url, timeout=120, headers=stack.headers) as client:
        with ImageLoad(stack, clients, size, steps) as load:
            await load.start()  # warm-up: both engines' first requests, as every idle turn follows a loaded one
            await load.stop()
            for i in range(5):
                await stream_once(client, 2, seed=i, model=CHAT)
            for done in range(0, 2 * runs, block):
                loaded = (done // block) % 2 == 1
                if loaded:
                    await load.start()
                ttfts, engine = await chat_ttfts(client, tasks, block)
                measured[loaded][0].extend(ttfts)
                measured[loaded][1].extend(engine)
                if loaded:
                    made, seconds = await load.stop()
                    images, image_seconds = images + made, image_seconds + seconds
                progress(label, done + block, 2 * runs)
    await bus.close()

    def figures(ttfts: list[float], engine: list[float], images_per_s: float) -> dict[str, float]:
        return {
            "ttft_p50_ms": round(percentile(ttfts, 50), 3),
            "ttft_p95_ms": round(percentile(ttfts, 95), 3),
            "engine_ttft_p50_ms": round(percentile(engine, 50), 3),
            "engine_ttft_p95_ms": round(percentile(engine, 95), 3),
            "images_per_s": round(images_per_s, 3),
        }

    return {
        "idle": figures(*measured[False], 0.0),
        "loaded": figures(*measured[True], images / image_seconds if image_seconds else 0.0),
    }


REPLAY_CATALOG = "models:\n" + "".join(
    f"  {name}: {{engine: llama_cpp, source: tiny, modality: [chat, completion], memory_mb: 40, idle_unload_s: 3}}\n"
    for name in ("replay-a", "replay-b", "replay-c")
)


def replay_trace(n: int, seed: int = 7) -> list[tuple[str, float]]:
    """(model, pause before it): a popular model, a second, a rare third, in bursts and lulls."""
    rng = random.Random(seed)
    return [
        (
            rng.choices(["replay-a", "replay-b", "replay-c"], weights=[6, 3, 1])[0],
            rng.choice([0.05, 0.05, 0.05, 0.5, 4.0]),
        )
        for _ in range(n)
    ]


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
    return {
        "cold_starts": sum(d["cold_starts"] for d in report["data"]),
        "warm_hits": sum(d["warm_hits"] for d in report["data"]),
        "placements": report["placements"],
        "cold_ttft_p50_ms": round(percentile(ttfts[True], 50), 1) if ttfts[True] else None,
        "warm_ttft_p50_ms": round(percentile(ttfts[False], 50), 1) if ttfts[False] else None,
    }


async def _cold_starts(client: httpx.AsyncClient) -> int:
    return sum(d["cold_starts"] for d in (await client.get("/v1/admin/queues")).json()["data"])


def run_replay(requests: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data:
        catalog = Path(data) / "catalog.yaml"
        catalog.write_text(REPLAY_CATALOG)
        env = {
            "MODALMESH_LOG_LEVEL": "WARNING",
            "MODALMESH_HOST_MEMORY_MB": "100",
            "MODALMESH_SCHEDULER_CATALOG_FILE": str(catalog),
            "MODALMESH_SCHEDULER_PLACEMENT_INTERVAL_S": "0.25",
        }
        with LocalStack(data=Path(data), env=env, modalities="text") as stack:
            return asyncio.run(replay(stack, replay_trace(requests)))


def run_turns(domains: str | None, **kwargs: Any) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as data:
        env = {"MODALMESH_LOG_LEVEL": "WARNING", "MODALMESH_WORKER_SLOTS": "1"}
        if domains is not None:
            (Path(data) / "domains.yaml").write_text(domains)
            env["MODALMESH_DOMAINS_FILE"] = str(Path(data) / "domains.yaml")
        with LocalStack(data=Path(data), env=env, modalities="text,image") as stack:
            every_cpu = os.sched_getaffinity(0)
            os.sched_setaffinity(0, CHAT_CLIENT_CPUS)  # after the stack started: its processes keep their own
            try:
                return asyncio.run(turns(stack, **kwargs))
            finally:
                os.sched_setaffinity(0, every_cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="chats idle and as many under load, per setting")
    parser.add_argument("--block", type=int, default=25, help="chats per turn")
    parser.add_argument("--image-clients", type=int, default=3, help="image clients that keep the domain full")
    parser.add_argument(
        "--size", type=int, default=64, help="image side (the tiny UNet attends at full size: 128 is 6x slower)"
    )
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--replay", type=int, default=60, help="requests in the replayed workload")
    parser.add_argument("--out", type=Path, default=Path(".data/bench/isolation.json"))
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) < 2:
        raise SystemExit("isolation needs two CPU cores or more: one for chat, one for images")
    load = {
        "runs": args.runs,
        "block": args.block,
        "clients": args.image_clients,
        "size": args.size,
        "steps": args.steps,
    }
    on = run_turns(ISOLATED, label="domains on: idle / image load", **load)
    off = run_turns(None, label="domains off: idle / image load", **load)
    replayed = run_replay(args.replay)
    result = {
        "llm_ttft_p95_ms_idle": on["idle"]["ttft_p95_ms"],
        "llm_ttft_p95_ms_loaded_isolated": on["loaded"]["ttft_p95_ms"],
        "llm_ttft_p95_ms_loaded_shared": off["loaded"]["ttft_p95_ms"],
        "isolated_vs_idle": round(on["loaded"]["ttft_p95_ms"] / on["idle"]["ttft_p95_ms"], 4),
        # Against the idle turns of the same stack (domains off), measured beside it.
        "shared_vs_idle": round(off["loaded"]["ttft_p95_ms"] / off["idle"]["ttft_p95_ms"], 4),
        "cold_starts": replayed["cold_starts"],
        "warm_hits": replayed["warm_hits"],
        "phases": {
            "idle": on["idle"],
            "loaded_isolated": on["loaded"],
            "idle_domains_off": off["idle"],
            "loaded_shared": off["loaded"],
        },
        "replay": {**replayed, "requests": args.replay, "host_memory_mb": 100, "catalog": REPLAY_CATALOG},
        "targets": {"isolated_vs_idle": 1.10},
        "setup": {
            **load,
            "domains_on": ISOLATED,
            "cpus": os.cpu_count(),
            "chat_client_cpus": sorted(CHAT_CLIENT_CPUS),
            "image_client_cpus": sorted(IMAGE_CLIENT_CPUS),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "run_id": uuid.uuid4().hex[:8],
        },
    }
    write_report(args.out, result)


if __name__ == "__main__":
    main()
