"""Control messages: cancelling a request (`cancel.<request>`), and the placement controller's
commands to a worker that hosts models (`control.<worker>`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from contracts.base import Message, now_ms


class Cancel(Message):
    request_id: str
    reason: str = Field(default="client_disconnected")
    ts_ms: int = Field(default_factory=now_ms)


class ModelCommand(Message):
    """Load a catalog model onto the worker, or unload one (letting its requests in flight finish)."""

    action: Literal["load", "unload"]
    model: str
    reason: str = Field(default="", description="Why: warm, demand, idle, surplus, preempted.")
    by: str | None = Field(default=None, description="For a preemption: the model that needed the room.")
    ts_ms: int = Field(default_factory=now_ms)
