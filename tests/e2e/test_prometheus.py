"""A real Prometheus (Debian's `prometheus`) scraping the running stack with the configuration
`make run` writes, and loading the alert rules of deploy/compose: every target is up, the services'
own metrics are queryable, and the rules are loaded and evaluated."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from services.devstack import LocalStack, free_port

NO_PROMETHEUS = "no prometheus binary (Debian: prometheus)"
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("prometheus") is None, reason=NO_PROMETHEUS)]
ALERTS = Path(__file__).parents[2] / "deploy" / "compose" / "prometheus" / "alerts.yml"


@pytest.fixture(scope="module")
def prometheus(running_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("prometheus")
    config: dict[str, Any] = yaml.safe_load((running_stack.data / "prometheus.yml").read_text())
    config["global"]["evaluation_interval"] = "2s"
    config["rule_files"] = [str(ALERTS)]
    for job in config["scrape_configs"]:
        job["scrape_interval"] = "1s"
    (folder / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={folder / 'prometheus.yml'}",
            f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(10)


async def query(client: httpx.AsyncClient, url: str, promql: str) -> list[dict[str, Any]]:
    res = await client.get(f"{url}/api/v1/query", params={"query": promql})
    return res.json()["data"]["result"] if res.status_code == 200 else []  # type: ignore[no-any-return]


async def test_prometheus_scrapes_every_service_and_loads_the_alert_rules(
    running_stack: LocalStack,
    prometheus: str,
) -> None:
    jobs = {
        job["job_name"] for job in yaml.safe_load((running_stack.data / "prometheus.yml").read_text())["scrape_configs"]
    }
    async with httpx.AsyncClient(timeout=10) as client:
        chat = await client.post(
            f"{running_stack.url}/v1/chat/completions",
            headers=running_stack.headers,
            json={"model": "tiny-llama", "max_tokens": 3, "messages": [{"role": "user", "content": "hi"}]},
            timeout=60,
        )
        assert chat.status_code == 200
        up: dict[str, str] = {}
        for _ in range(120):
            try:
                up = {r["metric"]["job"]: r["value"][1] for r in await query(client, prometheus, "up")}
            except httpx.TransportError:  # not listening yet
                pass
            if set(up) >= jobs and all(v == "1" for v in up.values()):
                break
            await asyncio.sleep(0.5)
        assert set(up) >= jobs and all(v == "1" for v in up.values()), up
        for _ in range(40):
            tokens = await query(client, prometheus, 'sum(modalmesh_worker_tokens_total{kind="completion"})')
            if tokens and float(tokens[0]["value"][1]) > 0:
                break
            await asyncio.sleep(0.5)
        assert tokens and float(tokens[0]["value"][1]) > 0
        rules = (await client.get(f"{prometheus}/api/v1/rules")).json()["data"]["groups"]
        names = {r["name"] for g in rules for r in g["rules"]}
        assert {"GpuTemperature", "NodeOffline", "WorkerCrashLoop"} <= names
        assert all(r["health"] in ("ok", "unknown") for g in rules for r in g["rules"])
