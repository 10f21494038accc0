"""Cost of per-key limits and how fast a key made or revoked reaches another gateway, on a real nats-server.

- `take_ms_*`: one rate-limit take (rpm and tpm) of a key only this gateway spends: one compare-and-set.
- `take_contended_ms_*`: two gateways (two connections) spending one key in turns, so every take
  first loses the race to the other's write: a compare-and-set, a read and another.
- `key_visible_ms_*` / `revoke_seen_ms_*`: from a key's create (revoke) on one gateway's store to the
  other gateway's ring holding it (dropping it), through the `keys` bucket's watcher.

Writes .data/bench/keys.json and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.overhead import percentile, write_report
from bench.sim_overhead import machine
from contracts import streams
from services.common.bus import Bus, connect
from services.common.runtime import run
from services.devstack import NatsServer
from services.gateway.auth import KeyEntry, KeyRing
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path(".data/bench/keys.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as store:
        server = NatsServer(store=Path(store)).start()
        try:
            result = run(lambda: measure(server.url, args.runs))
        finally:
            server.stop()
    write_report(args.out, {**result, "setup": {"runs": args.runs}, "machine": machine()})


if __name__ == "__main__":
    main()
