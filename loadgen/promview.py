"""ModalMesh's own view of a run: its services' Prometheus metrics, sampled while the run goes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client.parser import text_string_to_metric_families

PREFIX = "modalmesh_"
# Gauges worth a line over the run: load inside the gateway, the scheduler's queues and JetStream's backlog.
GAUGES = (
    "modalmesh_gateway_in_flight",
    "modalmesh_scheduler_queue_depth",
    "modalmesh_jetstream_consumer_pending",
    "modalmesh_jetstream_consumer_ack_pending",
)
COUNTERS = (
    "modalmesh_gateway_http_requests_total",
    "modalmesh_gateway_requests_finished_total",
    "modalmesh_scheduler_dispatched_total",
)


def series_key(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}}"


def parse(text: str) -> dict[str, float]:
    """Every ModalMesh series of a scrape, histogram buckets left out, as `name{labels}` -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(PREFIX) and not sample.name.endswith("_bucket"):
                out[series_key(sample.name, sample.labels)] = sample.value
    return out


def deltas(first: dict[str, float], last: dict[str, float], names: tuple[str, ...] = COUNTERS) -> dict[str, float]:
    """How much each counter series of `names` grew between two scrapes (a new series counts from 0)."""
    return {
        key: value - first.get(key, 0.0)
        for key, value in last.items()
        if key.split("{", 1)[0] in names and value - first.get(key, 0.0) > 0
    }


def totals(samples: dict[str, float], name: str) -> float:
    return sum(v for k, v in samples.items() if k.split("{", 1)[0] == name)


def summarize(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Counter growth over the run and the peak of each gauge, per scraped URL."""
    by_url: dict[str, list[dict[str, Any]]] = {}
    for s in samples:
        by_url.setdefault(s["url"], []).append(s)
    out: dict[str, Any] = {}
    for url, rows in by_url.items():
        peaks = {name: max(totals(r["values"], name) for r in rows) for name in GAUGES}
        out[url] = {
            "samples": len(rows),
            "counter_deltas": deltas(rows[0]["values"], rows[-1]["values"]),
            "gauge_peaks": {k: v for k, v in peaks.items() if any(name_in(r, k) for r in rows)},
        }
    return out


def name_in(row: dict[str, Any], name: str) -> bool:
    return any(k.split("{", 1)[0] == name for k in row["values"])


class Sampler:
    """Scrapes each URL every `every_s` seconds until stopped, and once more at the stop."""

    def __init__(self, urls: list[str], every_s: float, clock: Callable[[], float]) -> None:
        self.urls = urls
        self.every_s = every_s
        self.clock = clock  # the run's own clock, so samples line up with its records
        self.samples: list[dict[str, Any]] = []
        self.ready = asyncio.Event()  # set after the first round of scrapes: counters before any request
        self._stop = asyncio.Event()

    async def scrape(self, client: httpx.AsyncClient) -> None:
        for url in self.urls:
            try:
                response = await client.get(url)
            except httpx.HTTPError:
                continue
            if response.status_code == 200:
                values = parse(response.text)
                self.samples.append({"t": self.clock(), "url": url, "values": values})

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            while not self._stop.is_set():
                await self.scrape(client)
                self.ready.set()
                try:
                    await asyncio.wait_for(self._stop.wait(), self.every_s)
                except asyncio.TimeoutError:
                    pass
            await self.scrape(client)

    def stop(self) -> None:
        self._stop.set()


def urls_from_scrape_config(path: Path, jobs: tuple[str, ...] = ("gateway", "scheduler")) -> list[str]:
    """The /metrics URLs of the gateway and the scheduler (its queue depth and JetStream's backlog) from a
    Prometheus scrape configuration, such as the `.data/prometheus.yml` that `make run` writes."""
    config = yaml.safe_load(path.read_text()) or {}
    urls = []
    for job in config.get("scrape_configs", []):
        if job.get("job_name") not in jobs:
            continue
        metrics_path = job.get("metrics_path", "/metrics")
        for static in job.get("static_configs", []):
            urls += [f"http://{target}{metrics_path}" for target in static.get("targets", [])]
    return urls


def speaks_modalmesh(target: str) -> bool:
    """Whether the target's /metrics has ModalMesh's gateway series: then the report adds its view."""
    try:
        response = httpx.get(f"{target.rstrip('/')}/metrics", timeout=3)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and "modalmesh_gateway_" in response.text
