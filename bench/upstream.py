"""Tokens per second through the OpenAI-compatible upstream engine vs the upstream server called
directly: the same `python -m llama_cpp.server` on the benchmark model, the same streamed chats.

Writes .data/bench/upstream.json (`upstream_tokens_per_s`, `upstream_direct_tokens_per_s`) and
prints it. Target: ratio >= 0.95.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.overhead import progress, stream_once, write_report
from services.devstack import LlamaServer, LocalStack
from services.workers.tiny_model import BENCH_SPEC, ensure_tiny_gguf

MODEL = "bench-upstream"


async def rate(client: httpx.AsyncClient, runs: int, max_tokens: int, label: str) -> float:
    await stream_once(client, 4, seed=0, model=MODEL)  # warm-up
    rates = []
    for i in range(runs):
        _, _, seconds, tokens = await stream_once(client, max_tokens, seed=i, model=MODEL)
        rates.append(tokens / seconds)
        progress(label, i + 1, runs)
    return statistics.median(rates)


async def measure(server: LlamaServer, stack: LocalStack, runs: int, max_tokens: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url + "/", timeout=300) as direct:
        direct_rate = await rate(direct, runs, max_tokens, "upstream direct")
    async with httpx.AsyncClient(base_url=stack.url, timeout=300, headers=stack.headers) as gateway:
        through = await rate(gateway, runs, max_tokens, "through the gateway")
    return {
        "upstream_tokens_per_s": round(through, 2),
        "upstream_direct_tokens_per_s": round(direct_rate, 2),
        "upstream_vs_direct": round(through / direct_rate, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads in the server")
    parser.add_argument("--out", type=Path, default=Path(".data/bench/upstream.json"))
    args = parser.parse_args()

    server = LlamaServer(model=ensure_tiny_gguf(BENCH_SPEC), alias=MODEL, threads=args.threads).start()
    try:
        env = {"MODALMESH_UPSTREAM_URL": server.url, "MODALMESH_LOG_LEVEL": "WARNING"}
        with tempfile.TemporaryDirectory() as data, LocalStack(data=Path(data), env=env, modalities="") as stack:
            figures = asyncio.run(measure(server, stack, args.runs, args.max_tokens))
    finally:
        server.stop()
    result = {
        **figures,
        "targets": {"upstream_vs_direct": 0.95},
        "setup": {
            "server": "python -m llama_cpp.server",
            "model": BENCH_SPEC.digest(),
            "runs": args.runs,
            "max_tokens": args.max_tokens,
            "threads": args.threads,
            "run_id": uuid.uuid4().hex[:8],
        },
    }
    write_report(args.out, result)


if __name__ == "__main__":
    main()
