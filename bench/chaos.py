"""Chaos: the whole stack as processes on a real nats-server, while clients run concurrent streamed
and whole requests, with repeated SIGKILLs of a busy worker, the scheduler and the aggregator, and
SIGKILL of the NATS server itself (supervisord restarts each).

The checker then verifies that every accepted request reached exactly one terminal state, and that
every completed reply equals what the engines generated for it (RESULTS, merged as the aggregator
must), word for word: no duplicated and no missing token. `lost_requests` are those whose client
got no terminal state; `failed_requests` those that ended in an error their client was told (the
attempt limit: a stream whose workers were killed under it three times). Writes .data/bench/chaos.json.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import itertools
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.overhead import sse_json, write_report
from contracts.results import DeltaChunk, ErrorChunk
from services.common.bus import connect
from services.common.merge import RequestMerge
from services.common.results import replay_results
from services.devstack import LocalStack

MODEL = "tiny-llama"
NO_EOS = {"2": -100, "4": -100}
FAULTS = ("worker", "worker", "scheduler", "worker", "aggregator", "worker", "nats")


@dataclass
class Reply:
    stream: bool
    started: float
    status: int = 0
    request_id: str = ""
    text: str = ""
    finished: bool = False
    error: str = ""
    chunks: list[tuple[float, str, int]] = field(default_factory=list)  # (arrival, worker, text length so far)


@dataclass
class Kill:
    kind: str
    at: float
    worker: str = ""


async def one(client: httpx.AsyncClient, stream: bool, rng: random.Random) -> Reply:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "tell me a story"}],
        "stream": stream,
        "max_tokens": rng.choice((64, 128, 256)),
        "logit_bias": NO_EOS,
    }
    reply = Reply(stream, time.monotonic())
    try:
        if not stream:
            res = await client.post("/v1/chat/completions", json=body)
            reply.status = res.status_code
            data = res.json()
            if res.status_code == 200:
                reply.request_id, reply.finished = data["id"], True
                reply.text = data["choices"][0]["message"]["content"]
            else:
                reply.error = data["error"]["message"]
            return reply
        async with client.stream("POST", "/v1/chat/completions", json=body) as res:
            reply.status = res.status_code
            if res.status_code != 200:
                reply.error = (await res.aread()).decode()[:200]
                return reply
            async for data in sse_json(res):
                if "error" in data:
                    reply.error = data["error"]["message"]
                    continue
                reply.request_id = data["id"]
                if data["choices"] and data["choices"][0]["delta"].get("content"):
                    reply.text += data["choices"][0]["delta"]["content"]
                    reply.chunks.append((time.monotonic(), data.get("system_fingerprint", ""), len(reply.text)))
                if data["choices"] and data["choices"][0]["finish_reason"]:
                    reply.finished = True
    except (httpx.HTTPError, ValueError) as exc:
        reply.error = f"{type(exc).__name__}: {exc}"
    return reply


async def clients(stack: LocalStack, stop: asyncio.Event, concurrency: int, seed: int) -> list[Reply]:
    replies: list[Reply] = []

    async def loop(i: int) -> None:
        rng = random.Random(seed + i)
        async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=120) as client:
            for n in itertools.count():
                if stop.is_set():
                    return
                reply = await one(client, stream=(i + n) % 2 == 0, rng=rng)
                replies.append(reply)
                if reply.status != 200:
                    await asyncio.sleep(0.2)  # refused (no live worker for a moment): back off a little

    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    return replies


async def busy_worker(stack: LocalStack) -> str | None:
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=5) as client:
        workers = (await client.get("/v1/workers")).json()["data"]
    busy = [w["worker_id"] for w in workers if w["outstanding"] > 0]
    return (busy or [w["worker_id"] for w in workers] or [None])[0]


async def inject(stack: LocalStack, kind: str) -> Kill:
    if kind == "worker":
        worker = await busy_worker(stack)
        pid = stack.worker_pid(worker) if worker else None
        if pid:
            os.kill(pid, signal.SIGKILL)
        return Kill(kind, time.monotonic(), worker or "")
    fragment = {"scheduler": "-m services.scheduler", "aggregator": "-m services.aggregator", "nats": "nats-server"}[
        kind
    ]
    for pid in stack.child_pids(fragment):
        os.kill(pid, signal.SIGKILL)
    return Kill(kind, time.monotonic())


async def faults(stack: LocalStack, trials: int, interval_s: float) -> list[Kill]:
    kills = []
    for i in range(trials):
        await asyncio.sleep(interval_s)
        kills.append(await inject(stack, FAULTS[i % len(FAULTS)]))
        sys.stderr.write(f"\rchaos: {i + 1}/{trials} faults ({kills[-1].kind})   ")
        sys.stderr.flush()
    sys.stderr.write("\n")
    return kills


def word_diff(expected: str, got: str) -> tuple[int, int]:
    """(duplicated, missing) words of `got` against `expected`."""
    dup = missing = 0
    matcher = difflib.SequenceMatcher(a=expected.split(), b=got.split(), autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op in ("delete", "replace"):
            missing += a1 - a0
        if op in ("insert", "replace"):
            dup += b1 - b0
    return dup, missing


@dataclass(frozen=True)
class AttemptStart:
    """Where an attempt's text begins in a request's merged reply, from RESULTS."""

    attempt: int
    worker: str
    offset: int


def failover_times(
    replies: list[Reply], kills: list[Kill], attempts: dict[str, list[AttemptStart]]
) -> list[tuple[float, Kill, Kill | None, str]]:
    """For each stream the killed worker was serving: seconds from the kill to the arrival of the first
    text of the next attempt, with the kill, the fault before it (a failover right after a scheduler or
    NATS kill takes longer) and the request's id (to find it in the logs of a run kept with --keep).

    The next attempt is told by RESULTS, not by the worker's name: supervision restarts a killed
    worker under the same id, and it may well be the one that takes the request over."""
    times = []
    for i, kill in enumerate(kills):
        if kill.kind != "worker" or not kill.worker:
            continue
        for reply in replies:
            before = [(w, n) for t, w, n in reply.chunks if t < kill.at]
            if not before or before[-1][0] != kill.worker:
                continue
            starts = attempts.get(reply.request_id, [])
            served = [a.attempt for a in starts if a.worker == kill.worker and a.offset < before[-1][1]]
            later = [a.offset for a in starts if served and a.attempt > served[-1]]
            if not later:
                continue  # the killed worker had finished this stream: nothing moved
            after = [t for t, _, n in reply.chunks if t >= kill.at and n > later[0]]
            if after:
                times.append((after[0] - kill.at, kill, kills[i - 1] if i else None, reply.request_id))
    return times


async def check(stack: LocalStack, replies: list[Reply]) -> tuple[dict[str, Any], dict[str, list[AttemptStart]]]:
    """Each accepted request against what RESULTS recorded for it. Completed: its reply must equal
    what the engines generated. Not completed: it failed when its client got the very error that
    ended it in RESULTS (a terminal state, such as the attempt limit); anything else is lost.
    Also returns where each attempt's text begins in each request's merged reply."""
    bus = await connect(stack.nats_url, "chaos-checker")
    dup = missing = mismatched = 0
    lost: list[str] = []
    failed: list[str] = []
    attempts: dict[str, list[AttemptStart]] = {}
    try:
        for reply in replies:
            if reply.status != 200:
                continue  # refused at the door, in the OpenAI shape: not accepted, not lost
            merge = RequestMerge()
            starts = attempts.setdefault(reply.request_id, [])
            offset = 0  # of the next released text in the merged reply
            for chunk in await replay_results(bus, reply.request_id) if reply.request_id else []:
                for ready in merge.accept(chunk):
                    if not isinstance(ready, DeltaChunk):
                        continue
                    if not starts or starts[-1].attempt < ready.attempt:
                        starts.append(AttemptStart(ready.attempt, ready.worker_id, offset))
                    offset += len(ready.text)
            if not reply.finished:
                ended = merge.terminal
                told = isinstance(ended, ErrorChunk) and reply.error == ended.message
                (failed if told else lost).append(
                    f"{'stream' if reply.stream else 'whole'} {reply.request_id}: {reply.error}"
                )
                continue
            d, m = word_diff(merge.merged_text, reply.text)
            dup, missing, mismatched = dup + d, missing + m, mismatched + (d + m > 0)
    finally:
        await bus.close()
    return {
        "lost_requests": len(lost),
        "failed_requests": len(failed),
        "duplicate_tokens": dup,
        "missing_tokens": missing,
        "mismatched_replies": mismatched,
        "lost_examples": lost[:10],
        "failed_examples": failed[:10],
    }, attempts


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))], 3)


async def run_chaos(stack: LocalStack, args: argparse.Namespace) -> dict[str, Any]:
    stop = asyncio.Event()
    client_task = asyncio.create_task(clients(stack, stop, args.concurrency, args.seed))
    kills = await faults(stack, args.trials, args.interval)
    await asyncio.sleep(args.interval)
    stop.set()
    replies = await client_task
    accepted = [r for r in replies if r.status == 200]
    figures, attempts = await check(stack, replies)
    measured = failover_times(replies, kills, attempts)
    times = [t for t, _, _, _ in measured]
    return {
        "trials": len(kills),
        "faults": {kind: sum(k.kind == kind for k in kills) for kind in sorted(set(FAULTS))},
        "requests": len(replies),
        "accepted": len(accepted),
        "refused": len(replies) - len(accepted),
        **figures,
        "failover_p50_s": pct(times, 50),
        "failover_p99_s": pct(times, 99),
        "failovers_measured": len(times),
        # the slowest, with the fault injected just before the worker kill
        "slowest_failovers": [
            {
                "seconds": round(t, 3),
                "after": previous.kind if previous else None,
                "after_s": round(kill.at - previous.at, 3) if previous else None,
                "worker": kill.worker,
                "request_id": rid,
            }
            for t, kill, previous, rid in sorted(measured, key=lambda m: -m[0])[:8]
        ],
        "mean_reply_s": round(statistics.fmean(r.chunks[-1][0] - r.started for r in accepted if r.chunks), 3)
        if any(r.chunks for r in accepted)
        else None,
    }


CHAOS_ENV = {
    "MODALMESH_DEAD_AFTER_S": "1.0",
    "MODALMESH_HEARTBEAT_S": "0.25",
    "MODALMESH_WORKER_SLOTS": "1",
    "MODALMESH_LOG_LEVEL": "WARNING",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=175, help="faults injected (4 in 7 are worker kills: 100)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between faults")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=Path(".data/bench/chaos.json"))
    parser.add_argument("--keep", type=Path, default=None, help="keep the stack's data and logs in this folder")
    args = parser.parse_args()
    env = CHAOS_ENV
    with tempfile.TemporaryDirectory() as scratch:
        data = args.keep or Path(scratch)
        data.mkdir(parents=True, exist_ok=True)
        with LocalStack(data=data, env=env, workers=args.workers) as stack:
            result = asyncio.run(run_chaos(stack, args))
    result["setup"] = {
        "workers": args.workers,
        "concurrency": args.concurrency,
        "interval_s": args.interval,
        "dead_after_s": 1.0,
        "seed": args.seed,
    }
    write_report(args.out, result)


if __name__ == "__main__":
    main()
