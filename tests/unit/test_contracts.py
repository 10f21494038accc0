"""Contracts: round trips, the modality union, and subject guards."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts import dedup, subjects
from contracts.assignments import Assignment
from contracts.errors import ErrorCode, ModelNotFound, error_for
from contracts.requests import ChatMessage, ChatRequest, CompletionRequest, Modality, decode_request
from contracts.results import DeltaChunk, ErrorChunk, FinalChunk, Usage, decode_chunk


def chat(**kw: object) -> ChatRequest:
    base = dict(request_id="r1", model="m", deadline_ms=10**13, messages=(ChatMessage(role="user", content="hi"),))
    return ChatRequest(**{**base, **kw})  # type: ignore[arg-type]


def test_request_union_decodes_each_modality() -> None:
    completion = CompletionRequest(request_id="r2", model="m", deadline_ms=1, prompt="once")
    assert isinstance(decode_request(chat().encode()), ChatRequest)
    decoded = decode_request(completion.encode())
    assert isinstance(decoded, CompletionRequest) and decoded.prompt == "once"


def test_unknown_modality_is_rejected() -> None:
    data = chat().encode().replace(b'"modality":"chat"', b'"modality":"hologram"')
    with pytest.raises(ValidationError):
        decode_request(data)


def test_chat_needs_a_message() -> None:
    with pytest.raises(ValidationError):
        chat(messages=())


def test_assignment_round_trip_keeps_request() -> None:
    a = Assignment(worker_id="w1", attempt=2, request=chat(), resume_text="already said")
    back = Assignment.decode(a.encode())
    assert back == a
    assert dedup.assignment(back) == {"Nats-Msg-Id": "r1:2"} and back.request_id == "r1"


def test_chunks_round_trip_by_kind() -> None:
    chunks = [
        DeltaChunk(request_id="r", seq=0, text="he", tokens=1),
        FinalChunk(request_id="r", seq=1, finish_reason="stop", usage=Usage(prompt_tokens=3, completion_tokens=1)),
        ErrorChunk(request_id="r", seq=0, code=ErrorCode.no_live_worker, message="none"),
    ]
    for chunk in chunks:
        assert decode_chunk(chunk.encode()) == chunk
    assert chunks[1].usage.total_tokens == 4  # type: ignore[union-attr]


def test_newer_fields_are_ignored_by_older_readers() -> None:
    data = DeltaChunk(request_id="r", seq=0, text="x").encode()[:-1] + b',"from_the_future":1}'
    assert decode_chunk(data).text == "x"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["", "a.b", "a b", "a*", "a>"])
def test_subject_tokens_are_guarded(bad: str) -> None:
    with pytest.raises(ValueError):
        subjects.result(bad)


def test_subjects_have_their_documented_shape() -> None:
    assert subjects.request(Modality.chat) == "req.chat"
    assert subjects.assign("w-1") == "assign.w-1"
    assert subjects.out("chatcmpl-1") == "out.chatcmpl-1"
    assert subjects.last_token("worker.status.w-1") == "w-1"


def test_error_codes_map_to_exceptions() -> None:
    exc = error_for(ErrorCode.model_not_found, "nope")
    assert isinstance(exc, ModelNotFound) and exc.message == "nope"
