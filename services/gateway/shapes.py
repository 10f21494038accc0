"""OpenAI response and stream-chunk shapes for chat and text completions."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from contracts.results import DeltaChunk, TokenLogprob, ToolCallDelta, Usage


def usage_dict(usage: Usage) -> dict[str, int]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
    }


def chat_logprobs(tokens: list[TokenLogprob] | tuple[TokenLogprob, ...]) -> dict[str, Any]:
    """Chat's `logprobs`: one entry per token, each with its most likely alternatives."""

    def one(t: TokenLogprob) -> dict[str, Any]:
        return {
            "token": t.token,
            "logprob": t.logprob,
            "bytes": list(t.bytes),
            "top_logprobs": [{"token": a.token, "logprob": a.logprob, "bytes": list(a.bytes)} for a in t.top],
        }

    return {"content": [one(t) for t in tokens], "refusal": None}


def completion_logprobs(tokens: list[TokenLogprob] | tuple[TokenLogprob, ...], offset: int = 0) -> dict[str, Any]:
    """The legacy completions' `logprobs`: parallel lists, alternatives as token-to-logprob maps."""
    offsets, at = [], offset
    for t in tokens:
        offsets.append(at)
        at += len(t.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [{a.token: a.logprob for a in t.top} for t in tokens],
        "text_offset": offsets,
    }


def tool_call_delta(piece: ToolCallDelta) -> dict[str, Any]:
    """One streamed piece of a tool call: the first names the call, later ones add arguments."""
    function: dict[str, Any] = {"arguments": piece.arguments}
    out: dict[str, Any] = {"index": piece.index}
    if piece.id is not None:
        out |= {"id": piece.id, "type": "function"}
    if piece.name is not None:
        function["name"] = piece.name
    out["function"] = function
    return out


@dataclass
class Choice:
    """One choice of a whole (not streamed) response, gathered from its chunks."""

    index: int = 0
    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str = "stop"
    asked_logprobs: bool = False

    def add(self, chunk: DeltaChunk) -> None:
        self.text.append(chunk.text)
        self.logprobs.extend(chunk.logprobs)
        for piece in chunk.tool_calls:
            call = self.calls.setdefault(
                piece.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
            )
            call["id"] = piece.id or call["id"]
            call["function"]["name"] = piece.name or call["function"]["name"]
            call["function"]["arguments"] += piece.arguments


@dataclass
class Shape:
    """Builds the OpenAI objects of one response; `chat` picks chat.completion vs text_completion."""

    request_id: str
    model: str
    chat: bool
    logprobs: bool = False
    created: int = field(default_factory=lambda: int(time.time()))
    _offsets: dict[int, int] = field(default_factory=dict)

    def _envelope(self, obj: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        return {"id": self.request_id, "object": obj, "created": self.created, "model": self.model, "choices": choices}

    def _logprobs(self, tokens: tuple[TokenLogprob, ...], index: int) -> dict[str, Any] | None:
        if not self.logprobs:
            return None
        if self.chat:
            return chat_logprobs(tokens)
        offset = self._offsets.get(index, 0)
        self._offsets[index] = offset + sum(len(t.token) for t in tokens)
        return completion_logprobs(tokens, offset)

    def _choice(
        self,
        text: str | None,
        finish_reason: str | None,
        *,
        first: bool = False,
        index: int = 0,
        delta: DeltaChunk | None = None,
    ) -> dict[str, Any]:
        logprobs = self._logprobs(delta.logprobs, index) if delta is not None and delta.logprobs else None
        if self.chat:
            body: dict[str, Any] = (
                {"role": "assistant", "content": text or ""}
                if first
                else ({"content": text} if text is not None else {})
            )
            if delta is not None and delta.tool_calls:
                body["tool_calls"] = [tool_call_delta(p) for p in delta.tool_calls]
            return {"index": index, "delta": body, "logprobs": logprobs, "finish_reason": finish_reason}
        return {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": finish_reason}

    @property
    def _chunk_object(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def chunk(self, text: str | None, *, first: bool = False, worker: str = "", index: int = 0) -> dict[str, Any]:
        body = self._envelope(self._chunk_object, [self._choice(text, None, first=first, index=index)])
        if worker:  # OpenAI's "backend configuration" field: here, the worker that made this chunk
            body["system_fingerprint"] = worker
        return body

    def delta(self, chunk: DeltaChunk, index: int = 0) -> dict[str, Any]:
        """A streamed content chunk: text, tool-call pieces and log probabilities as they came."""
        text = chunk.text if chunk.text or not chunk.tool_calls else None
        body = self._envelope(self._chunk_object, [self._choice(text, None, index=index, delta=chunk)])
        if chunk.worker_id:
            body["system_fingerprint"] = chunk.worker_id
        return body

    def finish_chunk(self, finish_reason: str, usage: Usage | None, index: int = 0) -> dict[str, Any]:
        body = self._envelope(self._chunk_object, [self._choice(None, finish_reason, index=index)])
        if usage is not None:
            body["usage"] = usage_dict(usage)
        return body

    def usage_chunk(self, usage: Usage) -> dict[str, Any]:
        body = self._envelope(self._chunk_object, [])
        body["usage"] = usage_dict(usage)
        return body

    def complete(self, choices: list[Choice], usage: Usage) -> dict[str, Any]:
        body = self._envelope("chat.completion" if self.chat else "text_completion", [self._whole(c) for c in choices])
        body["usage"] = usage_dict(usage)
        return body

    def _whole(self, choice: Choice) -> dict[str, Any]:
        text = "".join(choice.text)
        if not self.chat:
            logprobs = completion_logprobs(choice.logprobs) if self.logprobs else None
            return {"index": choice.index, "text": text, "logprobs": logprobs, "finish_reason": choice.finish_reason}
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if choice.calls:
            message["tool_calls"] = [choice.calls[i] for i in sorted(choice.calls)]
            message["content"] = text or None
        return {
            "index": choice.index,
            "message": message,
            "logprobs": chat_logprobs(choice.logprobs) if self.logprobs else None,
            "finish_reason": choice.finish_reason,
        }


def public_finish_reason(reason: str) -> str:
    """OpenAI knows stop, length and tool_calls; a cancelled generation ended early, as if stopped."""
    return reason if reason in ("length", "tool_calls") else "stop"
