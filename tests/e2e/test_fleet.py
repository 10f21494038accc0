"""Fleet telemetry end to end: the monitor agent on this (GPU-less) node, read through the gateway,
its Prometheus endpoint, alerts, and a node that goes offline and comes back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import httpx
import pytest

from services.devstack import LocalStack

pytestmark = pytest.mark.e2e


@pytest.fixture
async def client(running_stack: LocalStack) -> Any:
    async with httpx.AsyncClient(base_url=running_stack.url, timeout=30, headers=running_stack.headers) as c:
        yield c


async def wait_for(client: httpx.AsyncClient, path: str, check: Any, timeout_s: float = 20) -> Any:
    deadline = time.monotonic() + timeout_s
    body = None
    while time.monotonic() < deadline:
        body = (await client.get(path)).json()
        if check(body):
            return body
        await asyncio.sleep(0.2)
    raise AssertionError(f"{path} never satisfied the check; last: {body}")


async def test_nodes_show_live_telemetry_and_capabilities(client: httpx.AsyncClient) -> None:
    body = await wait_for(client, "/v1/nodes", lambda b: any(n["online"] and n["capabilities"] for n in b["data"]))
    node = next(n for n in body["data"] if n["online"])
    caps, telemetry = node["capabilities"], node["telemetry"]
    assert caps["cpu_cores"] == os.cpu_count() and "psutil" in caps["sources"]
    assert caps["gpus"] == [] and "nvml" not in caps["sources"]  # no GPU here, said plainly
    assert 0 <= telemetry["cpu_pct"] <= 100 and telemetry["mem_total_mb"] > 1000


async def test_workers_lists_the_live_worker(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/workers")).json()
    worker = next(w for w in body["data"] if w["worker_id"] == "llm-1")
    assert worker["models"] == ["tiny-llama"] and worker["slots_total"] == 2


async def test_prometheus_endpoint_has_dcgm_and_node_metrics(running_stack: LocalStack) -> None:
    async with httpx.AsyncClient() as c:
        text = (await c.get(f"http://127.0.0.1:{running_stack.metrics_port}/metrics")).text
    assert "# TYPE DCGM_FI_DEV_GPU_UTIL gauge" in text and "# TYPE DCGM_FI_DEV_FB_USED gauge" in text
    line = next(line for line in text.splitlines() if line.startswith("modalmesh_node_memory_total_bytes{"))
    assert float(line.split()[-1]) > 1e9


async def test_node_offline_alert_fires_and_resolves(client: httpx.AsyncClient, running_stack: LocalStack) -> None:
    [pid] = running_stack.service_pids("services.monitor")
    os.kill(pid, signal.SIGSTOP)  # a node that stops talking, as a hung or cut-off machine would
    try:
        stopped = time.monotonic()
        body = await wait_for(
            client, "/v1/alerts", lambda b: any(a["name"] == "node_offline" for a in b["active"]), timeout_s=15
        )
        noticed = time.monotonic() - stopped
        nodes = (await client.get("/v1/nodes")).json()["data"]
        assert not any(n["online"] for n in nodes)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert noticed < 2 + 1.5  # dead_after (2 s in this stack) plus one check interval
    await wait_for(client, "/v1/alerts", lambda b: not any(a["name"] == "node_offline" for a in b["active"]))
    recent = (await client.get("/v1/alerts")).json()["recent"]
    states = [a["state"] for a in recent if a["name"] == "node_offline"]
    assert states[:2] == ["resolved", "firing"] and body["active"][0]["severity"] == "critical"
