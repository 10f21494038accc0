"""Beyond its bound of requests in flight for a model, the gateway answers 429 in the OpenAI shape
with a Retry-After header, and takes the model's requests again once one finishes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from services.gateway.relay import Relay
from services.gateway.settings import GatewaySettings
from tests.integration.inprocess import in_process_stack

MODEL = "tiny-bounded"
KEY = "overload-test-key"
NO_EOS = {"2": -100, "4": -100}


@pytest.fixture
async def bounded(nats_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Relay]]:
    settings = GatewaySettings(nats_url=nats_url, api_keys=[KEY], max_inflight_per_model=1, dead_after_s=3.0)
    async with in_process_stack(settings, MODEL, "bounded-1") as stack:
        yield stack


def chat(max_tokens: int) -> dict[str, object]:
    return {
        "model": MODEL,
        "max_tokens": max_tokens,
        "logit_bias": NO_EOS,
        "messages": [{"role": "user", "content": "go on"}],
    }


async def test_a_request_over_the_inflight_bound_is_429_with_retry_after(
    bounded: tuple[httpx.AsyncClient, Relay],
) -> None:
    client, relay = bounded
    held = asyncio.create_task(client.post("/v1/chat/completions", json=chat(max_tokens=1500)))
    for _ in range(200):
        if relay.inflight[MODEL] == 1:
            break
        await asyncio.sleep(0.01)
    assert relay.inflight[MODEL] == 1

    refused = await client.post("/v1/chat/completions", json=chat(max_tokens=4))
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) == 3
    error = refused.json()["error"]
    assert error["type"] == "rate_limit_error" and error["code"] == "overloaded" and MODEL in error["message"]

    assert (await held).status_code == 200
    again = await client.post("/v1/chat/completions", json=chat(max_tokens=4))
    assert again.status_code == 200 and again.json()["usage"]["completion_tokens"] == 4
