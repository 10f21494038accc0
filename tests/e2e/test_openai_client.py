"""The official `openai` client, unchanged, against the running stack."""

from __future__ import annotations

import openai
import pytest

from services.devstack import LocalStack as RunningStack

pytestmark = pytest.mark.e2e
MODEL = "tiny-llama"


@pytest.fixture
def client(running_stack: RunningStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{running_stack.url}/v1", api_key=running_stack.api_key, max_retries=0)


def test_chat_stream_with_openai_client(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        max_tokens=16,
        logit_bias={"2": -100, "4": -100},
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
            finish = chunk.choices[0].finish_reason or finish
        if chunk.usage and not chunk.choices:
            usage = chunk.usage
    assert "".join(pieces).strip()
    assert finish == "length" and usage is not None and usage.completion_tokens == 16


def test_chat_whole_with_openai_client(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=8, seed=5
    )
    assert reply.choices[0].message.role == "assistant"
    assert reply.usage is not None and 1 <= reply.usage.completion_tokens <= 8


def test_completions_and_models_with_openai_client(client: openai.OpenAI) -> None:
    done = client.completions.create(model=MODEL, prompt="baba", max_tokens=4)
    assert done.choices[0].text is not None
    assert MODEL in [m.id for m in client.models.list()]


def test_errors_raise_the_openai_exceptions(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model=MODEL, messages=[])
