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

    @classmethod
    def since(cls, started: float, first_at: float | None, ended: float) -> Timings:
        """From `time.perf_counter()` readings: the start, the first token (None: none came), the end."""
        return cls(engine_ttft_ms=((first_at or ended) - started) * 1000, engine_total_ms=(ended - started) * 1000)


class _ChunkBase(Message):
    request_id: str
    seq: int = Field(ge=0, description="Position of this chunk in the request's merged output.")
    attempt: int = Field(default=1, ge=1)
    worker_id: str = ""
    model: str | None = Field(
        default=None, description="The model that made it, when not the one asked for (a fallback)."
    )


class TopLogprob(BaseModel):
    model_config = ConfigDict(frozen=True)

    token: str
    logprob: float
    bytes: tuple[int, ...] = ()


class TokenLogprob(TopLogprob):
    """One sampled token's log probability, and the most likely alternatives at its place."""

    top: tuple[TopLogprob, ...] = ()


class ToolCallDelta(BaseModel):
    """A piece of one tool call: its first piece names the call and the function, later ones add
    to its arguments (OpenAI's streamed `tool_calls[]`)."""

    model_config = ConfigDict(frozen=True)

    index: int = Field(ge=0, description="Which call of the reply this belongs to.")
    id: str | None = None
    name: str | None = None
    arguments: str = ""


class DeltaChunk(_ChunkBase):
    kind: Literal["delta"] = "delta"
    text: str
    tokens: int = Field(default=1, ge=0, description="Tokens this text holds.")
    tool_calls: tuple[ToolCallDelta, ...] = Field(default=(), description="Tool calls, or pieces of them.")
    logprobs: tuple[TokenLogprob, ...] = Field(default=(), description="One per token of `text`, when asked for.")


class ProgressChunk(_ChunkBase):
    kind: Literal["progress"] = "progress"
    fraction: float = Field(ge=0.0, le=1.0)
    message: str = ""


class DataChunk(_ChunkBase):
    """Bytes made so far, inline: a piece of streamed audio, or a batch of embedding vectors."""

    kind: Literal["data"] = "data"
    content_type: str = Field(description="e.g. audio/L16;rate=22050 or application/x-float32;dims=384")
    data_b64: str = Field(description="The bytes, base64.")
    index: int = Field(default=0, ge=0, description="Which output this belongs to (input or image number).")


class Artifact(BaseModel):
    """A file a worker stored in the `artifacts` object store."""

    model_config = ConfigDict(frozen=True)

    name: str = Field(description="Key in the object store; also the file id clients download it by.")
    content_type: str
    size: int = Field(ge=0)
    index: int = Field(default=0, ge=0)
    meta: dict[str, float | int | str] = Field(default_factory=dict, description="width, height, frames, seconds...")


class ArtifactChunk(_ChunkBase):
    kind: Literal["artifact"] = "artifact"
    artifact: Artifact


class FinalChunk(_ChunkBase):
    kind: Literal["final"] = "final"
    finish_reason: Literal["stop", "length", "cancelled", "tool_calls"]
    usage: Usage
    timings: Timings = Field(default_factory=Timings)


class ErrorChunk(_ChunkBase):
    kind: Literal["error"] = "error"
    code: ErrorCode
    message: str
    param: str | None = Field(default=None, description="The request field at fault, when one is.")


AnyChunk = DeltaChunk | ProgressChunk | DataChunk | ArtifactChunk | FinalChunk | ErrorChunk
ResultChunk = Annotated[AnyChunk, Field(discriminator="kind")]
TERMINAL_KINDS = frozenset({"final", "error"})

_chunk_adapter: TypeAdapter[ResultChunk] = TypeAdapter(ResultChunk)


def decode_chunk(data: bytes) -> AnyChunk:
    return _chunk_adapter.validate_json(data)
