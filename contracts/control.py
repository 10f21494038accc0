"""Control messages: cancelling a request (`cancel.<request>`), and commands to one worker
(`control.<worker>`): the placement controller's load and unload of catalog models on a worker that
hosts them, and an operator's drain and resume of any worker."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from contracts.base import Message, now_ms


class Cancel(Message):
    request_id: str
    reason: str = Field(default="client_disconnected")
    ts_ms: int = Field(default_factory=now_ms)


class ModelCommand(Message):
    """Load a catalog model onto the worker, or unload one (letting its requests in flight finish);
    or drain the worker (it takes no new work, and finishes what it has) or resume it."""

    action: Literal["load", "unload", "drain", "resume"]
    model: str = Field(default="", description="The catalog model to load or unload.")
    reason: str = Field(default="", description="Why: warm, demand, idle, surplus, preempted, operator.")
    by: str | None = Field(default=None, description="For a preemption: the model that needed the room.")
    ts_ms: int = Field(default_factory=now_ms)
