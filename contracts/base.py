"""Base class for every bus message: versioned, strict, and encoded one way."""

from __future__ import annotations

import time
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from contracts import SCHEMA_VERSION

M = TypeVar("M", bound="Message")


def now_ms() -> int:
    """Wall-clock milliseconds since the epoch, the one time unit on the bus."""
    return int(time.time() * 1000)


class Message(BaseModel):
    """A message on the bus. Unknown fields are ignored so newer senders do not break older readers."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: int = Field(default=SCHEMA_VERSION, description="Version of the contract that wrote it.")

    def encode(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def decode(cls: type[M], data: bytes) -> M:
        return cls.model_validate_json(data)
