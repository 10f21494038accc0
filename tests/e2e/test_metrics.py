"""Every service's Prometheus metrics, scraped from the running stack at the targets `make run` writes
into its `prometheus.yml`: one chat is counted at each hop, and every query of every Grafana
dashboard in deploy/compose/grafana, and of every alert rule in deploy/compose/prometheus, names a
metric that some service really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from services.devstack import LocalStack

pytestmark = pytest.mark.e2e
DASHBOARDS = Path(__file__).parents[2] / "deploy" / "compose" / "grafana" / "dashboards"
ALERTS = Path(__file__).parents[2] / "deploy" / "compose" / "prometheus" / "alerts.yml"
SERIES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
    "untyped": ("",),
}
METRIC_NAME = re.compile(r"\b((?:modalmesh|DCGM)_\w+)")


def scrape_targets(stack: LocalStack) -> dict[str, str]:
    config = yaml.safe_load((stack.data / "prometheus.yml").read_text())
    return {job["job_name"]: job["static_configs"][0]["targets"][0] for job in config["scrape_configs"]}


async def scrape(stack: LocalStack) -> dict[str, dict[str, float]]:
    """Per job: every series name it exports (labelled metrics with no samples yet count too), with
    the sum of its samples."""
    exported: dict[str, dict[str, float]] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for job, target in scrape_targets(stack).items():
            text = (await client.get(f"http://{target}/metrics")).text
            series: dict[str, float] = {}
            for family in text_string_to_metric_families(text):
                for suffix in SERIES.get(family.type, ("",)):
                    series.setdefault(family.name + suffix, 0.0)
                for sample in family.samples:
                    series[sample.name] = series.get(sample.name, 0.0) + sample.value
            exported[job] = series
    return exported


def total(exported: dict[str, dict[str, float]], name: str) -> float:
    return sum(series.get(name, 0.0) for series in exported.values())


async def test_one_chat_is_counted_at_every_hop_and_every_dashboard_query_is_exported(
    running_stack: LocalStack,
) -> None:
    jobs = scrape_targets(running_stack)
    assert {"gateway", "monitor", "scheduler", "aggregator", "worker-llm-1"} <= set(jobs)
    before = await scrape(running_stack)
    async with httpx.AsyncClient(base_url=running_stack.url, timeout=60, headers=running_stack.headers) as client:
        res = await client.post(
            "/v1/chat/completions",
            json={"model": "tiny-llama", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        )
    assert res.status_code == 200
    completion = res.json()["usage"]["completion_tokens"]
    after = await scrape(running_stack)

    def grew(name: str) -> float:
        return total(after, name) - total(before, name)

    assert grew("modalmesh_gateway_ttft_seconds_count") >= 1
    assert grew("modalmesh_gateway_tokens_total") >= completion
    assert grew("modalmesh_gateway_http_requests_total") >= 1
    assert grew("modalmesh_scheduler_dispatched_total") >= 1
    assert grew("modalmesh_scheduler_queue_wait_seconds_count") >= 1
    assert grew("modalmesh_worker_requests_total") >= 1 and grew("modalmesh_worker_tokens_total") >= completion
    assert grew("modalmesh_aggregator_requests_finished_total") >= 1
    assert (
        total(after, "modalmesh_jetstream_stream_messages") >= 0
        and "modalmesh_jetstream_stream_messages" in (after["scheduler"])
    )
    assert after["scheduler"].get("modalmesh_scheduler_live_workers", 0) >= 1

    names = {name for series in after.values() for name in series}
    for rule in yaml.safe_load(ALERTS.read_text())["groups"][0]["rules"]:
        for metric in METRIC_NAME.findall(rule["expr"]):
            assert metric in names, f"alert {rule['alert']}: {metric} is exported by no service"
    boards = sorted(DASHBOARDS.glob("*.json"))
    assert {b.stem for b in boards} >= {"fleet", "requests", "models", "nats"}
    for board in boards:
        queries = [t["expr"] for p in json.loads(board.read_text())["panels"] for t in p["targets"]]
        assert queries, board
        for query in queries:
            for metric in METRIC_NAME.findall(query):
                assert metric in names, f"{board.name}: {metric} (in `{query}`) is exported by no service"


def test_dashboards_are_valid_grafana_json_on_the_provisioned_data_source() -> None:
    provisioning = DASHBOARDS.parent / "provisioning"
    source = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    for board in DASHBOARDS.glob("*.json"):
        model: dict[str, Any] = json.loads(board.read_text())
        assert model["uid"] and model["title"] and model["panels"], board
        ids = [p["id"] for p in model["panels"]]
        assert len(ids) == len(set(ids)), f"{board.name}: panel ids repeat"
        for p in model["panels"]:
            assert p["datasource"]["uid"] == source["uid"] and {"h", "w", "x", "y"} <= set(p["gridPos"]), p["title"]
