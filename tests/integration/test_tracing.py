"""One trace across every service: the gateway (its real app), scheduler, worker (the real tiny
llama.cpp engine) and aggregator run in this process against a real nats-server, with an in-memory
span exporter; one chat request makes spans in all four, joined by the `traceparent` the NATS
messages carry, under the trace the client started."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.gateway.settings import GatewaySettings
from tests.integration.inprocess import in_process_stack

MODEL = "tiny-traced"
KEY = "trace-test-key"
CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture(scope="module")
async def gateway(nats_url: str, spans: InMemorySpanExporter) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process_stack(GatewaySettings(nats_url=nats_url, api_keys=[KEY]), MODEL, "traced-1") as (client, _):
        yield client


def by_service(spans: tuple[ReadableSpan, ...], request_id: str | None = None) -> dict[str, list[ReadableSpan]]:
    out: dict[str, list[ReadableSpan]] = {}
    for span in spans:
        attributes = span.attributes or {}
        service = str(attributes.get("modalmesh.service", "gateway" if span.kind is SpanKind.SERVER else None))
        if request_id is None or attributes.get("modalmesh.request_id") in (None, request_id):
            out.setdefault(service, []).append(span)
    return out


async def test_one_request_is_one_trace_through_every_service(
    gateway: httpx.AsyncClient,
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    res = await gateway.post(
        "/v1/chat/completions",
        headers={"traceparent": f"00-{CLIENT_TRACE}-b7ad6b7169203331-01"},
        json={"model": MODEL, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert res.status_code == 200
    rid = res.json()["id"]
    for _ in range(100):  # the aggregator's span ends just after the answer leaves
        found = by_service(spans.get_finished_spans(), rid)
        if {"gateway", "scheduler", "worker", "aggregator"} <= set(found):
            break
        await asyncio.sleep(0.05)
    assert {"gateway", "scheduler", "worker", "aggregator"} <= set(found), found
    traced = [s for group in found.values() for s in group if s.context is not None]
    assert {format(s.context.trace_id, "032x") for s in traced if s.context} == {CLIENT_TRACE}
    http = found["gateway"][0]  # FastAPI's server span
    assert http.name == "POST /v1/chat/completions" and http.parent is not None
    assert format(http.parent.span_id, "016x") == "b7ad6b7169203331"  # the client's span
    scheduler = {s.name: s for s in found["scheduler"]}
    wait, schedule = scheduler["queue wait"], scheduler["schedule"]
    assert schedule.parent is not None and http.context is not None and schedule.parent.span_id == http.context.span_id
    assert wait.parent is not None and wait.parent.span_id == http.context.span_id
    assert wait.start_time is not None and schedule.start_time is not None and wait.start_time <= schedule.start_time
    assert schedule.attributes["modalmesh.worker"] == "traced-1"
    engine = found["worker"][0]
    assert engine.parent is not None and schedule.context is not None
    assert engine.parent.span_id == schedule.context.span_id
    aggregate = found["aggregator"][0]
    assert aggregate.parent is not None and engine.context is not None
    assert aggregate.parent.span_id == engine.context.span_id


async def test_a_request_without_a_traceparent_starts_its_own_trace(
    gateway: httpx.AsyncClient,
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    res = await gateway.post("/v1/completions", json={"model": MODEL, "max_tokens": 2, "prompt": "a"})
    assert res.status_code == 200
    for _ in range(100):
        found = by_service(spans.get_finished_spans(), res.json()["id"])
        if "aggregator" in found and "gateway" in found:
            break
        await asyncio.sleep(0.05)
    ids = {format(s.context.trace_id, "032x") for group in found.values() for s in group if s.context}
    assert len(ids) == 1 and CLIENT_TRACE not in ids
