"""Keys, limits and idempotency on the running stack."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from services.devstack import LocalStack

pytestmark = pytest.mark.e2e
MODEL = "tiny-llama"
HELLO = [{"role": "user", "content": "hi"}]


@pytest.fixture
async def client(running_stack: LocalStack) -> Any:
    async with httpx.AsyncClient(base_url=running_stack.url, timeout=60, headers=running_stack.headers) as c:
        yield c


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}])
async def test_requests_without_a_valid_key_get_401(running_stack: LocalStack, headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=running_stack.url) as anonymous:
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("GET", "/v1/nodes")):
            res = await anonymous.request(method, path, headers=headers, json={"model": MODEL, "messages": HELLO})
            assert res.status_code == 401, path
            assert res.json()["error"]["type"] == "authentication_error"
        assert (await anonymous.get("/healthz")).status_code == 200  # probes need no key


async def test_oversized_body_is_413(client: httpx.AsyncClient) -> None:
    res = await client.post(
        "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "x" * (2 << 20)}]}
    )
    assert res.status_code == 413 and res.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "body",
    [
        {"model": MODEL, "messages": HELLO * 300},
        {"model": MODEL, "messages": HELLO, "max_tokens": 100_000},
        {"model": MODEL, "messages": [{"role": "user", "content": "y" * 300_000}]},
    ],
)
async def test_limits_are_400(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    res = await client.post("/v1/chat/completions", json=body)
    assert res.status_code == 400 and res.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("stream", [False, True])
async def test_idempotency_key_runs_once_and_returns_the_same_result(client: httpx.AsyncClient, stream: bool) -> None:
    # No seed and temperature 1: two real runs would differ, so equal answers mean one run.
    body = {
        "model": MODEL,
        "messages": HELLO,
        "max_tokens": 24,
        "temperature": 1.0,
        "logit_bias": {"2": -100, "4": -100},
    }
    headers = {"Idempotency-Key": f"order-{stream}-42"}
    first = await client.post("/v1/chat/completions", json=body, headers=headers)
    again = await client.post("/v1/chat/completions", json={**body, "stream": stream}, headers=headers)
    other = await client.post("/v1/chat/completions", json=body, headers={"Idempotency-Key": f"order-{stream}-43"})
    assert first.status_code == again.status_code == 200
    text = first.json()["choices"][0]["message"]["content"]
    if stream:
        import json

        chunks = [json.loads(line[6:]) for line in again.text.splitlines() if line.startswith("data: {")]
        replayed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
        assert chunks[0]["id"] == first.json()["id"]
    else:
        replayed = again.json()["choices"][0]["message"]["content"]
        assert again.json()["id"] == first.json()["id"]
        assert again.json()["usage"] == first.json()["usage"]
    assert replayed == text
    assert other.json()["id"] != first.json()["id"] and other.json()["choices"][0]["message"]["content"] != text
