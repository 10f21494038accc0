"""OpenAI response and stream-chunk shapes for chat and text completions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from contracts.results import Usage


def usage_dict(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


@dataclass
class Shape:
    """Builds the OpenAI objects of one response; `chat` picks chat.completion vs text_completion."""

    request_id: str
    model: str
    chat: bool
    created: int = field(default_factory=lambda: int(time.time()))

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.request_id, "object": obj, "created": self.created, "model": self.model, "choices": choices}

    def _choice(self, text: str | None, finish_reason: str | None, *, first: bool = False) -> dict[str, Any]:
        if self.chat:
            delta: dict[str, Any] = (
                {"role": "assistant", "content": text or ""}
                if first
                else ({"content": text} if text is not None else {})
            )
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish_reason}

    @property
    def _chunk_object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def chunk(self, text: str | None, *, first: bool = False, worker: str = "") -> dict[str, Any]:
        body = self._envelope(self._chunk_object, [self._choice(text, None, first=first)])
        if worker:  # OpenAI's "backend configuration" field: here, the worker that made this chunk
            body["system_fingerprint"] = worker
        return body

    def finish_chunk(self, finish_reason: str, usage: Usage) -> dict[str, Any]:
        body = self._envelope(self._chunk_object, [self._choice(None, finish_reason)])
        body["usage"] = usage_dict(usage)
        return body

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        body = self._envelope(self._chunk_object, [])
        body["usage"] = usage_dict(usage)
        return body

    def complete(self, text: str, finish_reason: str, usage: Usage) -> dict[str, Any]:
        if self.chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            body = self._envelope("chat.completion", [choice])
        else:
            body = self._envelope("text_completion", [self._choice(text, finish_reason)])
        body["usage"] = usage_dict(usage)
        return body


def public_finish_reason(reason: str) -> str:
    """OpenAI knows stop and length; a cancelled generation ended early, as if stopped."""
    return "length" if reason == "length" else "stop"
