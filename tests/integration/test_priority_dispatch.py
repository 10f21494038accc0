"""The scheduler holds requests while their domain's workers are full and hands them out best class
first, keeps a domain under its cap, and drops a cancelled waiting request. A real NATS server and
the real scheduler; the test plays the worker's side of the bus (its heartbeats and its queue)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from nats.aio.subscription import Subscription

from contracts import dedup, streams, subjects
from contracts.assignments import Assignment
from contracts.base import now_ms
from contracts.control import Cancel
from contracts.errors import ErrorCode
from contracts.queues import QueueReport
from contracts.requests import ChatMessage, ChatRequest, ImageRequest, Modality, Priority
from contracts.results import ErrorChunk, FinalChunk, decode_chunk
from contracts.workers import ModelEntry, WorkerStatus
from services.common.bus import Bus
from services.common.domains import Domains, DomainSpec
from tests.natsserver import scheduler_on_own_server

FALLBACK_AFTER_S = 0.6


@dataclass
class Harness:
    bus: Bus
    started_ms: int = 0  # one process per worker id: a new start would read as a restart

    async def status(
        self, worker: str, outstanding: int, model: str = "chat-m", domain: str = "llm", slots: int = 1
    ) -> None:
        status = WorkerStatus(
            worker_id=worker,
            node="n1",
            engine="test",
            models=(model,),
            slots_total=slots,
            slots_free=max(0, slots - outstanding),
            outstanding=outstanding,
            domain=domain,
            started_ms=self.started_ms,
        )
        await self.bus.nc.publish(subjects.worker_status(worker), status.encode())
        await self.bus.nc.flush()

    async def send(self, request: ChatRequest | ImageRequest) -> None:
        await self.bus.js.publish(
            subjects.request(request.modality), request.encode(), headers=dedup.request(request.request_id)
        )


async def next_assignment(sub: Subscription, timeout: float = 5.0) -> str:
    return Assignment.decode((await sub.next_msg(timeout=timeout)).data).request_id


async def nothing_more(sub: Subscription, wait_s: float = 0.5) -> None:
    with pytest.raises(asyncio.TimeoutError):
        msg = await sub.next_msg(timeout=wait_s)
        pytest.fail(f"unexpected assignment {Assignment.decode(msg.data).request_id}")


def chat(rid: str, priority: Priority) -> ChatRequest:
    return ChatRequest(
        request_id=rid,
        model="chat-m",
        priority=priority,
        deadline_ms=now_ms() + 600_000,
        messages=(ChatMessage(role="user", content="hi"),),
    )


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    settings = {"heartbeat_s": 0.2, "aging_s": 600, "fallback_after_s": FALLBACK_AFTER_S}
    domains = Domains(domains={"image": DomainSpec(max_concurrency=1), "small": DomainSpec(max_queue=1)})
    async with scheduler_on_own_server(settings, domains=domains) as bus:
        yield Harness(bus, started_ms=now_ms())


async def test_waiting_requests_go_out_realtime_first_then_interactive_then_batch(harness: Harness) -> None:
    assigned = await harness.bus.nc.subscribe(subjects.assign("w1"))
    reports = await harness.bus.nc.subscribe(subjects.QUEUE_REPORTS_ALL)
    await harness.status("w1", outstanding=0)
    await harness.send(chat("first", Priority.batch))
    assert await next_assignment(assigned) == "first"
    await harness.status("w1", outstanding=1)  # busy from now on
    for rid, priority in [("b", Priority.batch), ("i", Priority.interactive), ("r", Priority.realtime)]:
        await harness.send(chat(rid, priority))
        await asyncio.sleep(0.05)
    await nothing_more(assigned)

    for _ in range(20):  # the scheduler reports what waits, per class
        report = QueueReport.decode((await reports.next_msg(timeout=2)).data)
        llm = {d.domain: d for d in report.domains}.get("llm")
        if llm is not None and sum(c.waiting for c in llm.classes.values()) == 3:
            break
    else:
        pytest.fail("no report of three waiting requests")
    await reports.unsubscribe()  # reports keep coming: unread, they would hold up the closing drain
    assert {p: c.waiting for p, c in llm.classes.items()} == {
        Priority.batch: 1,
        Priority.interactive: 1,
        Priority.realtime: 1,
    }
    assert llm.in_flight == 1 and llm.slots == 1

    order = []
    for _ in range(3):
        await harness.status("w1", outstanding=0)  # a slot comes free: the best waiting request takes it
        order.append(await next_assignment(assigned))
        await harness.status("w1", outstanding=1)
    assert order == ["r", "i", "b"]
    await nothing_more(assigned)


async def test_a_domain_cap_holds_work_even_when_its_workers_have_free_slots(harness: Harness) -> None:
    assigned = await harness.bus.nc.subscribe(subjects.ASSIGN_ALL)
    for worker in ("img-1", "img-2"):
        await harness.status(worker, outstanding=0, model="img-m", domain="image")
    for i in range(2):
        await harness.send(
            ImageRequest(request_id=f"img-{i}", model="img-m", prompt="a cat", deadline_ms=now_ms() + 600_000)
        )
    first = Assignment.decode((await assigned.next_msg(timeout=5)).data)
    await nothing_more(assigned)  # the image domain may run one at a time
    await harness.status(first.worker_id, outstanding=1, model="img-m", domain="image")
    await harness.status(first.worker_id, outstanding=0, model="img-m", domain="image")  # it finished
    second = Assignment.decode((await assigned.next_msg(timeout=5)).data)
    assert {first.request_id, second.request_id} == {"img-0", "img-1"}


async def test_beyond_a_domains_queue_bound_a_request_is_refused_as_overloaded(harness: Harness) -> None:
    await harness.status("small-1", outstanding=1, model="chat-s", domain="small")  # busy: requests wait
    results = await harness.bus.nc.subscribe(subjects.RESULTS_ALL)
    for rid in ("s-1", "s-2"):
        await harness.send(chat(rid, Priority.interactive).model_copy(update={"model": "chat-s"}))
    chunk = decode_chunk((await results.next_msg(timeout=5)).data)
    assert chunk.request_id == "s-2" and isinstance(chunk, ErrorChunk) and chunk.code is ErrorCode.overloaded
    assert "small queue is full" in chunk.message
    with pytest.raises(asyncio.TimeoutError):  # the first one waits, unrefused
        await results.next_msg(timeout=0.5)
    await results.unsubscribe()


async def test_a_request_cancelled_while_it_waits_never_starts(harness: Harness) -> None:
    assigned = await harness.bus.nc.subscribe(subjects.assign("w1"))
    await harness.status("w1", outstanding=1)
    results = await harness.bus.nc.subscribe(subjects.result("waits"))
    await harness.send(chat("waits", Priority.interactive))
    await asyncio.sleep(0.3)
    await harness.bus.nc.publish(subjects.cancel("waits"), Cancel(request_id="waits", reason="client").encode())
    chunk = decode_chunk((await results.next_msg(timeout=5)).data)
    assert isinstance(chunk, FinalChunk) and chunk.finish_reason == "cancelled"
    await harness.status("w1", outstanding=0)
    await nothing_more(assigned)


async def _declare(bus: Bus, model: str, fallback: str) -> None:
    kv = await bus.js.key_value(streams.KV_MODELS)
    entry = ModelEntry(
        id=model, modality=(Modality.chat,), engine="llama_cpp", source="catalog", declared=True, fallback=fallback
    )
    await kv.put(model, entry.encode())
    await asyncio.sleep(0.2)  # the scheduler follows the bucket


async def test_a_request_that_waits_too_long_goes_to_its_catalog_fallback(harness: Harness) -> None:
    await _declare(harness.bus, "chat-m", fallback="small-m")
    assigned = await harness.bus.nc.subscribe(subjects.ASSIGN_ALL)
    await harness.status("w1", outstanding=1)  # chat-m's only worker is busy
    await harness.status("w-small", outstanding=0, model="small-m")
    sent = time.monotonic()
    await harness.send(chat("impatient", Priority.interactive))
    moved = Assignment.decode((await assigned.next_msg(timeout=5)).data)
    assert time.monotonic() - sent >= FALLBACK_AFTER_S * 0.9  # it waited for chat-m first
    assert moved.worker_id == "w-small" and moved.request.model == "small-m" and moved.fallback_for == "chat-m"


async def test_a_model_nothing_serves_goes_to_its_fallback_at_once(harness: Harness) -> None:
    await _declare(harness.bus, "ghost-m", fallback="small-m")
    assigned = await harness.bus.nc.subscribe(subjects.ASSIGN_ALL)
    await harness.status("w-small", outstanding=0, model="small-m")
    request = ChatRequest(
        request_id="ghostly",
        model="ghost-m",
        deadline_ms=now_ms() + 600_000,
        messages=(ChatMessage(role="user", content="hi"),),
    )
    sent = time.monotonic()
    await harness.send(request)
    moved = Assignment.decode((await assigned.next_msg(timeout=5)).data)
    assert time.monotonic() - sent < FALLBACK_AFTER_S
    assert moved.request.model == "small-m" and moved.fallback_for == "ghost-m"
