"""Keys made and revoked through the admin API, and per-key limits, across two gateways: two real
gateway apps in this process on one real nats-server, with the scheduler, aggregator and a worker
running the real tiny llama.cpp engine (tests.integration.inprocess)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.js.errors
import openai
import pytest

from contracts import streams, subjects
from contracts.errors import BusUnavailable
from services.common.bus import Bus, connect
from services.devstack import NatsServer
from services.gateway.app import create_app
from services.gateway.auth import KeyEntry, KeyRing, key_hash
from services.gateway.keys import KeyStore
from services.gateway.quotas import Quotas
from services.gateway.ratelimit import RateLimiter
from services.gateway.settings import GatewaySettings
from services.natsauth import NatsUsers
from tests.integration.inprocess import in_process_stack

MODEL = "tiny-keyed"
ADMIN_KEY = "keys-test-admin"
Gateways = tuple[httpx.AsyncClient, httpx.AsyncClient]


@pytest.fixture(scope="module")
async def gateways(nats_url: str) -> AsyncIterator[Gateways]:
    settings = GatewaySettings(nats_url=nats_url, api_keys=[ADMIN_KEY], response_cache=True)
    async with in_process_stack(settings, MODEL, "keyed-1") as (first, _):
        async with another_gateway(settings) as second:
            yield first, second


@asynccontextmanager
async def another_gateway(settings: GatewaySettings) -> AsyncIterator[httpx.AsyncClient]:
    """One more gateway app on the same NATS, once it has heard of the worker."""
    other = create_app(settings)
    async with other.router.lifespan_context(other):
        for _ in range(100):
            if other.state.relay.fleet.workers.serving(MODEL, time.monotonic()):
                break
            await asyncio.sleep(0.05)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=other),
            base_url="http://gateway-b",
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            timeout=30,
        ) as client:
            yield client


def chat(model: str = MODEL) -> dict[str, object]:
    return {"model": model, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def within(seconds: float, check: Callable[[], Awaitable[bool]]) -> float:
    """How long until `check` holds; fails the test after `seconds`."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < seconds, f"not within {seconds} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def make_key(admin: httpx.AsyncClient, **fields: object) -> dict[str, object]:
    res = await admin.post("/v1/admin/keys", json={"name": "test", **fields})
    assert res.status_code == 201, res.text
    return res.json()


async def test_a_key_made_on_one_gateway_works_on_the_other_and_revoked_is_refused_by_both(
    gateways: Gateways,
) -> None:
    a, b = gateways
    made = await make_key(a, name="alice", models=[MODEL])
    secret = str(made["key"])
    assert secret.startswith("mm-") and made["models"] == [MODEL]

    async def works_on_b() -> bool:
        return (await b.post("/v1/chat/completions", json=chat(), headers=bearer(secret))).status_code == 200

    await within(1.0, works_on_b)
    listed = (await b.get("/v1/admin/keys")).json()["data"]
    assert [k["name"] for k in listed if k["id"] == made["id"]] == ["alice"]
    assert all("key" not in k for k in listed), "a listing never shows a secret"
    # A user key may not use the admin API.
    assert (await a.get("/v1/admin/keys", headers=bearer(secret))).status_code == 403

    assert (await b.delete(f"/v1/admin/keys/{made['id']}")).status_code == 200

    async def refused_by_both() -> bool:
        codes = [
            (await g.post("/v1/chat/completions", json=chat(), headers=bearer(secret))).status_code for g in gateways
        ]
        return codes == [401, 401]

    await within(1.0, refused_by_both)
    assert (await a.delete(f"/v1/admin/keys/{made['id']}")).status_code == 404


async def test_a_model_outside_the_keys_list_is_refused(gateways: Gateways) -> None:
    a, _ = gateways
    secret = str((await make_key(a, models=["some-other-model"]))["key"])
    res = await a.post("/v1/chat/completions", json=chat(), headers=bearer(secret))
    assert res.status_code == 403, res.text
    error = res.json()["error"]
    assert error["code"] == "permission_denied" and error["param"] == "model" and MODEL in error["message"]
    assert (await a.get("/v1/models", headers=bearer(secret))).json()["data"] == [], "nor listed to it"
    assert MODEL in [m["id"] for m in (await a.get("/v1/models")).json()["data"]]
    assert (await a.get(f"/v1/models/{MODEL}", headers=bearer(secret))).status_code == 404
    assert (await a.get(f"/v1/models/{MODEL}")).status_code == 200


async def test_an_expired_key_is_refused(gateways: Gateways) -> None:
    a, _ = gateways
    secret = str((await make_key(a, expires_in_s=1))["key"])
    assert (await a.get("/v1/models", headers=bearer(secret))).status_code == 200
    await asyncio.sleep(1.05)
    res = await a.get("/v1/models", headers=bearer(secret))
    assert res.status_code == 401 and "expired" in res.json()["error"]["message"]


async def wait_clear_of_minute_boundary(margin_s: float = 4.0) -> None:
    """The limiter counts in fixed minutes: start a burst far enough from a new one that it all falls in one."""
    into = time.time() % 60
    if into > 60 - margin_s:
        await asyncio.sleep(60 - into + 0.05)


async def test_an_rpm_limit_holds_across_two_gateways_at_once(gateways: Gateways) -> None:
    a, b = gateways
    limit, extra = 4, 4
    secret = str((await make_key(a, rpm=limit))["key"])
    await within(1.0, lambda: _known(b, secret))
    await wait_clear_of_minute_boundary()
    answers = await asyncio.gather(
        *(g.post("/v1/chat/completions", json=chat(), headers=bearer(secret)) for g in [a, b] * ((limit + extra) // 2))
    )
    codes = sorted(r.status_code for r in answers)
    assert codes == [200] * limit + [429] * extra, codes
    refused = next(r for r in answers if r.status_code == 429)
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert refused.headers["x-ratelimit-limit-requests"] == str(limit)
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    assert 0 < int(refused.headers["retry-after"]) <= 60
    served = [r for r in answers if r.status_code == 200]
    assert sorted(r.headers["x-ratelimit-remaining-requests"] for r in served) == [str(n) for n in range(limit)]


async def test_a_tpm_limit_counts_prompt_and_max_tokens(gateways: Gateways) -> None:
    a, b = gateways
    # "hi" is one token by the estimate and max_tokens 1 another: two a request, so 5 tokens is two requests.
    secret = str((await make_key(a, tpm=5))["key"])
    await within(1.0, lambda: _known(b, secret))
    await wait_clear_of_minute_boundary()
    codes = [(await g.post("/v1/chat/completions", json=chat(), headers=bearer(secret))).status_code for g in (a, b, a)]
    assert codes == [200, 200, 429]
    res = await b.post("/v1/chat/completions", json=chat(), headers=bearer(secret))
    assert res.status_code == 429 and res.headers["x-ratelimit-remaining-tokens"] == "1"
    assert "tokens per minute" in res.json()["error"]["message"]


async def _known(gateway: httpx.AsyncClient, secret: str) -> bool:
    return (await gateway.get("/v1/models", headers=bearer(secret))).status_code == 200


async def test_the_openai_client_spends_a_key_until_429_and_streams_carry_the_headers(gateways: Gateways) -> None:
    a, b = gateways
    secret = str((await make_key(a, rpm=2))["key"])
    await wait_clear_of_minute_boundary()
    # The gateway's own client carries the ASGI transport; the openai client's Authorization wins over its.
    client = openai.AsyncOpenAI(api_key=secret, base_url="http://gateway-b/v1", http_client=b, max_retries=0)
    hi: list[Any] = [{"role": "user", "content": "hi"}]
    raw = await client.chat.completions.with_raw_response.create(model=MODEL, max_tokens=1, messages=hi, stream=True)
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    assert [chunk async for chunk in raw.parse()], "a stream of chunks"
    await client.chat.completions.create(model=MODEL, max_tokens=1, messages=hi)
    with pytest.raises(openai.RateLimitError) as refused:
        await client.chat.completions.create(model=MODEL, max_tokens=1, messages=hi)
    assert refused.value.response.headers["x-ratelimit-limit-requests"] == "2"
    assert "requests per minute" in refused.value.message


async def test_bad_key_fields_get_400_in_the_openai_shape(gateways: Gateways) -> None:
    a, _ = gateways
    for body in ({"name": "x", "scope": "root"}, {"name": "x", "rpm": 0}, {"name": "x", "models": []}):
        res = await a.post("/v1/admin/keys", json=body)
        assert res.status_code == 400 and res.json()["error"]["type"] == "invalid_request_error", (body, res.text)


async def test_the_limiter_answers_503_not_500_without_the_bus(bus: Bus) -> None:
    limiter = RateLimiter(await bus.js.key_value(streams.KV_RATES))
    key = KeyEntry("3" * 64, "cut-off", id="key_cutoff", rpm=5)
    assert await limiter.take(key, 1, 0)
    await bus.nc.close()
    with pytest.raises(BusUnavailable):
        await limiter.take(key, 1, 0)


async def test_under_nats_users_the_gateway_role_writes_keys_and_rates_and_a_worker_may_not(tmp_path: Path) -> None:
    users = NatsUsers.load_or_create(tmp_path / "auth")
    config = tmp_path / "nats.conf"
    config.write_text(f'jetstream {{ store_dir: "{tmp_path}/js" }}\n' + users.server_conf())
    server = NatsServer(store=tmp_path, config=config).start()
    try:
        gateway = await connect(users.url("gateway", "127.0.0.1", server.port), "gateway")
        store = await KeyStore.follow(gateway, KeyRing([]))
        secret, made = await store.create(name="under-auth", rpm=1)
        entry = store.ring.managed[key_hash(secret)]
        assert entry.id == made.id
        await RateLimiter(await gateway.js.key_value(streams.KV_RATES)).take(entry, 1, 0)
        assert (await gateway.js.publish(subjects.usage(made.id), b"{}")).stream == streams.USAGE
        quota_key = KeyEntry("4" * 64, "quota", id="key_quotaauth", tokens_per_day=10)
        await Quotas(await gateway.js.key_value(streams.KV_QUOTAS)).add(quota_key, 3)
        await store.stop()
        await gateway.close()
        worker = await nats.connect(users.url("worker", "127.0.0.1", server.port), error_cb=_ignore)
        keys = await worker.jetstream(timeout=0.5).key_value(streams.KV_KEYS)
        with pytest.raises(nats.errors.TimeoutError):  # the server drops a publish it does not permit
            await keys.put("f" * 64, b"{}")
        await worker.close()
    finally:
        server.stop()


async def _ignore(_: Exception) -> None:
    """The permissions violation the worker's refused write reports, expected here."""


async def test_usage_counts_each_finished_request_once_by_key_across_gateways(gateways: Gateways) -> None:
    a, b = gateways
    made = await make_key(a, name="metered")
    secret = str(made["key"])
    await within(1.0, lambda: _known(b, secret))
    answers = [await g.post("/v1/chat/completions", json=chat(), headers=bearer(secret)) for g in (a, b, b)]
    # One request sent twice, to each gateway, under one Idempotency-Key: it ran once and counts once.
    again = {**bearer(secret), "Idempotency-Key": "once"}
    answers += [await g.post("/v1/chat/completions", json=chat(), headers=again) for g in (a, b)]
    assert [r.status_code for r in answers] == [200] * 5
    assert answers[3].json()["usage"] == answers[4].json()["usage"]
    answers.pop()
    expected = {
        "requests": 4,
        "prompt_tokens": sum(r.json()["usage"]["prompt_tokens"] for r in answers),
        "completion_tokens": sum(r.json()["usage"]["completion_tokens"] for r in answers),
    }

    async def counted() -> bool:
        rows = (await b.get("/v1/admin/usage", params={"group_by": "key,model"})).json()["data"]
        mine = [r for r in rows if r["key"] == made["id"]]
        return len(mine) == 1 and {k: mine[0][k] for k in expected} == expected

    await within(2.0, counted)
    rows = (await a.get("/v1/admin/usage", params={"group_by": "key,model"})).json()["data"]
    mine = next(r for r in rows if r["key"] == made["id"])
    assert mine["key_name"] == "metered" and mine["model"] == MODEL
    assert mine["total_tokens"] == expected["prompt_tokens"] + expected["completion_tokens"]
    csv = await a.get("/v1/admin/usage", params={"group_by": "key", "format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv")
    header, *lines = csv.text.splitlines()
    assert header == "key,key_name,requests,prompt_tokens,completion_tokens,total_tokens"
    assert f"{made['id']},metered,4,{expected['prompt_tokens']}" in "\n".join(lines)
    assert (await a.get("/v1/admin/usage", params={"group_by": "colour"})).status_code == 400
    metrics = (await a.get("/metrics")).text
    assert 'modalmesh_gateway_key_requests_total{key="metered"}' in metrics
    assert (await a.get("/v1/admin/usage", params={"start": "2020-01-01", "end": "2020-01-02"})).json()["data"] == []


async def test_a_daily_token_quota_runs_out_at_its_figure_on_both_gateways(gateways: Gateways, bus: Bus) -> None:
    a, b = gateways
    probe = await a.post("/v1/chat/completions", json=chat())
    tokens = probe.json()["usage"]["total_tokens"]  # what each of these identical chats costs
    made = await make_key(a, name="quota", tokens_per_day=2 * tokens, tokens_per_month=100 * tokens)
    secret = str(made["key"])
    await within(1.0, lambda: _known(b, secret))
    quotas = await bus.js.key_value(streams.KV_QUOTAS)
    today = time.strftime("%Y-%m-%d", time.gmtime())

    async def counted(total: int) -> bool:
        try:
            return int((await quotas.get(f"{made['id']}.day.{today}")).value or b"0") == total
        except nats.js.errors.KeyNotFoundError:
            return False

    for n, gateway in enumerate((a, b), 1):
        res = await gateway.post("/v1/chat/completions", json=chat(), headers=bearer(secret))
        assert res.status_code == 200 and res.json()["usage"]["total_tokens"] == tokens
        await within(2.0, lambda n=n: counted(n * tokens))
    for gateway in (a, b):
        refused = await gateway.post("/v1/chat/completions", json=chat(), headers=bearer(secret))
        assert refused.status_code == 429, refused.text
        assert f"quota of {2 * tokens} tokens per day" in refused.json()["error"]["message"]
        assert 0 < int(refused.headers["retry-after"]) <= 24 * 3600
    month = int((await quotas.get(f"{made['id']}.month.{today[:7]}")).value or b"0")
    assert month == 2 * tokens


def fixed(content: str, **fields: object) -> dict[str, object]:
    return {
        "model": MODEL,
        "max_tokens": 3,
        "temperature": 0,
        "messages": [{"role": "user", "content": content}],
        **fields,
    }


async def test_a_repeated_fixed_request_is_answered_from_the_cache_on_either_gateway(gateways: Gateways) -> None:
    a, b = gateways
    content = f"cache me {time.time()}"  # a request no earlier run of this test made
    first = await a.post("/v1/chat/completions", json=fixed(content))
    assert first.status_code == 200 and first.headers["x-modalmesh-cache"] == "miss"
    text = first.json()["choices"][0]["message"]["content"]

    async def hit_on_b() -> bool:
        return (await b.post("/v1/chat/completions", json=fixed(content))).headers["x-modalmesh-cache"] == "hit"

    await within(2.0, hit_on_b)
    again = await a.post("/v1/chat/completions", json=fixed(content))
    assert again.headers["x-modalmesh-cache"] == "hit" and again.json()["id"] != first.json()["id"]
    assert again.json()["choices"][0]["message"]["content"] == text
    assert again.json()["usage"] == first.json()["usage"]
    streamed = await b.post("/v1/chat/completions", json=fixed(content, stream=True))
    assert streamed.headers["x-modalmesh-cache"] == "hit"
    pieces = [
        json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
        for line in streamed.text.splitlines()
        if line.startswith("data: {") and json.loads(line[6:])["choices"]
    ]
    assert "".join(pieces) == text
    # What differs in a field that shapes the answer is not answered from the cache.
    for other in (fixed(content + "!"), fixed(content, max_tokens=2), fixed(content, seed=1)):
        assert (await a.post("/v1/chat/completions", json=other)).headers["x-modalmesh-cache"] == "miss"
    sampled = {**fixed(content), "temperature": 0.7}
    assert "x-modalmesh-cache" not in (await a.post("/v1/chat/completions", json=sampled)).headers
    off = await a.post("/v1/chat/completions", json=fixed(content, cache=False))
    assert off.status_code == 200 and "x-modalmesh-cache" not in off.headers
    no_cache_key = str((await make_key(a, cache=False))["key"])
    await within(1.0, lambda: _known(a, no_cache_key))
    assert (
        "x-modalmesh-cache"
        not in (await a.post("/v1/chat/completions", json=fixed(content), headers=bearer(no_cache_key))).headers
    )


async def test_a_gateway_keeps_no_response_cache_unless_configured_to(gateways: Gateways, nats_url: str) -> None:
    async with another_gateway(GatewaySettings(nats_url=nats_url, api_keys=[ADMIN_KEY])) as plain:
        for _ in range(2):
            res = await plain.post("/v1/chat/completions", json=fixed("the same again"))
            assert res.status_code == 200 and "x-modalmesh-cache" not in res.headers
