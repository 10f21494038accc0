"""modalmesh-load against the running stack: each class's request count agrees exactly with the
gateway's own counters, and its latencies with the gateway's timings."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from loadgen.promview import parse
from loadgen.report import write_run
from loadgen.runner import Run, RunResult
from loadgen.spec import RequestClass, RunSpec, Shape
from loadgen.stats import summarize
from services.devstack import LocalStack

pytestmark = pytest.mark.e2e
ROUTES = {
    "chat": "/v1/chat/completions",
    "completion": "/v1/completions",
    "embedding": "/v1/embeddings",
    "image": "/v1/images/generations",
    "speech": "/v1/audio/speech",
    "video": "/v1/tasks",
}


def route_figures(stack: LocalStack) -> dict[str, tuple[float, float]]:
    """Per route, POSTs answered (any status) and the seconds they took in all, from the gateway's /metrics."""
    values = parse(httpx.get(f"{stack.url}/metrics", timeout=5).text)
    out: dict[str, tuple[float, float]] = {}
    for route in ROUTES.values():
        count = sum(
            v for k, v in values.items() if k.startswith("modalmesh_gateway_http_requests_total{") and _is(k, route)
        )
        seconds = sum(
            v
            for k, v in values.items()
            if k.startswith("modalmesh_gateway_http_request_seconds_sum{") and _is(k, route)
        )
        out[route] = (count, seconds)
    return out


def _is(key: str, route: str) -> bool:
    return f'route="{route}"' in key and 'method="POST"' in key


async def run_and_check(stack: LocalStack, classes: tuple[RequestClass, ...], requests: int, tmp: Path) -> RunResult:
    spec = RunSpec(
        target=stack.url,
        api_key=stack.api_key,
        classes=classes,
        shape=Shape(kind="concurrency", concurrency=3),
        requests=requests,
        warmup=1,
        duration_s=240,
        timeout_s=120,
    )
    before = route_figures(stack)
    result = await Run(spec).execute()
    sent = Counter(ROUTES[r.kind] for r in result.records)
    deadline = time.monotonic() + 10
    while True:  # the gateway counts a request once its response has gone: wait for the last ones' counts
        after = route_figures(stack)
        counted = {route: after[route][0] - before[route][0] for route in sent}
        if counted == dict(sent) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.1)
    assert counted == dict(sent)
    for route, n in sent.items():
        if route == ROUTES["video"]:
            continue  # the gateway times a task's submission; the client, the task to its end
        gateway_mean = (after[route][1] - before[route][1]) / n
        mine = [r.latency for r in result.records if ROUTES[r.kind] == route]
        client_mean = sum(mine) / n
        # The client sees the gateway's time plus the loopback round trip, never less.
        assert gateway_mean <= client_mean + 0.002
        assert client_mean - gateway_mean < 0.05 + 0.1 * client_mean
    summary = summarize(result.records, {c.name: (c.kind, c.slo) for c in classes})
    errors = {name: figures["errors"] for name, figures in summary["classes"].items()}
    assert all(summary["classes"][c.name]["failed"] == 0 for c in classes), errors
    write_run(tmp, result, summary)
    return result


async def test_media_mix_counts_agree_with_the_gateway(media_stack: LocalStack, tmp_path: Path) -> None:
    classes = (
        RequestClass(name="embed", kind="embedding", model="all-minilm-l6-v2", weight=2, inputs=4),
        RequestClass(name="image", kind="image", model="tiny-sd", weight=1, size="64x64", steps=2),
        RequestClass(name="speech", kind="speech", model="espeak", weight=1),
        RequestClass(name="video", kind="video", model="tiny-video", weight=1, size="32x32", frames=9, steps=1),
    )
    result = await run_and_check(media_stack, classes, 20, tmp_path)
    speech = [r for r in result.records if r.cls == "speech"]
    assert all(r.audio_s and r.audio_s > 0.2 for r in speech)
    assert all(r.items == 1 for r in result.records if r.cls == "image")
    videos = [r for r in result.records if r.cls == "video"]
    assert all(r.items == 1 and r.queue_wait is not None and 0 <= r.queue_wait < r.latency for r in videos)


async def test_text_mix_counts_agree_with_the_gateway(running_stack: LocalStack, tmp_path: Path) -> None:
    params = {"logit_bias": {"2": -100, "4": -100}}
    classes = (
        RequestClass(name="chat", kind="chat", model="tiny-llama", weight=2, max_tokens=8, params=params),
        RequestClass(name="complete", kind="completion", model="tiny-llama", weight=1, max_tokens=8, params=params),
    )
    result = await run_and_check(running_stack, classes, 9, tmp_path)
    chats = [r for r in result.records if r.cls == "chat" and not r.warmup]
    # The tiny model's tokens come in a few SSE events (or one): a gap per event after the first.
    assert all(r.output_tokens == 8 and r.ttft and 0 < r.ttft <= r.latency and len(r.itls) < 8 for r in chats)
