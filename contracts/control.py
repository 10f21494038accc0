"""Control messages: cancelling a request (`cancel.<request>`)."""

from __future__ import annotations

from pydantic import Field

from contracts.base import Message, now_ms


class Cancel(Message):
    request_id: str
    reason: str = Field(default="client_disconnected")
    ts_ms: int = Field(default_factory=now_ms)
