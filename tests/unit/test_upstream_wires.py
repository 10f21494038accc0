"""What the upstream engine sends to and reads from each server API. The streamed lines are the
shapes Ollama's and OpenAI's documentation show; the engines' real servers are in tests/engines."""

from __future__ import annotations

import json

import pytest

from contracts.base import now_ms
from contracts.errors import EngineError, InvalidRequest
from contracts.requests import ChatMessage, ChatRequest, CompletionRequest, Sampling
from services.workers.engines.upstream import OllamaWire, OpenAIWire

PNG = "data:image/png;base64,iVBORw0KGgo="

# /api/chat, streamed, as Ollama sends it
OLLAMA_CHAT = [
    '{"model":"gemma2:2b","created_at":"2024-08-07T03:57:33.03Z","message":{"role":"assistant","content":"Hello"},'
    '"done":false}',
    '{"model":"gemma2:2b","created_at":"2024-08-07T03:57:33.28Z","message":{"role":"assistant","content":"!"},'
    '"done":false}',
    '{"model":"gemma2:2b","created_at":"2024-08-07T03:57:37.07Z","message":{"role":"assistant","content":""},'
    '"done_reason":"length","done":true,"total_duration":4353619900,"prompt_eval_count":10,"eval_count":2}',
]


def _chat(*, resume: bool = False, **sampling: object) -> ChatRequest:
    return ChatRequest(
        request_id="w1",
        model="m",
        deadline_ms=now_ms() + 1000,
        messages=(ChatMessage(role="user", content="look", images=(PNG,)),),
        sampling=Sampling(max_tokens=7, **sampling),
    )  # type: ignore[arg-type]


def test_ollama_chat_body_carries_options_images_and_the_resumed_turn() -> None:
    path, body = OllamaWire.body(_chat(seed=5, stop=("END",), temperature=0.3, top_p=0.9), "llama3:latest", "Once upon")
    assert path == "/api/chat" and body["model"] == "llama3:latest" and body["stream"] is True
    assert body["options"] == {"num_predict": 7, "temperature": 0.3, "top_p": 0.9, "seed": 5, "stop": ["END"]}
    assert body["messages"][0] == {"role": "user", "content": "look", "images": ["iVBORw0KGgo="]}
    assert body["messages"][-1] == {"role": "assistant", "content": "Once upon"}


def test_ollama_completion_is_raw_generate_and_logit_bias_is_refused() -> None:
    request = CompletionRequest(request_id="w2", model="m", deadline_ms=now_ms() + 1000, prompt="abc")
    path, body = OllamaWire.body(request, "m", "de")
    assert path == "/api/generate" and body["prompt"] == "abcde" and body["raw"] is True
    with pytest.raises(InvalidRequest, match="logit_bias"):
        OllamaWire.body(_chat(logit_bias={3: -100.0}), "m", "")


def test_ollama_stream_becomes_tokens_finish_and_usage() -> None:
    pieces = [OllamaWire.piece(json.loads(line)) for line in OLLAMA_CHAT]
    assert [p.text for p in pieces] == ["Hello", "!", ""]
    assert [p.token for p in pieces] == [True, True, False]
    assert pieces[-1].finish == "length" and pieces[-1].prompt_tokens == 10 and pieces[-1].completion_tokens == 2
    assert OllamaWire.piece({"response": " a", "done": False}).text == " a"  # /api/generate's shape
    with pytest.raises(EngineError, match="out of memory"):
        OllamaWire.piece({"error": "out of memory"})
    assert OllamaWire.model_ids({"models": [{"name": "llama3:latest", "model": "llama3:latest"}]}) == ("llama3:latest",)


def test_openai_stream_counts_empty_token_chunks_but_not_the_closing_one() -> None:
    token = OpenAIWire.piece({"choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": None}]})
    closing = OpenAIWire.piece({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = OpenAIWire.piece({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 9}})
    assert token.token and not token.text
    assert not closing.token and closing.finish == "stop"
    assert (usage.prompt_tokens, usage.completion_tokens) == (4, 9)
    path, body = OpenAIWire.body(_chat(), "served", "abc")
    assert path == "/chat/completions" and body["messages"][-1] == {"role": "assistant", "content": "abc"}
