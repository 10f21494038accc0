"""Inference requests: what the gateway publishes on `req.<modality>`.

A request is a discriminated union by `modality`, so each modality adds one model here and every
service learns of it from this module alone.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from contracts.base import Message, now_ms


class Modality(str, Enum):
    chat = "chat"
    completion = "completion"
    embedding = "embedding"
    image = "image"
    speech = "speech"
    video = "video"
    rerank = "rerank"
    transcription = "transcription"


TEXT_MODALITIES = frozenset({Modality.chat, Modality.completion})


class Priority(str, Enum):
    """Who is served first when workers are busy: strictly by class, realtime before interactive
    before batch, first come first served within a class. Waiting work is aged up a class at a time,
    so batch work is never starved forever."""

    realtime = "realtime"
    interactive = "interactive"
    batch = "batch"

    @property
    def rank(self) -> int:
        """0 is served first."""
        return _PRIORITY_RANKS[self]


_PRIORITY_RANKS = {Priority.realtime: 0, Priority.interactive: 1, Priority.batch: 2}


def default_priority(modalities: tuple[Modality, ...] | frozenset[Modality]) -> Priority:
    """The class a model's requests get when neither the request nor its API key names one: slow
    modalities (image, video) are batch work, the rest interactive."""
    slow = {Modality.image, Modality.video}
    return Priority.batch if modalities and set(modalities) <= slow else Priority.interactive


class ToolCall(BaseModel):
    """A function call the assistant made, as a later turn of the conversation repeats it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    name: str
    arguments: str = Field(description="The call's arguments, a JSON object as text.")


class ChatMessage(BaseModel):
    """One turn of a conversation, as OpenAI's chat API has it: its text, and the images it shows."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str = Field(description="The text of the turn.")
    name: str | None = None
    images: tuple[str, ...] = Field(default=(), description="Images as data URLs, checked by the gateway.")
    tool_calls: tuple[ToolCall, ...] = Field(default=(), description="The calls an assistant turn made.")
    tool_call_id: str | None = Field(default=None, description="The call a `tool` turn answers.")

    @property
    def images_base64(self) -> tuple[str, ...]:
        """The images' base64 payloads (the gateway writes each as `data:<type>;base64,<payload>`)."""
        return tuple(url.partition(",")[2] for url in self.images)


class Sampling(BaseModel):
    """Sampling parameters shared by every text engine."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tokens: int = Field(default=256, ge=1, description="Upper bound on generated tokens.")
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    seed: int | None = Field(default=None, description="Fixes sampling for reproducible output.")
    stop: tuple[str, ...] = Field(default=(), description="Generation stops before any of these strings.")
    logit_bias: dict[int, float] = Field(default_factory=dict, description="Token id to additive bias.")
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    logprobs: bool = Field(default=False, description="Return each sampled token's log probability.")
    top_logprobs: int = Field(default=0, ge=0, le=20, description="And that many most likely alternatives.")


class Tool(BaseModel):
    """A function the model may call (OpenAI's `tools[].function`)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str = ""
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}}, description="JSON schema of its arguments."
    )


class ToolChoice(BaseModel):
    """Whether the model may, must, or must not call a tool, or which one it must call."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    mode: Literal["none", "auto", "required", "function"] = "auto"
    name: str | None = Field(default=None, description="The function it must call (mode `function`).")


class ResponseFormat(BaseModel):
    """What the reply must be: text, any JSON object, or JSON valid against a schema."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str = "response"
    json_schema: dict[str, Any] | None = Field(default=None, description="The schema (type json_schema).")
    strict: bool = False


class _RequestBase(Message):
    request_id: str = Field(description="Unique id; also the JetStream de-duplication id.")
    model: str = Field(description="Model id from the catalog.")
    stream: bool = Field(default=False, description="Whether the client reads partial results.")
    created_ms: int = Field(default_factory=now_ms)
    deadline_ms: int = Field(description="Epoch ms after which nobody waits for the answer.")
    sampling: Sampling = Field(default_factory=Sampling)
    priority: Priority = Field(default=Priority.interactive, description="Scheduling class.")


class ChatRequest(_RequestBase):
    modality: Literal[Modality.chat] = Modality.chat
    messages: tuple[ChatMessage, ...] = Field(min_length=1)
    tools: tuple[Tool, ...] = Field(default=(), description="Functions the model may call.")
    tool_choice: ToolChoice = Field(default_factory=ToolChoice)
    parallel_tool_calls: bool = Field(default=True, description="Whether one reply may call several tools.")
    response_format: ResponseFormat = Field(default_factory=ResponseFormat)

    @property
    def calls_tools(self) -> bool:
        """Whether the reply may hold tool calls."""
        return bool(self.tools) and self.tool_choice.mode != "none"

    @property
    def has_images(self) -> bool:
        return any(m.images for m in self.messages)


class CompletionRequest(_RequestBase):
    modality: Literal[Modality.completion] = Modality.completion
    prompt: str


class EmbeddingRequest(_RequestBase):
    """A batch of texts to embed; the vectors come back in input order."""

    modality: Literal[Modality.embedding] = Modality.embedding
    inputs: tuple[str, ...] = Field(min_length=1)
    dimensions: int | None = Field(default=None, ge=1, description="Truncate vectors to this many dimensions.")


class ImageRequest(_RequestBase):
    """Text to image. Every size is in pixels; the worker stores each image in the object store."""

    modality: Literal[Modality.image] = Modality.image
    prompt: str = Field(min_length=1)
    negative_prompt: str = ""
    n: int = Field(default=1, ge=1, le=8, description="Images to make.")
    width: int = Field(default=512, ge=8)
    height: int = Field(default=512, ge=8)
    steps: int = Field(default=20, ge=1, le=200, description="Denoising steps.")
    guidance: float = Field(default=7.0, ge=0.0, le=50.0)
    seed: int | None = None


class SpeechRequest(_RequestBase):
    """Text to speech. The worker streams 16-bit mono PCM; the gateway wraps it as the client asked."""

    modality: Literal[Modality.speech] = Modality.speech
    input: str = Field(min_length=1)
    voice: str = "en"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)


class VideoRequest(_RequestBase):
    """Text to video, encoded to MP4 by the worker."""

    modality: Literal[Modality.video] = Modality.video
    prompt: str = Field(min_length=1)
    negative_prompt: str = ""
    frames: int = Field(default=9, ge=1, le=257)
    fps: int = Field(default=8, ge=1, le=60)
    width: int = Field(default=256, ge=8)
    height: int = Field(default=256, ge=8)
    steps: int = Field(default=20, ge=1, le=200)
    guidance: float = Field(default=6.0, ge=0.0, le=50.0)
    seed: int | None = None


class RerankRequest(_RequestBase):
    """Documents scored for their relevance to a query; the scores come back in document order."""

    modality: Literal[Modality.rerank] = Modality.rerank
    query: str = Field(min_length=1)
    documents: tuple[str, ...] = Field(min_length=1)


class TranscriptionRequest(_RequestBase):
    """Speech to text: an audio file (any format ffmpeg reads) to its text, or to English text."""

    modality: Literal[Modality.transcription] = Modality.transcription
    audio_b64: str = Field(min_length=1, description="The uploaded file's bytes, base64.")
    filename: str = ""
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str | None = Field(default=None, description="ISO-639-1 code; None: the model detects it.")
    prompt: str = ""
    timestamps: bool = Field(default=False, description="Return segments with their times.")


AnyRequest = (
    ChatRequest
    | CompletionRequest
    | EmbeddingRequest
    | ImageRequest
    | SpeechRequest
    | VideoRequest
    | RerankRequest
    | TranscriptionRequest
)
InferenceRequest = Annotated[AnyRequest, Field(discriminator="modality")]
TextRequest = ChatRequest | CompletionRequest

_request_adapter: TypeAdapter[InferenceRequest] = TypeAdapter(InferenceRequest)


def decode_request(data: bytes) -> AnyRequest:
    """Decode any request from the bus into its modality's model."""
    return _request_adapter.validate_json(data)
