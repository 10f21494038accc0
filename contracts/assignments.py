"""Assignments: the scheduler's decision that a worker runs a request (`assign.<worker>`)."""

from __future__ import annotations

from pydantic import Field

from contracts.base import Message, now_ms
from contracts.requests import ChatRequest, CompletionRequest, InferenceRequest


class Assignment(Message):
    worker_id: str = Field(description="The worker that must run the request.")
    attempt: int = Field(default=1, ge=1, description="1 for the first try, +1 for each re-assignment.")
    assigned_ms: int = Field(default_factory=now_ms)
    resume_text: str = Field(
        default="",
        description="Text already delivered to the client by an earlier attempt; the engine continues after it.",
    )
    resume_tokens: int = Field(default=0, ge=0, description="Tokens in `resume_text`, counted in usage.")
    first_seq: int = Field(default=0, ge=0, description="Seq of this attempt's first chunk (after the delivered ones).")
    fallback_for: str | None = Field(
        default=None,
        description="The model the client asked for, when the request "
        "went to its catalog fallback (`request.model`) for want of capacity.",
    )
    request: InferenceRequest

    @property
    def request_id(self) -> str:
        return self.request.request_id


__all__ = ["Assignment", "ChatRequest", "CompletionRequest"]
