"""End to end over HTTP: gateway -> scheduler -> llama.cpp worker -> aggregator -> gateway, as processes."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from typing import Any

import httpx
import pytest

from contracts import streams
from contracts.requests import Modality
from contracts.tasks import TaskState, TaskStatus
from contracts.workers import ModelEntry
from services.common.bus import connect
from services.devstack import LocalStack as RunningStack

pytestmark = pytest.mark.e2e
MODEL = "tiny-llama"
NO_EOS = {"2": -100, "4": -100}
HELLO = [{"role": "user", "content": "Hello there"}]


def sse_events(lines: list[str]) -> list[str]:
    return [line[len("data: ") :] for line in lines if line.startswith("data: ")]


async def post_stream(client: httpx.AsyncClient, body: dict[str, Any]) -> list[str]:
    async with client.stream("POST", "/v1/chat/completions", json=body) as res:
        assert res.status_code == 200
        assert res.headers["content-type"].startswith("text/event-stream")
        return sse_events([line async for line in res.aiter_lines()])


@pytest.fixture
async def client(running_stack: RunningStack) -> Any:
    async with httpx.AsyncClient(base_url=running_stack.url, timeout=60, headers=running_stack.headers) as c:
        yield c


async def test_streamed_chat_arrives_in_several_chunks_then_done(client: httpx.AsyncClient) -> None:
    events = await post_stream(
        client,
        {
            "model": MODEL,
            "messages": HELLO,
            "stream": True,
            "max_tokens": 400,
            "logit_bias": NO_EOS,
            "stream_options": {"include_usage": True},
        },
    )
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = [c["choices"][0]["delta"].get("content") for c in chunks if c["choices"]]
    assert len([t for t in content if t]) >= 3
    finish = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish[0]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 400


async def test_non_streamed_chat_has_usage(client: httpx.AsyncClient) -> None:
    res = await client.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "max_tokens": 10, "logit_bias": NO_EOS}
    )
    assert res.status_code == 200
    body = res.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"].strip()
    assert body["usage"]["completion_tokens"] == 10
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + 10


async def test_completions_endpoint(client: httpx.AsyncClient) -> None:
    res = await client.post("/v1/completions", json={"model": MODEL, "prompt": "baba", "max_tokens": 5, "seed": 3})
    assert res.status_code == 200 and res.json()["object"] == "text_completion"


async def test_stop_sequence_cuts_the_text(client: httpx.AsyncClient) -> None:
    base = {"model": MODEL, "messages": HELLO, "max_tokens": 40, "seed": 11, "logit_bias": NO_EOS}
    full = (await client.post("/v1/chat/completions", json=base)).json()["choices"][0]["message"]["content"]
    stop = full.split()[3]
    cut = (await client.post("/v1/chat/completions", json={**base, "stop": [stop]})).json()
    assert stop not in cut["choices"][0]["message"]["content"]
    assert full.startswith(cut["choices"][0]["message"]["content"])
    assert cut["choices"][0]["finish_reason"] == "stop"


async def test_models_lists_catalog_and_liveness(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/models")).json()
    tiny = next(m for m in body["data"] if m["id"] == MODEL)
    assert tiny["live"] is True and tiny["workers"] == 1


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = (await client.get("/readyz")).json()
    assert ready["nats"] is True and ready["live_workers"] >= 1


async def test_web_page_is_served(client: httpx.AsyncClient) -> None:
    """The console's page and its script, under the self-only CSP (the browser tests drive it)."""
    res = await client.get("/")
    assert res.status_code == 200 and "text/html" in res.headers["content-type"]
    assert res.headers["content-security-policy"] == "default-src 'self'"
    script = re.search(r'src="(/assets/[^"]+\.js)"', res.text)
    assert script is not None, res.text[:300]
    bundle = await client.get(script.group(1))
    assert bundle.status_code == 200 and "/v1/chat/completions" in bundle.text


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        json.dumps({"model": MODEL}).encode(),
        json.dumps({"model": MODEL, "messages": HELLO, "max_tokens": "many"}).encode(),
        json.dumps({"model": MODEL, "messages": HELLO, "temperature": 9}).encode(),
    ],
)
async def test_invalid_body_is_400_in_openai_shape(client: httpx.AsyncClient, body: bytes) -> None:
    res = await client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert res.status_code == 400
    error = res.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


async def test_unknown_model_is_404(client: httpx.AsyncClient) -> None:
    res = await client.post("/v1/chat/completions", json={"model": "no-such-model", "messages": HELLO})
    assert res.status_code == 404 and res.json()["error"]["code"] == "model_not_found"


async def test_model_without_live_worker_is_503_with_retry_after(
    client: httpx.AsyncClient, running_stack: RunningStack
) -> None:
    bus = await connect(running_stack.nats_url, "test")
    try:
        kv = await bus.js.key_value(streams.KV_MODELS)
        entry = ModelEntry(id="offline-model", modality=(Modality.chat,), engine="none", source="")
        await kv.put("offline-model", entry.encode())
    finally:
        await bus.close()
    for _ in range(50):
        res = await client.post("/v1/chat/completions", json={"model": "offline-model", "messages": HELLO})
        if res.status_code != 404:
            break
        await asyncio.sleep(0.05)
    assert res.status_code == 503
    assert int(res.headers["retry-after"]) >= 1 and res.json()["error"]["code"] == "no_live_worker"


@pytest.mark.parametrize("stream", [False, True])
async def test_deadline_is_504(client: httpx.AsyncClient, stream: bool) -> None:
    res = await client.post(
        "/v1/chat/completions",
        headers={"X-ModalMesh-Timeout": "0.5"},
        json={"model": MODEL, "messages": HELLO, "max_tokens": 8000, "logit_bias": NO_EOS, "stream": stream},
    )
    # Tokens may already be flowing when the deadline passes: a stream then ends with an error event.
    if stream and res.status_code == 200:
        last = json.loads(sse_events(res.text.splitlines())[-2])
        assert last["error"]["code"] == "deadline_exceeded"
    else:
        assert res.status_code == 504 and res.json()["error"]["code"] == "deadline_exceeded"


async def test_two_concurrent_requests(client: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 30, "stream": True, "logit_bias": NO_EOS}
    first, second = await asyncio.gather(post_stream(client, body), post_stream(client, body))
    assert first[-1] == second[-1] == "[DONE]"
    ids = {json.loads(first[0])["id"], json.loads(second[0])["id"]}
    assert len(ids) == 2


async def task_state(nats_url: str, request_id: str) -> TaskState:
    bus = await connect(nats_url, "test")
    try:
        kv = await bus.js.key_value(streams.KV_TASKS)
        for _ in range(200):
            try:
                entry = await kv.get(request_id)
                return TaskState.decode(entry.value or b"")
            except Exception:
                await asyncio.sleep(0.05)
    finally:
        await bus.close()
    raise AssertionError(f"no final state for {request_id}")


async def test_client_disconnect_stops_generation(client: httpx.AsyncClient, running_stack: RunningStack) -> None:
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 8000, "stream": True, "logit_bias": NO_EOS}
    async with client.stream("POST", "/v1/chat/completions", json=body) as res:
        lines = res.aiter_lines()
        first = json.loads((await anext(lines))[len("data: ") :])
        # Leave after the first chunk: closing the response drops the connection.
    state = await task_state(running_stack.nats_url, first["id"])
    assert state.status is TaskStatus.cancelled
    assert state.usage is not None and state.usage.completion_tokens < 8000


async def test_crashed_worker_is_restarted(client: httpx.AsyncClient, running_stack: RunningStack) -> None:
    [pid] = running_stack.service_pids("services.workers")
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pids = running_stack.service_pids("services.workers")
        if pids and pids != [pid]:
            break
        await asyncio.sleep(0.2)
    assert pids and pids != [pid]
    while time.monotonic() < deadline:  # the new worker announces itself, then serves
        res = await client.post("/v1/chat/completions", json={"model": MODEL, "messages": HELLO, "max_tokens": 4})
        if res.status_code == 200:
            break
        await asyncio.sleep(0.2)
    assert res.status_code == 200 and res.json()["usage"]["completion_tokens"] >= 1


async def _dispatched(client: httpx.AsyncClient, domain: str, priority: str) -> int:
    res = await client.get("/v1/admin/queues")
    assert res.status_code == 200
    rows = {row["domain"]: row for row in res.json()["data"]}
    return rows[domain]["classes"][priority]["dispatched"] if domain in rows else 0


async def _dispatched_becomes(client: httpx.AsyncClient, priority: str, expected: int) -> None:
    for _ in range(50):  # schedulers report twice a heartbeat
        if await _dispatched(client, "llm", priority) == expected:
            return
        await asyncio.sleep(0.1)
    pytest.fail(f"{priority}: {await _dispatched(client, 'llm', priority)} dispatched, expected {expected}")


async def test_priority_from_the_body_or_the_header_reaches_the_scheduler(client: httpx.AsyncClient) -> None:
    body = {"model": MODEL, "messages": HELLO, "max_tokens": 2}
    await _dispatched_becomes(client, "realtime", await _dispatched(client, "llm", "realtime"))  # reports flowing
    realtime, batch = await _dispatched(client, "llm", "realtime"), await _dispatched(client, "llm", "batch")
    assert (await client.post("/v1/chat/completions", json={**body, "priority": "realtime"})).status_code == 200
    await _dispatched_becomes(client, "realtime", realtime + 1)
    res = await client.post("/v1/chat/completions", json=body, headers={"X-ModalMesh-Priority": "batch"})
    assert res.status_code == 200
    await _dispatched_becomes(client, "batch", batch + 1)
    bad = await client.post("/v1/chat/completions", json=body, headers={"X-ModalMesh-Priority": "urgent"})
    assert bad.status_code == 400 and "X-ModalMesh-Priority" in bad.json()["error"]["message"]
    wrong = await client.post("/v1/chat/completions", json={**body, "priority": "urgent"})
    assert wrong.status_code == 400


async def test_admin_models_shows_where_each_model_runs(client: httpx.AsyncClient) -> None:
    res = await client.get("/v1/admin/models")
    assert res.status_code == 200
    entry = {m["id"]: m for m in res.json()["data"]}[MODEL]
    assert entry["domain"] == "llm" and entry["priority_class"] == "interactive" and entry["state"] == "running"
    assert len(entry["replicas"]) >= 1 and entry["replicas"][0]["slots"] >= 1


async def test_a_model_with_no_worker_is_answered_by_its_catalog_fallback_which_says_so(
    client: httpx.AsyncClient,
    running_stack: RunningStack,
) -> None:
    bus = await connect(running_stack.nats_url, "test-catalog")
    kv = await bus.js.key_value(streams.KV_MODELS)
    ghost = ModelEntry(
        id="ghost-chat", modality=(Modality.chat,), engine="llama_cpp", source="nowhere", declared=True, fallback=MODEL
    )
    await kv.put(ghost.id, ghost.encode())
    try:
        for _ in range(50):  # the gateway and the scheduler follow the bucket
            res = await client.post(
                "/v1/chat/completions", json={"model": "ghost-chat", "messages": HELLO, "max_tokens": 3}
            )
            if res.status_code != 404:
                break
            await asyncio.sleep(0.1)
        assert res.status_code == 200, res.text
        assert res.json()["model"] == MODEL and res.json()["choices"][0]["message"]["content"]
        streamed = await post_stream(
            client, {"model": "ghost-chat", "messages": HELLO, "max_tokens": 3, "stream": True}
        )
        assert {json.loads(e)["model"] for e in streamed if e != "[DONE]"} == {MODEL}
    finally:
        await kv.delete(ghost.id)
        await bus.close()
