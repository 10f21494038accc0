"""The response cache's key: a property test that any change of a field that shapes the answer
changes it, and that ids, times, scheduling and streaming do not."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from contracts.requests import ChatMessage, ChatRequest, Priority, ResponseFormat, Sampling, Tool, ToolChoice
from contracts.workers import ModelEntry
from services.gateway.cache import cache_key

BASE = ChatRequest(
    request_id="r1",
    model="m",
    deadline_ms=1,
    messages=(ChatMessage(role="user", content="hi"),),
    sampling=Sampling(temperature=0, max_tokens=8),
)
ENTRY = ModelEntry(id="m", modality=("chat",), engine="llama_cpp", source="/models/m.gguf", created_ms=5)  # type: ignore[arg-type]

text = st.text(min_size=1, max_size=8)
SAMPLING_CHANGES = st.one_of(
    st.builds(lambda n: {"max_tokens": n}, st.integers(1, 4096)),
    st.builds(lambda p: {"top_p": p}, st.floats(0.01, 1.0)),
    st.builds(lambda s: {"seed": s}, st.integers(0, 2**31)),
    st.builds(lambda s: {"stop": (s,)}, text),
    st.builds(lambda t, b: {"logit_bias": {t: b}}, st.integers(0, 999), st.floats(-100, 100)),
    st.builds(lambda p: {"presence_penalty": p}, st.floats(-2, 2)),
    st.builds(lambda p: {"frequency_penalty": p}, st.floats(-2, 2)),
    st.builds(lambda v: {"logprobs": v}, st.booleans()),
)
REQUEST_CHANGES = st.one_of(
    st.builds(lambda m: {"model": m}, text),
    st.builds(lambda c: {"messages": (ChatMessage(role="user", content=c),)}, text),
    st.builds(lambda c: {"messages": (ChatMessage(role="system", content=c), *BASE.messages)}, text),
    st.builds(lambda n: {"tools": (Tool(name=n),)}, st.from_regex(r"[a-z]{1,8}", fullmatch=True)),
    st.builds(lambda m: {"tool_choice": ToolChoice(mode=m)}, st.sampled_from(["none", "required"])),
    st.builds(lambda t: {"response_format": ResponseFormat(type=t)}, st.sampled_from(["json_object"])),
    st.builds(lambda v: {"parallel_tool_calls": v}, st.just(False)),
)


def changed(update: dict[str, Any], sampling: dict[str, Any] | None = None) -> ChatRequest:
    if sampling:
        update = {**update, "sampling": BASE.sampling.model_copy(update=sampling)}
    return BASE.model_copy(update=update)


@given(REQUEST_CHANGES)
def test_a_request_field_that_shapes_the_answer_changes_the_key(update: dict[str, Any]) -> None:
    other = changed(update)
    assert (cache_key(other, ENTRY) == cache_key(BASE, ENTRY)) == (other == BASE)


@given(SAMPLING_CHANGES)
def test_a_sampling_field_that_shapes_the_answer_changes_the_key(update: dict[str, Any]) -> None:
    other = changed({}, update)
    assert (cache_key(other, ENTRY) == cache_key(BASE, ENTRY)) == (other.sampling == BASE.sampling)


@given(
    st.text(min_size=1, max_size=20),
    st.integers(0, 2**40),
    st.integers(0, 2**40),
    st.sampled_from(list(Priority)),
    st.booleans(),
)
def test_ids_times_priority_and_streaming_leave_the_key_alone(
    rid: str, deadline: int, created: int, priority: Priority, stream: bool
) -> None:
    other = BASE.model_copy(
        update={
            "request_id": rid,
            "deadline_ms": deadline,
            "created_ms": created,
            "priority": priority,
            "stream": stream,
        }
    )
    assert cache_key(other, ENTRY) == cache_key(BASE, ENTRY)


def test_a_new_version_or_reload_of_the_model_misses_and_a_sampled_answer_is_never_kept() -> None:
    key = cache_key(BASE, ENTRY)
    assert key is not None
    assert cache_key(BASE, ENTRY.model_copy(update={"created_ms": 6})) != key  # a worker entered it again
    assert cache_key(BASE, ENTRY.model_copy(update={"source": "/models/m-v2.gguf"})) != key
    assert cache_key(BASE, ENTRY.model_copy(update={"priority": 9})) == key  # placement does not change answers
    sampled = changed({}, {"temperature": 0.7})
    assert cache_key(sampled, ENTRY) is None
    assert cache_key(changed({}, {"temperature": 0.7, "seed": 3}), ENTRY) is not None
