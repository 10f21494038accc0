"""Model placement end to end: a host worker, the catalog file, and the scheduler's placement
controller, as processes on a real NATS server with the tiny llama.cpp model.

- a model with `min_replicas: 1` is loaded warm, and served;
- a model with none is loaded when a request comes for it (a cold start), and that request served;
- a priority-9 model added to the catalog while the host is full pushes the priority-3 model out;
- an answer cut off by an unload is handed back, re-queued, and finished once its model is back;
- the admin API's priority change, pin, load, unload, drain and resume take effect, and bad calls
  get OpenAI-shaped errors."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.devstack import LocalStack

pytestmark = pytest.mark.e2e
MODEL = "{engine: llama_cpp, source: tiny, modality: [chat, completion], memory_mb: %d, priority: %d, min_replicas: %d}"
CATALOG = f"models:\n  low-chat: {MODEL % (80, 3, 1)}\n  lazy-chat: {MODEL % (10, 5, 0)}\n"
HIGH = f"  high-chat: {MODEL % (80, 9, 1)}\n"


@pytest.fixture(scope="module")
def catalog() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "catalog.yaml"
        path.write_text(CATALOG)
        yield path


@pytest.fixture(scope="module")
def placing_stack(catalog: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    env = {
        "MODALMESH_HOST_MEMORY_MB": "100",
        "MODALMESH_SCHEDULER_CATALOG_FILE": str(catalog),
        "MODALMESH_SCHEDULER_PLACEMENT_INTERVAL_S": "0.5",
        "MODALMESH_WORKER_DRAIN_TIMEOUT_S": "0.05",
    }  # an unloaded model's work is cut off (and handed back) at once
    with LocalStack(data=tmp_path_factory.mktemp("placing"), env=env) as stack:
        yield stack


@pytest.fixture
async def client(placing_stack: LocalStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=placing_stack.url, timeout=60, headers=placing_stack.headers) as c:
        yield c


async def models(client: httpx.AsyncClient) -> dict[str, Any]:
    return {m["id"]: m for m in (await client.get("/v1/admin/models")).json()["data"]}


async def until_state(client: httpx.AsyncClient, model: str, state: str, timeout_s: float = 30) -> dict[str, Any]:
    for _ in range(int(timeout_s / 0.25)):
        entry = (await models(client)).get(model)
        if entry is not None and entry["state"] == state:
            return entry
        await asyncio.sleep(0.25)
    pytest.fail(f"{model} never became {state}: {await models(client)}")


async def chat(client: httpx.AsyncClient, model: str) -> httpx.Response:
    return await client.post(
        "/v1/chat/completions", json={"model": model, "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]}
    )


async def test_a_model_with_a_warm_minimum_is_loaded_and_served(client: httpx.AsyncClient) -> None:
    low = await until_state(client, "low-chat", "running")
    assert [r["worker"] for r in low["replicas"]] == ["host-1"] and low["declared"] and low["priority"] == 3
    res = await chat(client, "low-chat")
    assert res.status_code == 200 and res.json()["model"] == "low-chat"


async def test_a_model_without_replicas_is_loaded_when_a_request_comes(client: httpx.AsyncClient) -> None:
    assert (await models(client))["lazy-chat"]["state"] == "stopped"
    res = await chat(client, "lazy-chat")  # waits in the scheduler while the host loads it
    assert res.status_code == 200 and res.json()["model"] == "lazy-chat"
    for _ in range(20):  # schedulers report twice a heartbeat
        report = (await client.get("/v1/admin/queues")).json()
        if sum(d["cold_starts"] for d in report["data"]) >= 1:
            break
        await asyncio.sleep(0.25)
    else:
        pytest.fail(f"no cold start counted: {report}")
    assert report["placements"].get("demand", 0) >= 1 and report["placements"].get("warm", 0) >= 1


async def test_a_priority_9_model_pushes_the_priority_3_model_off_a_full_host(
    client: httpx.AsyncClient,
    catalog: Path,
) -> None:
    await until_state(client, "low-chat", "running")
    await asyncio.to_thread(catalog.write_text, CATALOG + HIGH)  # edited while running: no restart
    high = await until_state(client, "high-chat", "running")
    assert [r["worker"] for r in high["replicas"]] == ["host-1"]
    low = (await models(client))["low-chat"]
    assert (low["state"], low["reason"]) == ("preempted", "preempted by high-chat")
    assert (await models(client))["lazy-chat"]["state"] == "running"  # priority 5, and it fit: left alone
    res = await chat(client, "high-chat")
    assert res.status_code == 200 and res.json()["model"] == "high-chat"


async def test_an_answer_cut_off_by_an_unload_is_requeued_and_finished(client: httpx.AsyncClient) -> None:
    await until_state(client, "lazy-chat", "running")
    body = {
        "model": "lazy-chat",
        "max_tokens": 1900,
        "stream": True,
        "logit_bias": {"2": -100, "4": -100},
        "messages": [{"role": "user", "content": "Tell me a long story"}],
    }
    text, finish, unloaded = "", None, False
    async with client.stream("POST", "/v1/chat/completions", json=body) as stream:
        async for line in stream.aiter_lines():
            if not line.startswith("data: {"):
                continue
            choice = json.loads(line[6:])["choices"][0]
            text += choice["delta"].get("content") or ""
            finish = choice.get("finish_reason") or finish
            if text and not unloaded:  # mid-answer: the operator unloads the model
                unloaded = True
                assert (await client.post("/v1/admin/models/lazy-chat/unload")).status_code == 200
    assert finish == "length" and text  # finished, after a reload for the re-queued request
    entry = await until_state(client, "lazy-chat", "running")
    assert entry["override"]["min_replicas"] == 0 and entry["reason"] == "demand"


async def test_a_priority_change_and_a_pin_decide_who_holds_the_host(client: httpx.AsyncClient) -> None:
    raised = await client.post("/v1/admin/models/low-chat/priority", json={"priority": 10})
    assert raised.status_code == 200 and raised.json()["priority"] == 10
    await until_state(client, "low-chat", "running")  # 10 over high-chat's 9: low-chat takes the host back
    high = await until_state(client, "high-chat", "preempted")
    assert high["reason"] == "preempted by low-chat"

    assert (await client.post("/v1/admin/models/low-chat/pin", json={})).json()["pinned"] is True
    assert (await client.post("/v1/admin/models/low-chat/priority", json={"priority": 2})).status_code == 200
    await asyncio.sleep(2.0)  # four planning rounds: high-chat (9) may not push the pinned low-chat (2) out
    now = await models(client)
    assert now["low-chat"]["state"] == "running" and now["high-chat"]["state"] != "running"

    assert (await client.post("/v1/admin/models/low-chat/pin", json={"pinned": False})).json()["pinned"] is False
    await until_state(client, "high-chat", "running")
    assert (await models(client))["low-chat"]["reason"] == "preempted by high-chat"


async def test_load_and_unload_on_the_admin_api(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/admin/models/lazy-chat/unload")).status_code == 200
    stopped = await until_state(client, "lazy-chat", "stopped")
    assert stopped["reason"] == "operator"
    loaded = await client.post("/v1/admin/models/lazy-chat/load")
    assert loaded.status_code == 200 and loaded.json()["min_replicas"] == 1
    assert (await until_state(client, "lazy-chat", "running"))["reason"] == "warm"


async def test_a_drained_worker_takes_no_new_work_until_resumed(client: httpx.AsyncClient) -> None:
    await until_state(client, "lazy-chat", "running")
    assert (await client.post("/v1/admin/workers/host-1/drain")).status_code == 200
    for _ in range(40):
        replicas = (await models(client))["lazy-chat"]["replicas"]
        if replicas and replicas[0]["worker_state"] == "draining":
            break
        await asyncio.sleep(0.25)
    else:
        pytest.fail(f"host-1 never drained: {replicas}")
    waiting = asyncio.create_task(chat(client, "lazy-chat"))
    await asyncio.sleep(1.5)
    assert not waiting.done()  # held in the scheduler's queue
    assert (await client.post("/v1/admin/workers/host-1/resume")).status_code == 200
    res = await asyncio.wait_for(waiting, 30)
    assert res.status_code == 200 and res.json()["model"] == "lazy-chat"


async def test_bad_admin_calls_get_openai_errors(client: httpx.AsyncClient) -> None:
    missing = await client.post("/v1/admin/models/no-such-model/load")
    assert missing.status_code == 404 and missing.json()["error"]["type"]
    too_high = await client.post("/v1/admin/models/low-chat/priority", json={"priority": 11})
    assert too_high.status_code == 400 and "priority" in too_high.json()["error"]["message"]
    fixed = await client.post("/v1/admin/models/tiny-llama/pin", json={})  # runs on its own worker
    assert fixed.status_code == 400 and "catalog file" in fixed.json()["error"]["message"]
    assert (await client.post("/v1/admin/workers/nobody/drain")).status_code == 404
