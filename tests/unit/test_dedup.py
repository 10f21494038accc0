"""The `Nats-Msg-Id` forms (contracts/dedup.py): the same message always gets the same id, and
different messages of one request never share one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from contracts import dedup
from contracts.assignments import Assignment
from contracts.requests import ChatMessage, ChatRequest


def ids(rid: str, attempt: int) -> list[str]:
    request = ChatRequest(request_id=rid, model="m", deadline_ms=0, messages=(ChatMessage(role="user", content="x"),))
    headers = [
        dedup.request(rid),
        dedup.requeued(rid, attempt),
        dedup.dead_letter(rid),
        dedup.assignment(Assignment(worker_id="w", attempt=attempt, request=request)),
        dedup.assignment(Assignment(worker_id="w", attempt=attempt + 1, request=request)),
        *(dedup.chunk(rid, attempt, seq) for seq in range(3)),
    ]
    assert all(list(h) == [dedup.MSG_ID] for h in headers)
    return [h[dedup.MSG_ID] for h in headers]


@given(st.uuids().map(str), st.integers(1, 5))
def test_one_request_s_messages_have_distinct_ids_and_the_same_ones_each_time(rid: str, attempt: int) -> None:
    first = ids(rid, attempt)
    assert len(set(first)) == len(first)
    assert ids(rid, attempt) == first
