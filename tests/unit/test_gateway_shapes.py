"""OpenAI body translation and response shapes."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts.errors import InvalidRequest
from contracts.results import Usage
from services.gateway.schemas import ChatCompletionBody, CompletionBody
from services.gateway.shapes import Shape, public_finish_reason


def test_chat_body_becomes_sampling_and_messages() -> None:
    body = ChatCompletionBody.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": [{"type": "text", "text": "be brief"}]},
                {"role": "user", "content": "hi"},
            ],
            "max_completion_tokens": 7,
            "stop": "END",
            "seed": 3,
            "logit_bias": {"2": -100},
            "user": "ignored",
        }
    )
    s = body.sampling(default_max_tokens=256)
    assert (s.max_tokens, s.stop, s.seed, s.logit_bias) == (7, ("END",), 3, {2: -100.0})
    messages = [m.to_contract() for m in body.messages]
    assert messages[0].role == "system" and messages[0].content == "be brief"


@pytest.mark.parametrize(
    "bad",
    [
        {"model": "m", "messages": []},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 2},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "logit_bias": {"word": 1}},
        {"model": "", "messages": [{"role": "user", "content": "x"}]},
        {"messages": [{"role": "user", "content": "x"}]},
    ],
)
def test_invalid_bodies_are_rejected(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        ChatCompletionBody.model_validate(bad)


def test_image_parts_are_collected_and_other_parts_refused() -> None:
    body = ChatCompletionBody.model_validate(
        {
            "model": "m",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look: "},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}},
                    ],
                }
            ],
        }
    )
    assert body.messages[0].image_urls == ["data:image/png;base64,AA=="]
    message = body.messages[0].to_contract(("data:image/png;base64,AA==",))
    assert message.content == "look: " and message.images == ("data:image/png;base64,AA==",)
    audio = ChatCompletionBody.model_validate(
        {
            "model": "m",
            "messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": ""}}]}],
        }
    )
    with pytest.raises(InvalidRequest, match="input_audio"):
        audio.messages[0].to_contract()
    missing = ChatCompletionBody.model_validate(
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}
    )
    with pytest.raises(InvalidRequest, match=r"image_url\.url"):
        _ = missing.messages[0].image_urls


def test_completion_takes_one_prompt() -> None:
    assert CompletionBody.model_validate({"model": "m", "prompt": ["a"]}).prompt_text == "a"
    with pytest.raises(ValidationError):
        CompletionBody.model_validate({"model": "m", "prompt": ["a", "b"]})


def test_chat_shapes_follow_openai() -> None:
    shape = Shape("id1", "m", chat=True, created=5)
    assert shape.chunk("", first=True)["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert shape.chunk("x")["object"] == "chat.completion.chunk"
    full = shape.complete("hello", "stop", Usage(prompt_tokens=2, completion_tokens=3))
    assert full["choices"][0]["message"] == {"role": "assistant", "content": "hello"}
    assert full["usage"] == {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5}
    assert shape.usage_chunk(Usage())["choices"] == []


def test_completion_shapes_follow_openai() -> None:
    shape = Shape("id2", "m", chat=False, created=5)
    assert shape.chunk("x")["choices"][0]["text"] == "x"
    assert shape.complete("x", "length", Usage())["object"] == "text_completion"


def test_cancelled_is_reported_as_stop() -> None:
    assert public_finish_reason("cancelled") == "stop"
    assert public_finish_reason("length") == "length"
