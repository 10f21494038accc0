"""What watching the fleet in the console costs, on a `make run` stack with Debian's Chromium:

- `first_load_kb`: what the console's first load transfers (index.html and everything it loads before
  the fleet page shows), as sent and gzip-compressed; target: at most 300 kB compressed.
- `heartbeat_to_chart_ms_p50/p95`: from a monitor publishing a sample (its `ts_ms`) to the first frame
  the fleet page paints after its node card and chart took the sample in; target: p95 under 1 s.
- `ttft_ms_*` of a streamed chat through the gateway with 0 and with `--consoles` open consoles
  following the fleet (a separate process holding that many event streams), in alternating turns in
  one run, and `ttft_growth_pct`; target: under 5 %.

Writes .data/bench/console.json and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.overhead import percentile, progress, sse_json, write_report
from services.common.runtime import run
from services.devstack import LocalStack
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

CHAT = {"model": "tiny-llama", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "stream": True}
# Installed in the page through the debugger: for each new sample the node card shows, the time from
# its publication to the next painted frame.
WATCH_LAGS = """() => {
  window.lags = [];
  const seen = new Set();
  new MutationObserver((changes) => {
    for (const change of changes) {
      const ts = Number(change.target.dataset.ts);
      if (!ts || seen.has(ts)) continue;
      seen.add(ts);
      requestAnimationFrame(() => window.lags.push(Date.now() - ts));
    }
  }).observe(document.querySelector(".node"), { attributes: true, attributeFilter: ["data-ts"] });
}"""


def browser_figures(stack: LocalStack, samples: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    loaded: list[tuple[str, bytes]] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("response", lambda r: loaded.append((r.url, r.body())) if "/v1/" not in r.url else None)
            page.goto(f"{stack.url}/#key={stack.api_key}")
            page.wait_for_selector(".node canvas")
            sent = sum(len(body) for _, body in loaded)
            compressed = sum(len(gzip.compress(body, 6)) for _, body in loaded)
            page.evaluate(WATCH_LAGS)
            deadline = time.monotonic() + samples * 3
            while (n := page.evaluate("window.lags.length")) < samples and time.monotonic() < deadline:
                progress("heartbeat to chart", n, samples)
                time.sleep(1)
            lags = page.evaluate("window.lags")
        finally:
            browser.close()
    return {
        "first_load_files": sorted(url.removeprefix(stack.url) for url, _ in loaded),
        "first_load_kb": round(sent / 1000, 1),
        "first_load_kb_gzip": round(compressed / 1000, 1),
        "heartbeat_samples": len(lags),
        "heartbeat_to_chart_ms_p50": round(percentile(lags, 50), 1),
        "heartbeat_to_chart_ms_p95": round(percentile(lags, 95), 1),
    }


async def ttft(client: httpx.AsyncClient) -> float:
    started = time.perf_counter()
    async with client.stream("POST", "/v1/chat/completions", json=CHAT) as res:
        res.raise_for_status()
        async for chunk in sse_json(res):
            if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                return (time.perf_counter() - started) * 1000
    raise RuntimeError("the chat streamed no content")


def consoles(stack: LocalStack, count: int) -> subprocess.Popen[str]:
    """`count` consoles following the fleet, in their own process; returns once all are connected."""
    follower = subprocess.Popen(
        [sys.executable, "-m", "bench.console", "--follow", str(count), "--url", stack.url, "--key", stack.api_key],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert follower.stdout is not None and follower.stdout.readline().strip() == "following"
    return follower


async def follow(url: str, key: str, count: int) -> None:
    """Hold `count` event streams open, reading every event, as that many open consoles would."""
    connected = asyncio.Semaphore(0)

    async def one(client: httpx.AsyncClient) -> None:
        async with client.stream("GET", "/v1/console/events") as res:
            res.raise_for_status()
            # Read as bytes, not parsed: this process shares the machine with the stack it measures, and
            # what it spends on parsing is not what a console costs the gateway.
            chunks = res.aiter_raw()
            while b"event: ready" not in await anext(chunks):
                pass
            connected.release()
            async for _ in chunks:
                pass

    limits = httpx.Limits(max_connections=count + 1)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=None, limits=limits) as client:
        streams = [asyncio.create_task(one(client)) for _ in range(count)]
        for _ in range(count):
            await connected.acquire()
        print("following", flush=True)
        await asyncio.gather(*streams)


async def chats(stack: LocalStack, runs: int) -> list[float]:
    async with httpx.AsyncClient(base_url=stack.url, headers=stack.headers, timeout=60) as client:
        return [await ttft(client) for _ in range(runs)]


def ttft_figures(stack: LocalStack, count: int, turns: int, runs: int) -> dict[str, Any]:
    run(lambda: chats(stack, 5))  # warm: the first requests pay for connections and caches
    quiet: list[float] = []
    watched: list[float] = []
    for turn in range(turns):
        quiet += run(lambda: chats(stack, runs))
        follower = consoles(stack, count)
        try:
            watched += run(lambda: chats(stack, runs))
        finally:
            follower.terminate()
            follower.wait()
        progress(f"TTFT, 0 and {count} consoles", turn + 1, turns)
    return {
        "ttft_ms_p50_0_consoles": round(percentile(quiet, 50), 2),
        "ttft_ms_p95_0_consoles": round(percentile(quiet, 95), 2),
        f"ttft_ms_p50_{count}_consoles": round(percentile(watched, 50), 2),
        f"ttft_ms_p95_{count}_consoles": round(percentile(watched, 95), 2),
        "ttft_growth_pct": round(100 * (statistics.median(watched) / statistics.median(quiet) - 1), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--consoles", type=int, default=50)
    parser.add_argument("--turns", type=int, default=6, help="alternations of 0 and --consoles consoles")
    parser.add_argument("--runs", type=int, default=30, help="chats per turn and setting")
    parser.add_argument("--samples", type=int, default=60, help="heartbeats to follow into the chart")
    parser.add_argument("--out", type=Path, default=Path(".data/bench/console.json"))
    parser.add_argument("--follow", type=int, help=argparse.SUPPRESS)  # the consoles' own process
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.follow:
        asyncio.run(follow(args.url, args.key, args.follow))
        return
    if CHROMIUM is None:
        raise SystemExit("bench.console needs Chromium (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as data, LocalStack(data=Path(data)) as stack:
        figures = {
            **browser_figures(stack, args.samples),
            **ttft_figures(stack, args.consoles, args.turns, args.runs),
        }
    result = {
        **figures,
        "targets": {"first_load_kb_gzip": 300, "heartbeat_to_chart_ms_p95": 1000, "ttft_growth_pct": 5},
        "setup": {
            "consoles": args.consoles,
            "turns": args.turns,
            "runs": args.runs,
            "machine": platform.machine(),
            "python": platform.python_version(),
        },
    }
    write_report(args.out, result)


if __name__ == "__main__":
    main()
