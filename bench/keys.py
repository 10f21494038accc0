"""Cost of per-key limits and how fast a key made or revoked reaches another gateway, on a real nats-server.

- `take_ms_*`: one rate-limit take (rpm and tpm) of a key only this gateway spends: one compare-and-set.
- `take_contended_ms_*`: two gateways (two connections) spending one key in turns, so every take
  first loses the race to the other's write: a compare-and-set, a read and another.
- `key_visible_ms_*` / `revoke_seen_ms_*`: from a key's create (revoke) on one gateway's store to the
  other gateway's ring holding it (dropping it), through the `keys` bucket's watcher.
- Through the whole stack (`make run`'s, the tiny llama, the response cache on), streamed chats'
  time to first content: `ttft_unlimited_ms_*` and `ttft_limited_ms_*` (a key with rpm and tpm), in
  turns, and `limiter_ttft_cost_ms_p50`, their difference; `ttft_cache_miss_ms_*` and
  `ttft_cache_hit_ms_*`, a new temperature-0 chat and the same one again, in turns.

Writes .data/bench/keys.json and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.overhead import percentile, sse_json, write_report
from bench.sim_overhead import machine
from contracts import streams
from services.common.bus import Bus, connect
from services.common.runtime import run
from services.devstack import LocalStack, NatsServer
from services.gateway.auth import KeyEntry, KeyRing
from services.gateway.cache import HEADER
from services.gateway.keys import KeyStore
from services.gateway.ratelimit import RateLimiter


def summary(name: str, samples_s: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in samples_s]
    return {f"{name}_p50": round(percentile(ms, 50), 3), f"{name}_p95": round(percentile(ms, 95), 3)}


async def until_held(store: KeyStore, key_id: str, held: bool) -> None:
    # The watcher task fills the store: yield to it until it has, polling the dict it writes.
    while (key_id in {k.id for k in store.records.values()}) != held:  # noqa: ASYNC110
        await asyncio.sleep(0)


async def measure(url: str, runs: int) -> dict[str, Any]:
    buses: list[Bus] = [await connect(url, f"gateway-{i}") for i in range(2)]
    rings = [KeyRing([KeyEntry("0" * 64, "bench", "admin")]) for _ in buses]
    stores = [await KeyStore.follow(bus, ring) for bus, ring in zip(buses, rings, strict=True)]
    limiters = [RateLimiter(await bus.js.key_value(streams.KV_RATES)) for bus in buses]
    try:
        alone, contended = [], []
        key = KeyEntry("1" * 64, "bench-alone", id="key_benchalone", rpm=10 * runs, tpm=10_000 * runs)
        shared = KeyEntry("2" * 64, "bench-shared", id="key_benchshared", rpm=10 * runs, tpm=10_000 * runs)
        for i in range(runs):
            started = time.perf_counter()
            await limiters[0].take(key, 1, 100)
            alone.append(time.perf_counter() - started)
            started = time.perf_counter()
            await limiters[i % 2].take(shared, 1, 100)
            contended.append(time.perf_counter() - started)
        visible, revoked = [], []
        for i in range(max(1, runs // 10)):
            started = time.perf_counter()
            _, made = await stores[0].create(name=f"bench-{i}")
            await until_held(stores[1], made.id, held=True)
            visible.append(time.perf_counter() - started)
            started = time.perf_counter()
            await stores[1].revoke(made.id)
            await until_held(stores[0], made.id, held=False)
            revoked.append(time.perf_counter() - started)
        return {
            **summary("take_ms", alone),
            **summary("take_contended_ms", contended),
            **summary("key_visible_ms", visible),
            **summary("revoke_seen_ms", revoked),
        }
    finally:
        for store in stores:
            await store.stop()
        for bus in buses:
            await bus.close()


async def ttft(client: httpx.AsyncClient, content: str, headers: dict[str, str], **fields: Any) -> tuple[float, str]:
    """Seconds to the first content of one streamed chat, and its `x-modalmesh-cache` header."""
    body = {"model": "tiny-llama", "messages": [{"role": "user", "content": content}], "stream": True, **fields}
    started = time.perf_counter()
    async with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as res:
        res.raise_for_status()
        first = None
        async for event in sse_json(res):
            if first is None and event["choices"] and event["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - started
    return (first if first is not None else time.perf_counter() - started), res.headers.get(HEADER, "")


async def through_the_stack(stack: LocalStack, runs: int) -> dict[str, Any]:
    nonce = uuid.uuid4().hex  # requests no earlier run left in the cache
    async with httpx.AsyncClient(base_url=stack.url, timeout=60, headers=stack.headers) as client:
        made = await client.post("/v1/admin/keys", json={"name": "bench", "rpm": 10**6, "tpm": 10**9})
        made.raise_for_status()
        limited = {"Authorization": f"Bearer {made.json()['key']}"}
        sampled: dict[str, Any] = {"max_tokens": 2, "temperature": 1.0}  # not cacheable: the engine runs each
        fixed: dict[str, Any] = {"max_tokens": 2, "temperature": 0}
        for i in range(5):  # warm-up: connections, first-request paths
            await ttft(client, f"warm {i}", stack.headers, **sampled)
            await ttft(client, f"warm {i}", limited, **sampled)
        unlimited, limits, misses, hits = [], [], [], []
        for i in range(runs):
            unlimited.append((await ttft(client, f"story {i}", stack.headers, **sampled))[0])
            limits.append((await ttft(client, f"story {i}", limited, **sampled))[0])
            seconds, state = await ttft(client, f"fixed {i} {nonce}", stack.headers, **fixed)
            if state != "miss":
                raise RuntimeError(f"expected a cache miss, got {state!r}: is the response cache on?")
            misses.append(seconds)
            await asyncio.sleep(0.05)  # the miss's answer is stored just after its last chunk
            seconds, state = await ttft(client, f"fixed {i} {nonce}", stack.headers, **fixed)
            if state == "hit":
                hits.append(seconds)
    return {
        **summary("ttft_unlimited_ms", unlimited),
        **summary("ttft_limited_ms", limits),
        "limiter_ttft_cost_ms_p50": round((percentile(limits, 50) - percentile(unlimited, 50)) * 1000, 3),
        **summary("ttft_cache_miss_ms", misses),
        **summary("ttft_cache_hit_ms", hits),
        "cache_hits": len(hits),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--stack-runs", type=int, default=200, help="chats of each kind through the stack")
    parser.add_argument("--out", type=Path, default=Path(".data/bench/keys.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as store:
        server = NatsServer(store=Path(store)).start()
        try:
            result = run(lambda: measure(server.url, args.runs))
        finally:
            server.stop()
    with tempfile.TemporaryDirectory() as data:
        with LocalStack(Path(data), env={"MODALMESH_GATEWAY_RESPONSE_CACHE": "true"}) as stack:
            result |= run(lambda: through_the_stack(stack, args.stack_runs))
    setup = {"runs": args.runs, "stack_runs": args.stack_runs}
    write_report(args.out, {**result, "setup": setup, "machine": machine()})


if __name__ == "__main__":
    main()
