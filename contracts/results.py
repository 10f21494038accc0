"""Result chunks a worker publishes on `result.<request>`, and the merged output on `out.<request>`.

Every chunk carries `seq` (0, 1, 2, ... per request, over all attempts), so the aggregator can put
them in order, drop duplicates from redeliveries and notice gaps.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from contracts.base import Message
from contracts.errors import ErrorCode


class Usage(BaseModel):
    model_config = ConfigDict(frozen=True)

    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Timings(BaseModel):
    """What the engine measured itself, so overhead can be told apart from engine time."""

    model_config = ConfigDict(frozen=True)

    engine_ttft_ms: float = Field(default=0.0, description="Engine start to first token.")
    engine_total_ms: float = Field(default=0.0, description="Engine start to last token.")


class _ChunkBase(Message):
    request_id: str
    seq: int = Field(ge=0, description="Position of this chunk in the request's merged output.")
    attempt: int = Field(default=1, ge=1)
    worker_id: str = ""


class DeltaChunk(_ChunkBase):
    kind: Literal["delta"] = "delta"
    text: str
    tokens: int = Field(default=1, ge=0, description="Tokens this text holds.")


class ProgressChunk(_ChunkBase):
    kind: Literal["progress"] = "progress"
    fraction: float = Field(ge=0.0, le=1.0)
    message: str = ""


class FinalChunk(_ChunkBase):
    kind: Literal["final"] = "final"
    finish_reason: Literal["stop", "length", "cancelled"]
    usage: Usage
    timings: Timings = Field(default_factory=Timings)


class ErrorChunk(_ChunkBase):
    kind: Literal["error"] = "error"
    code: ErrorCode
    message: str


AnyChunk = DeltaChunk | ProgressChunk | FinalChunk | ErrorChunk
ResultChunk = Annotated[AnyChunk, Field(discriminator="kind")]
TERMINAL_KINDS = frozenset({"final", "error"})

_chunk_adapter: TypeAdapter[ResultChunk] = TypeAdapter(ResultChunk)


def decode_chunk(data: bytes) -> AnyChunk:
    return _chunk_adapter.validate_json(data)
