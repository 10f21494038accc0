"""`make bench-peers`: one `python -m llama_cpp.server` on the benchmark model, reached three ways in
turns by the load generator: directly, through ModalMesh (its upstream engine) and through the LiteLLM
proxy. Per front: TTFT overhead over direct (p50, p99; one request at a time) and requests/s at a fixed
concurrency. Writes .data/bench/peers.json and peers.png."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.overhead import write_report
from bench.upstream import MODEL
from loadgen.record import Record
from loadgen.runner import Run
from loadgen.spec import PromptSource, RequestClass, RunSpec, Shape
from loadgen.stats import measured, percentile, window
from services.common.ports import free_port
from services.devstack import LlamaServer, LocalStack
from services.workers.tiny_model import BENCH_SPEC, ensure_tiny_gguf

# Spelled out: each front has its own defaults, and an end-of-sequence token would cut answers short.
PARAMS = {"temperature": 1.0, "top_p": 1.0, "seed": 1, "logit_bias": {"2": -100, "4": -100}}


@contextmanager
def litellm_proxy(binary: Path, upstream: str, logs: Path) -> Iterator[tuple[str, str]]:
    """The LiteLLM proxy from its own virtual environment, one model routed to the upstream server; yields
    its URL and master key (it refuses to start without one)."""
    port = free_port()
    key = "sk-" + secrets.token_hex(32)
    config = logs / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: {upstream}\n"
        "      api_key: none\n"
    )
    env = {
        **os.environ,
        "LITELLM_MASTER_KEY": key,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_TELEMETRY": "False",
    }
    with (logs / "litellm.log").open("w") as log:
        process = subprocess.Popen(
            [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # until it answers, not a fixed sleep
            if process.poll() is not None:
                raise RuntimeError(f"litellm exited: {(logs / 'litellm.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=2).is_success:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("litellm did not answer in 120 s")
        yield url, key
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()


def spec_for(target: str, key: str | None, concurrency: int, args: argparse.Namespace, seed: int) -> RunSpec:
    chat = RequestClass(
        name="chat",
        kind="chat",
        model=MODEL,
        max_tokens=args.max_tokens,
        prompt=PromptSource(tokens=32),
        params=PARAMS,
    )
    return RunSpec(
        target=target,
        api_key=key,
        classes=(chat,),
        shape=Shape(kind="concurrency", concurrency=concurrency),
        requests=args.requests,
        warmup=2,
        seed=seed,
        timeout_s=120,
        duration_s=600,
    )


async def turns(fronts: dict[str, tuple[str, str | None]], rounds: int, args: argparse.Namespace) -> dict[str, Any]:
    """Each round runs every front once at concurrency 1 (TTFT) and once at args.concurrency (requests/s),
    fronts in turn, so that all of them see the machine as it is then. Every front gets the same prompts in
    a round, and no prompt comes twice to one front."""
    ttft: dict[str, list[Record]] = {name: [] for name in fronts}
    per_round: list[dict[str, float]] = []
    loaded: dict[str, list[tuple[int, float, int]]] = {name: [] for name in fronts}
    names = list(fronts)
    for round_ in range(rounds):
        # Each round starts with the next front, so that none always follows the same one.
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            url, key = fronts[name]
            single = await Run(spec_for(url, key, 1, args, seed=2 * round_)).execute()
            ttft[name] += measured(single.records)
            firsts = [r.ttft * 1000 for r in measured(single.records) if r.ok and r.ttft is not None]
            if round_ == len(per_round):
                per_round.append({})
            per_round[round_][name] = percentile(firsts, 50)
            busy = await Run(spec_for(url, key, args.concurrency, args, seed=2 * round_ + 1)).execute()
            kept = measured(busy.records)
            loaded[name].append((sum(r.ok for r in kept), window(kept), sum(r.output_tokens for r in kept if r.ok)))
            print(f"round {round_ + 1}/{rounds} {name}: done", flush=True)
    return {"ttft": ttft, "loaded": loaded, "ttft_ms_p50_per_round": per_round}


def figures(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    direct = [r.ttft * 1000 for r in raw["ttft"]["direct"] if r.ok and r.ttft is not None]
    for name, records in raw["ttft"].items():
        ttfts = [r.ttft * 1000 for r in records if r.ok and r.ttft is not None]
        done = sum(n for n, _, _ in raw["loaded"][name])
        seconds = sum(s for _, s, _ in raw["loaded"][name])
        tokens = sum(t for _, _, t in raw["loaded"][name])
        out[name] = {
            "ttft_ms_p50": percentile(ttfts, 50),
            "ttft_ms_p99": percentile(ttfts, 99),
            "ttft_overhead_ms_p50": percentile(ttfts, 50) - percentile(direct, 50),
            "ttft_overhead_ms_p99": percentile(ttfts, 99) - percentile(direct, 99),
            "requests_per_s": done / seconds if seconds else 0.0,
            "output_tokens_per_request": tokens / done if done else 0.0,
            "failed": sum(not r.ok for r in records),
        }
    return out


def plot(path: Path, result: dict[str, Any], concurrency: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6), dpi=80)
    xs = range(len(names))
    left.bar([x - 0.2 for x in xs], [result[n]["ttft_ms_p50"] for n in names], 0.4, label="p50")
    left.bar([x + 0.2 for x in xs], [result[n]["ttft_ms_p99"] for n in names], 0.4, label="p99")
    left.set_xticks(list(xs), names)
    left.set_ylabel("TTFT ms (one request at a time)")
    left.legend()
    right.bar(list(xs), [result[n]["requests_per_s"] for n in names])
    right.set_xticks(list(xs), names)
    right.set_ylabel("requests/s")
    right.set_title(f"{concurrency} requests in flight", fontsize=9)
    fig.suptitle("One llama_cpp.server: direct, through ModalMesh, through LiteLLM")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--litellm", type=Path, default=Path(".data/venvs/litellm/bin/litellm"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=20, help="measured requests per front, shape and round")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="llama.cpp threads in the server")
    parser.add_argument("--out", type=Path, default=Path(".data/bench/peers.json"))
    args = parser.parse_args()

    # llama_cpp.server ends a streaming answer early when another request comes in (its interrupt_requests,
    # on by default, read from the environment too): above concurrency 1 every front would get stubs.
    os.environ["INTERRUPT_REQUESTS"] = "false"
    server = LlamaServer(model=ensure_tiny_gguf(BENCH_SPEC), alias=MODEL, threads=args.threads).start()
    upstream = server.url
    try:
        env = {"MODALMESH_UPSTREAM_URL": upstream, "MODALMESH_LOG_LEVEL": "WARNING"}
        with (
            tempfile.TemporaryDirectory() as data,
            LocalStack(data=Path(data), env=env, modalities="") as stack,
            litellm_proxy(args.litellm, upstream, Path(data)) as (litellm, litellm_key),
        ):
            fronts = {
                "direct": (upstream.removesuffix("/v1"), None),
                "modalmesh": (stack.url, stack.api_key),
                "litellm": (litellm, litellm_key),
            }
            raw = asyncio.run(turns(fronts, args.rounds, args))
    finally:
        server.stop()
    result = figures(raw)
    version = subprocess.run([str(args.litellm), "--version"], capture_output=True, text=True).stdout.strip()
    report = {
        "fronts": result,
        # How far the machine moved under the bench: each round's TTFT p50 per front, in the order run.
        "ttft_ms_p50_per_round": raw["ttft_ms_p50_per_round"],
        "setup": {
            "server": "python -m llama_cpp.server",
            "model": BENCH_SPEC.digest(),
            "litellm": version.splitlines()[-1] if version else "unknown",
            "rounds": args.rounds,
            "requests": args.requests,
            "concurrency": args.concurrency,
            "max_tokens": args.max_tokens,
            "threads": args.threads,
            "run_id": uuid.uuid4().hex[:8],
        },
    }
    write_report(args.out, report)
    plot(args.out.with_suffix(".png"), result, args.concurrency)


if __name__ == "__main__":
    main()
