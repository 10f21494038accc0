"""A request nobody can take, however often it is delivered, ends in dead letters and its client hears
why, instead of silence. Its own NATS server: the scheduler's consumer is made with this test's
`max_deliver`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.js.errors import NotFoundError

from contracts import dedup, streams, subjects
from contracts.base import now_ms
from contracts.errors import ErrorCode
from contracts.requests import ChatMessage, ChatRequest
from contracts.results import ErrorChunk, decode_chunk
from services.common.bus import Bus
from tests.natsserver import scheduler_on_own_server

MAX_DELIVER = 4


@pytest.fixture
async def scheduled() -> AsyncIterator[Bus]:
    settings = {"retry_no_worker_s": 0.02, "retry_max_s": 0.05, "max_deliver": MAX_DELIVER, "heartbeat_s": 0.2}
    async with scheduler_on_own_server(settings) as bus:
        yield bus


async def test_a_request_nobody_takes_goes_to_dead_letters_and_its_client_gets_an_error(scheduled: Bus) -> None:
    request = ChatRequest(
        request_id="dl-1",
        model="nobody-serves-this",
        deadline_ms=now_ms() + 600_000,
        messages=(ChatMessage(role="user", content="hello"),),
    )
    results = await scheduled.nc.subscribe(subjects.result(request.request_id))
    await scheduled.js.publish(
        subjects.request(request.modality), request.encode(), headers=dedup.request(request.request_id)
    )
    chunk = decode_chunk((await results.next_msg(timeout=20)).data)
    assert isinstance(chunk, ErrorChunk) and chunk.code is ErrorCode.no_live_worker
    assert f"after {MAX_DELIVER} tries" in chunk.message and "dead.chat" in chunk.message
    dead = await scheduled.js.get_last_msg(streams.DEAD_LETTERS, subjects.dead(request.modality))
    assert ChatRequest.decode(dead.data or b"").request_id == request.request_id
    for _ in range(50):  # and it has left the work queue
        try:
            await scheduled.js.get_last_msg(streams.REQUESTS, subjects.request(request.modality))
        except NotFoundError:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the request is still in REQUESTS")
