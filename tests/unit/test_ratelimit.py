"""The rate limiter's and quotas' pure parts: the token estimate reserved per request, OpenAI's header
shapes, and the quotas' periods."""

from __future__ import annotations

import datetime as dt

from contracts.requests import ChatMessage, ChatRequest, EmbeddingRequest, Sampling
from services.gateway.auth import KeyEntry
from services.gateway.quotas import limits, period
from services.gateway.ratelimit import Window, duration, estimated_tokens, headers


def test_reset_durations_read_as_openai_writes_them() -> None:
    assert duration(0.12) == "120ms"
    assert duration(0.0001) == "1ms"
    assert duration(6.0) == "6s"
    assert duration(59.5) == "59.5s"
    assert duration(60.0) == "1m0s"


def test_a_chat_reserves_its_prompt_estimate_and_max_tokens() -> None:
    chat = ChatRequest(
        request_id="r",
        model="m",
        deadline_ms=1,
        messages=[ChatMessage(role="user", content="x" * 9)],
        sampling=Sampling(max_tokens=10),
    )
    assert estimated_tokens(chat) == 3 + 10
    embedding = EmbeddingRequest(request_id="e", model="m", deadline_ms=1, inputs=("abcd", "abcde"))
    assert estimated_tokens(embedding) == 1 + 2


def test_headers_only_for_the_limits_a_key_has() -> None:
    window = Window(requests=3, tokens=50, reset_s=12.0)
    assert headers(KeyEntry("d", rpm=5), window) == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "2",
        "x-ratelimit-reset-requests": "12s",
    }
    assert headers(KeyEntry("d", tpm=40), window)["x-ratelimit-remaining-tokens"] == "0"
    assert headers(KeyEntry("d"), window) == {}


def test_quota_periods_are_utc_days_and_months_and_end_where_the_next_begins() -> None:
    now = dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.timezone.utc)
    assert period(now, "day") == ("2026-12-31", dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc))
    assert period(now, "month") == ("2026-12", dt.datetime(2027, 1, 1, tzinfo=dt.timezone.utc))
    june = dt.datetime(2026, 6, 15, tzinfo=dt.timezone.utc)
    assert period(june, "month") == ("2026-06", dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc))
    assert limits(KeyEntry("d", tokens_per_month=5)) == {"month": 5}
