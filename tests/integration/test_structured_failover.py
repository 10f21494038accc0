"""A JSON-schema reply cut off by a worker's death continues on another worker under the same
constraint: the client's whole reply, first worker's part and second's, validates against the schema.
Real llama.cpp workers on the tiny model, a real nats-server (the failover tests' fleet)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import jsonschema
import pytest

from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, ResponseFormat, Sampling
from contracts.results import AnyChunk, DeltaChunk, FinalChunk
from services.workers.tiny_model import ensure_tiny_gguf
from tests.integration.test_failover import Fleet, running_fleet

MODEL = "tiny-structured"
# Long enough to be cut off mid-way, bounded so that the grammar ends it.
SCHEMA = {
    "type": "array",
    "items": {"type": "string", "maxLength": 12},
    "minItems": 30,
    "maxItems": 30,
}


@pytest.fixture(scope="module")
async def fleet(nats_url: str) -> AsyncIterator[Fleet]:
    async with running_fleet(nats_url, ("sf-a", "sf-b"), ensure_tiny_gguf(), model=MODEL) as sim:
        yield sim


async def test_a_constrained_reply_keeps_its_schema_across_a_failover(fleet: Fleet) -> None:
    request = ChatRequest(
        request_id=f"chatcmpl-{uuid.uuid4().hex}",
        model=MODEL,
        stream=True,
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content="list thirty words"),),
        sampling=Sampling(max_tokens=1500, seed=3),
        response_format=ResponseFormat(type="json_schema", json_schema=SCHEMA, strict=True),
    )
    stream = await fleet.relay.submit(request)
    received: list[AnyChunk] = [await stream.next() for _ in range(4)]
    victim = received[-1].worker_id
    await fleet.workers[victim].crash()
    received += [chunk async for chunk in stream]
    await stream.close()
    final = received[-1]
    assert isinstance(final, FinalChunk) and final.finish_reason == "stop"
    assert final.attempt == 2 and final.worker_id != victim
    before = "".join(c.text for c in received if isinstance(c, DeltaChunk) and c.attempt == 1)
    assert before and not before.endswith("]")  # it was cut off inside the array
    whole = "".join(c.text for c in received if isinstance(c, DeltaChunk))
    jsonschema.validate(json.loads(whole), SCHEMA)
