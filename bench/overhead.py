"""Control-plane overhead and streaming throughput of the whole pipeline.

- `ttft_overhead_ms_*`: time to first token seen by an HTTP client through gateway -> scheduler ->
  worker -> aggregator -> gateway, minus the engine's own time to first token for that same request
  (which the worker measures and the aggregator records in the `tasks` bucket).
- `transport_floor_ms_*`: time to first content through the same hops with every handler empty
  (`bench.floor`), request by request in turns with the pipeline's: what of the overhead is the
  design's hops on this machine, and what the services do at them (`overhead_vs_floor_p50`).
- `pipeline_tokens_per_s` vs `direct_tokens_per_s`: the same llama.cpp engine and model streaming the
  same requests, through the pipeline and called in-process. The two take turns, run by run, while the
  stack is up: this VM's speed drifts by a fifth within minutes, and a direct phase measured before
  the pipeline one compared two different machines.

Writes .data/bench/overhead.json and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from bench.floor import floor_stack
from contracts import streams
from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, Sampling
from contracts.tasks import TaskState
from services.common.bus import connect
from services.common.runtime import run
from services.devstack import LocalStack
from services.workers.engine import Finished
from services.workers.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine
from services.workers.tiny_model import BENCH_SPEC, TinySpec, ensure_tiny_gguf

MODEL = "bench-llama"
NO_EOS = {2: -100.0, 4: -100.0}
MESSAGES = [{"role": "user", "content": "Tell me a long story about the sea."}]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def write_report(out: Path, result: dict[str, Any]) -> None:
    """Write a benchmark's figures to `out` as JSON, and print them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


def progress(label: str, done: int, total: int) -> None:
    width = 30
    if done != total and done % max(1, total // width):
        return
    filled = width * done // total
    sys.stderr.write(f"\r{label:<28} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


async def direct_tokens_per_s(engine: LlamaCppEngine, max_tokens: int, seed: int) -> float:
    """One chat on the worker's engine called in-process, on this event loop: its tokens per second."""
    request = ChatRequest(
        request_id=f"direct-{seed}",
        model=MODEL,
        deadline_ms=now_ms() + 600_000,
        messages=tuple(ChatMessage(**m) for m in MESSAGES),  # type: ignore[arg-type]
        sampling=Sampling(max_tokens=max_tokens, seed=seed, logit_bias=NO_EOS),
    )
    started = time.perf_counter()
    async for event in engine.generate(request):
        if isinstance(event, Finished):
            return event.usage.completion_tokens / (time.perf_counter() - started)
    raise RuntimeError("the engine ended without a Finished event")


async def sse_json(res: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON events of an OpenAI-style stream, in order (not its `[DONE]`)."""
    async for line in res.aiter_lines():
        if line.startswith("data: {"):
            yield json.loads(line[6:])


async def stream_once(
    client: httpx.AsyncClient, max_tokens: int, seed: int, model: str = MODEL, priority: str | None = None
) -> tuple[str, float, float, int]:
    """One streamed chat: (request id, seconds to first content, seconds to [DONE], completion tokens)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": MESSAGES,
        "stream": True,
        "max_tokens": max_tokens,
        "seed": seed,
        "logit_bias": {str(k): v for k, v in NO_EOS.items()},
        "stream_options": {"include_usage": True},
        "temperature": 1.0,
        "top_p": 1.0,
    }  # spelled out: a server called directly has other defaults
    if priority is not None:
        body["priority"] = priority
    started = time.perf_counter()
    first = None
    rid, tokens, pieces = "", 0, 0
    async with client.stream(
        "POST", "/chat/completions" if client.base_url.path.endswith("/v1/") else "/v1/chat/completions", json=body
    ) as res:
        res.raise_for_status()
        async for chunk in sse_json(res):
            rid = chunk["id"]
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                pieces += 1
                first = first if first is not None else time.perf_counter() - started
            if chunk.get("usage") and not chunk["choices"]:
                tokens = chunk["usage"]["completion_tokens"]
    # A server that sends no usage while streaming: one content chunk per token.
    return rid, first or 0.0, time.perf_counter() - started, tokens or pieces


async def pipeline(
    stack: LocalStack, direct: LlamaCppEngine, floor_url: str, ttft_runs: int, tput_runs: int, max_tokens: int
) -> dict[str, Any]:
    bus = await connect(stack.nats_url, "bench")
    kv = await bus.js.key_value(streams.KV_TASKS)
    overheads: list[float] = []
    floor: list[float] = []
    rates: list[float] = []
    direct_rates: list[float] = []
    await direct.start()
    try:
        async with (
            httpx.AsyncClient(base_url=stack.url, timeout=120, headers=stack.headers) as client,
            httpx.AsyncClient(base_url=floor_url, timeout=120) as bare,
        ):
            for i in range(5):  # warm-up: connections, caches, first-request paths
                await stream_once(client, 2, seed=i)
                await stream_once(bare, 2, seed=i)
            await direct_tokens_per_s(direct, 2, seed=0)
            for i in range(ttft_runs):
                rid, ttft, _, _ = await stream_once(client, 2, seed=i)
                state = await task_state(kv, rid)
                assert state.timings is not None
                overheads.append(ttft * 1000 - state.timings.engine_ttft_ms)
                floor.append((await stream_once(bare, 2, seed=i))[1] * 1000)
                progress("pipeline TTFT", i + 1, ttft_runs)
            for i in range(tput_runs):  # in turns, so both see the machine as it is at that moment
                direct_rates.append(await direct_tokens_per_s(direct, max_tokens, seed=i))
                _, _, total, tokens = await stream_once(client, max_tokens, seed=i)
                rates.append(tokens / total)
                progress("throughput, direct/pipeline", i + 1, tput_runs)
    finally:
        await direct.cleanup()
        await bus.close()
    pipeline_rate, direct_rate = statistics.median(rates), statistics.median(direct_rates)
    return {
        "ttft_overhead_ms_p50": round(percentile(overheads, 50), 3),
        "ttft_overhead_ms_p99": round(percentile(overheads, 99), 3),
        "ttft_overhead_ms_mean": round(statistics.fmean(overheads), 3),
        "transport_floor_ms_p50": round(percentile(floor, 50), 3),
        "transport_floor_ms_p99": round(percentile(floor, 99), 3),
        "overhead_vs_floor_p50": round(percentile(overheads, 50) / percentile(floor, 50), 4),
        "pipeline_tokens_per_s": round(pipeline_rate, 2),
        "direct_tokens_per_s": round(direct_rate, 2),
        "pipeline_vs_direct": round(pipeline_rate / direct_rate, 4),
        "pipeline_vs_direct_per_turn": [round(p / d, 4) for p, d in zip(rates, direct_rates, strict=True)],
    }


async def task_state(kv: Any, rid: str) -> TaskState:
    for _ in range(500):
        try:
            return TaskState.decode((await kv.get(rid)).value or b"")
        except Exception:
            await asyncio.sleep(0.005)
    raise RuntimeError(f"no task state for {rid}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ttft-runs", type=int, default=300)
    parser.add_argument("--tput-runs", type=int, default=7)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads, the same in both setups")
    parser.add_argument("--tiny", action="store_true", help="use the small test model instead of the bench one")
    parser.add_argument("--out", type=Path, default=Path(".data/bench/overhead.json"))
    args = parser.parse_args()

    spec = TinySpec() if args.tiny else BENCH_SPEC
    model_path = ensure_tiny_gguf(spec)
    env = {
        "MODALMESH_WORKER_MODEL_ID": MODEL,
        "MODALMESH_WORKER_MODEL_PATH": str(model_path),
        "MODALMESH_WORKER_SLOTS": "1",
        "MODALMESH_WORKER_N_THREADS": str(args.threads),
        "MODALMESH_LOG_LEVEL": "WARNING",
    }
    # The direct engine runs on the same kind of event loop as the worker process (uvloop), so the
    # comparison is the pipeline and nothing else.
    direct = LlamaCppEngine(LlamaCppConfig(MODEL, model_path, slots=1, n_threads=args.threads))
    with tempfile.TemporaryDirectory() as data, LocalStack(data=Path(data), env=env) as stack, floor_stack() as floor:
        figures = run(lambda: pipeline(stack, direct, floor, args.ttft_runs, args.tput_runs, args.max_tokens))
    result = {
        **figures,
        "targets": {"ttft_overhead_ms_p50": 2.0, "ttft_overhead_ms_p99": 8.0, "pipeline_vs_direct": 0.95},
        "setup": {
            "model": spec.digest(),
            "n_embd": spec.n_embd,
            "n_layer": spec.n_layer,
            "max_tokens": args.max_tokens,
            "ttft_runs": args.ttft_runs,
            "tput_runs": args.tput_runs,
            "threads": args.threads,
            "machine": platform.machine(),
            "python": platform.python_version(),
            "run_id": uuid.uuid4().hex[:8],
        },
    }
    write_report(args.out, result)


if __name__ == "__main__":
    main()
