"""Media benchmarks on the whole stack with its real default engines.

- `embeddings_per_s` (texts embedded per second) through the gateway, many clients at once so the
  worker batches their requests, beside `direct_embeddings_per_s`: the same model called in-process
  on the same texts in batches of the worker's size, with the same number of torch threads (by default
  one core fewer than the machine has, left to the control plane). Target: ratio >= 0.9.
- `image_first_progress_ms_*`: from sending an image task to reading its first progress event over
  the task's SSE stream. Target: <= 50 ms on loopback.

Writes .data/bench/media.json and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.overhead import percentile, progress, write_report
from services.devstack import LocalStack

EMBED, IMAGE = "all-minilm-l6-v2", "tiny-sd"


def corpus(n: int) -> list[str]:
    words = "river stone light market quiet engine forest signal paper winter garden number".split()
    return [" ".join(words[(i * k) % len(words)] for k in range(1, 9)) + f" {i}" for i in range(n)]


def direct_embeddings_per_s(texts: list[str], batch: int, runs: int, threads: int) -> float:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(threads)
    from services.workers.engines.embeddings import packaged_minilm

    model = SentenceTransformer(str(packaged_minilm()), device="cpu")
    model.encode(texts[:batch], batch_size=batch)  # warm-up
    rates = []
    for i in range(runs):
        started = time.perf_counter()
        model.encode(texts, batch_size=batch, show_progress_bar=False)
        rates.append(len(texts) / (time.perf_counter() - started))
        progress("direct embeddings", i + 1, runs)
    return statistics.median(rates)


async def gateway_embeddings_per_s(
    client: httpx.AsyncClient, texts: list[str], per_request: int, concurrency: int, runs: int
) -> float:
    chunks = [texts[i : i + per_request] for i in range(0, len(texts), per_request)]
    gate = asyncio.Semaphore(concurrency)

    async def one(chunk: list[str]) -> None:
        async with gate:
            res = await client.post(
                "/v1/embeddings", json={"model": EMBED, "input": chunk, "encoding_format": "base64"}
            )
            res.raise_for_status()
            assert len(res.json()["data"]) == len(chunk)

    await asyncio.gather(*(one(c) for c in chunks[:concurrency]))  # warm-up
    rates = []
    for i in range(runs):
        started = time.perf_counter()
        await asyncio.gather(*(one(c) for c in chunks))
        rates.append(len(texts) / (time.perf_counter() - started))
        progress("gateway embeddings", i + 1, runs)
    return statistics.median(rates)


async def first_progress_ms(client: httpx.AsyncClient, runs: int) -> list[float]:
    body = {"modality": "image", "model": IMAGE, "prompt": "a lighthouse", "size": "64x64", "steps": 2}
    times = []
    for i in range(runs):
        started = time.perf_counter()
        task = (await client.post("/v1/tasks", json=body)).json()
        seen = False
        async with client.stream("GET", f"/v1/tasks/{task['id']}/events") as events:
            async for line in events.aiter_lines():
                if line == "event: progress" and not seen:
                    times.append((time.perf_counter() - started) * 1000)
                    seen = True
                if line in ("event: final", "event: error"):
                    break  # one image at a time: the worker is idle when the next is sent
        progress("image first progress", i + 1, runs)
    return times


async def through_gateway(stack: LocalStack, texts: list[str], args: argparse.Namespace) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.url, timeout=300, headers=stack.headers) as client:
        rate = await gateway_embeddings_per_s(client, texts, args.per_request, args.concurrency, args.runs)
        times = await first_progress_ms(client, args.image_runs)
    return {
        "embeddings_per_s": round(rate, 1),
        "image_first_progress_ms_p50": round(percentile(times, 50), 2),
        "image_first_progress_ms_p99": round(percentile(times, 99), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--per-request", type=int, default=16, help="texts in one /v1/embeddings request")
    parser.add_argument("--concurrency", type=int, default=16, help="requests in flight at once")
    parser.add_argument("--batch", type=int, default=64, help="the worker's batch size, also used directly")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=max(1, (os.cpu_count() or 2) - 1),
        help="torch threads, the same in both setups; the default leaves one core to the "
        "control plane, as a deployment would",
    )
    parser.add_argument("--image-runs", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path(".data/bench/media.json"))
    args = parser.parse_args()

    texts = corpus(args.texts)
    direct = direct_embeddings_per_s(texts, args.batch, args.runs, args.threads)
    env = {
        "MODALMESH_LOG_LEVEL": "WARNING",
        "MODALMESH_WORKER_MAX_BATCH": str(args.batch),
        "MODALMESH_WORKER_N_THREADS": str(args.threads),
    }
    with (
        tempfile.TemporaryDirectory() as data,
        LocalStack(data=Path(data), env=env, modalities="embedding,image") as stack,
    ):
        figures = asyncio.run(through_gateway(stack, texts, args))
    result = {
        **figures,
        "direct_embeddings_per_s": round(direct, 1),
        "embeddings_gateway_vs_direct": round(figures["embeddings_per_s"] / direct, 4),
        "targets": {"embeddings_gateway_vs_direct": 0.9, "image_first_progress_ms_p50": 50.0},
        "setup": {
            "texts": args.texts,
            "per_request": args.per_request,
            "concurrency": args.concurrency,
            "batch": args.batch,
            "runs": args.runs,
            "threads": args.threads,
            "image_runs": args.image_runs,
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "run_id": uuid.uuid4().hex[:8],
        },
    }
    write_report(args.out, result)


if __name__ == "__main__":
    main()
