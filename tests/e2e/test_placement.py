"""Model placement end to end: a host worker, the catalog file, and the scheduler's placement
controller, as processes on a real NATS server with the tiny llama.cpp model.

- a model with `min_replicas: 1` is loaded warm, and served;
- a model with none is loaded when a request comes for it (a cold start), and that request served;
- a priority-9 model added to the catalog while the host is full pushes the priority-3 model out."""

from __future__ import annotations

import asyncio
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
    env = {"MODALMESH_HOST_MEMORY_MB": "100", "MODALMESH_SCHEDULER_CATALOG_FILE": str(catalog),
           "MODALMESH_SCHEDULER_PLACEMENT_INTERVAL_S": "0.5"}
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
    return await client.post("/v1/chat/completions", json={"model": model, "max_tokens": 3,
                                                           "messages": [{"role": "user", "content": "hi"}]})


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
    client: httpx.AsyncClient, catalog: Path,
) -> None:
    await until_state(client, "low-chat", "running")
    await asyncio.to_thread(catalog.write_text, CATALOG + HIGH)  # edited while running: no restart
    high = await until_state(client, "high-chat", "running")
    assert [r["worker"] for r in high["replicas"]] == ["host-1"]
    assert (await models(client))["low-chat"]["state"] == "stopped"
    assert (await models(client))["lazy-chat"]["state"] == "running"  # priority 5, and it fit: left alone
    res = await chat(client, "high-chat")
    assert res.status_code == 200 and res.json()["model"] == "high-chat"
