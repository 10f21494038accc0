"""OpenAI request bodies the gateway accepts, and their translation into bus requests."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.errors import InvalidRequest
from contracts.requests import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImageRequest,
    Priority,
    Sampling,
    SpeechRequest,
    VideoRequest,
)
from services.gateway.files import Files
from services.gateway.images import inline_image


class _Body(BaseModel):
    # OpenAI clients send fields we do not use (user, logprobs=False, ...): accept and ignore them.
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1, description="Only one choice per request is supported.")
    logit_bias: dict[str, float] | None = None
    stream_options: dict[str, bool] | None = None
    priority: Priority | None = Field(default=None, description="realtime, interactive or batch (ModalMesh's own).")

    @field_validator("stop")
    @classmethod
    def _at_most_four_stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @field_validator("logit_bias")
    @classmethod
    def _bias_keys_are_token_ids(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key, bias in (value or {}).items():
            if not key.lstrip("-").isdigit() or not -100 <= bias <= 100:
                raise ValueError("logit_bias maps token ids to a bias between -100 and 100")
        return value

    def sampling(self, default_max_tokens: int) -> Sampling:
        stops = [self.stop] if isinstance(self.stop, str) else list(self.stop or [])
        return Sampling(
            max_tokens=self.max_tokens or default_max_tokens,
            temperature=1.0 if self.temperature is None else self.temperature,
            top_p=1.0 if self.top_p is None else self.top_p,
            seed=self.seed,
            stop=tuple(s for s in stops if s),
            logit_bias={int(k): v for k, v in (self.logit_bias or {}).items()},
        )

    @property
    def include_usage(self) -> bool:
        return bool((self.stream_options or {}).get("include_usage"))


class ImageUrl(BaseModel):
    model_config = ConfigDict(extra="ignore")

    url: str = Field(min_length=1)
    detail: str | None = None


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None
    image_url: ImageUrl | None = None


class BodyMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    @property
    def image_urls(self) -> list[str]:
        if not isinstance(self.content, list):
            return []
        missing = [p for p in self.content if p.type == "image_url" and p.image_url is None]
        if missing:
            raise InvalidRequest("an image_url part needs image_url.url")
        return [p.image_url.url for p in self.content if p.type == "image_url" and p.image_url is not None]

    def to_contract(self, images: tuple[str, ...] = ()) -> ChatMessage:
        """The bus message; `images` are this message's image URLs as the gateway checked them."""
        if isinstance(self.content, list):
            unsupported = {p.type for p in self.content if p.type not in ("text", "image_url")}
            if unsupported:
                raise InvalidRequest(f"content part type(s) not supported: {', '.join(sorted(unsupported))}")
            text = "".join(p.text or "" for p in self.content)
        else:
            text = self.content or ""
        role = "system" if self.role == "developer" else self.role
        return ChatMessage(role=role, content=text, name=self.name, images=images)


class ChatCompletionBody(_Body):
    messages: list[BodyMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)

    def to_contract(
        self, request_id: str, deadline_ms: int, default_max_tokens: int, images: list[tuple[str, ...]] | None = None
    ) -> ChatRequest:
        """`images`: per message, its checked image data URLs (see `services.gateway.images`)."""
        per_message = images or [()] * len(self.messages)
        return ChatRequest(
            request_id=request_id,
            model=self.model,
            stream=self.stream,
            deadline_ms=deadline_ms,
            sampling=self.sampling(default_max_tokens),
            messages=tuple(m.to_contract(i) for m, i in zip(self.messages, per_message, strict=True)),
        )

    async def checked_images(
        self, files: Files, max_images: int, max_bytes: int, max_side: int
    ) -> list[tuple[str, ...]]:
        """Every message's images, decoded and checked, as data URLs (400 on the first bad one)."""
        urls = [m.image_urls for m in self.messages]
        if sum(map(len, urls)) > max_images:
            raise InvalidRequest(f"at most {max_images} images per request")
        return [tuple([await inline_image(u, files, max_bytes, max_side) for u in message]) for message in urls]

    def sampling(self, default_max_tokens: int) -> Sampling:
        base = super().sampling(default_max_tokens)
        if self.max_completion_tokens and not self.max_tokens:
            return base.model_copy(update={"max_tokens": self.max_completion_tokens})
        return base


class CompletionBody(_Body):
    prompt: str | list[str]

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("exactly one prompt per request is supported")
        return value

    @property
    def prompt_text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]

    def to_contract(self, request_id: str, deadline_ms: int, default_max_tokens: int) -> CompletionRequest:
        return CompletionRequest(
            request_id=request_id,
            model=self.model,
            stream=self.stream,
            deadline_ms=deadline_ms,
            sampling=self.sampling(default_max_tokens),
            prompt=self.prompt_text,
        )


class _MediaBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    priority: Priority | None = Field(default=None, description="realtime, interactive or batch (ModalMesh's own).")


def _size(value: str) -> tuple[int, int]:
    width, _, height = value.lower().partition("x")
    if not (width.isdigit() and height.isdigit()):
        raise InvalidRequest(f"size must look like 512x512, not {value!r}")
    w, h = int(width), int(height)
    if w % 8 or h % 8 or not (8 <= w <= 4096 and 8 <= h <= 4096):
        raise InvalidRequest(f"width and height must be multiples of 8 between 8 and 4096, not {value}")
    return w, h


class EmbeddingsBody(_MediaBody):
    input: str | list[str] = Field(description="One text or a batch of texts (token arrays are not supported).")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)

    @field_validator("input")
    @classmethod
    def _texts(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and not value:
            raise ValueError("input must hold at least one text")
        if any(not text for text in ([value] if isinstance(value, str) else value)):
            raise ValueError("input texts must not be empty")
        return value

    def to_contract(self, request_id: str, deadline_ms: int) -> EmbeddingRequest:
        inputs = (self.input,) if isinstance(self.input, str) else tuple(self.input)
        return EmbeddingRequest(
            request_id=request_id, model=self.model, deadline_ms=deadline_ms, inputs=inputs, dimensions=self.dimensions
        )


class ImageGenerationBody(_MediaBody):
    prompt: str = Field(min_length=1, max_length=4000)
    n: int = Field(default=1, ge=1, le=8)
    size: str = "512x512"
    response_format: Literal["url", "b64_json"] = "url"
    # Beyond OpenAI's fields: what diffusion pipelines take.
    negative_prompt: str = ""
    steps: int = Field(default=20, ge=1, le=200, description="Denoising steps (num_inference_steps).")
    guidance_scale: float = Field(default=7.0, ge=0.0, le=50.0)
    seed: int | None = None

    def to_contract(self, request_id: str, deadline_ms: int, stream: bool = False) -> ImageRequest:
        width, height = _size(self.size)
        return ImageRequest(
            request_id=request_id,
            model=self.model,
            deadline_ms=deadline_ms,
            stream=stream,
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            n=self.n,
            width=width,
            height=height,
            steps=self.steps,
            guidance=self.guidance_scale,
            seed=self.seed,
        )


class SpeechBody(_MediaBody):
    input: str = Field(min_length=1, max_length=4096)
    voice: str = Field(default="alloy", min_length=1, max_length=64)
    response_format: Literal["wav", "mp3", "pcm"] = "mp3"
    speed: float = Field(default=1.0, ge=0.25, le=4.0)

    def to_contract(self, request_id: str, deadline_ms: int, stream: bool = True) -> SpeechRequest:
        return SpeechRequest(
            request_id=request_id,
            model=self.model,
            deadline_ms=deadline_ms,
            stream=stream,
            input=self.input,
            voice=self.voice,
            speed=self.speed,
        )


class VideoBody(_MediaBody):
    prompt: str = Field(min_length=1, max_length=4000)
    negative_prompt: str = ""
    frames: int = Field(default=9, ge=1, le=257)
    fps: int = Field(default=8, ge=1, le=60)
    size: str = "256x256"
    steps: int = Field(default=20, ge=1, le=200)
    guidance_scale: float = Field(default=6.0, ge=0.0, le=50.0)
    seed: int | None = None

    def to_contract(self, request_id: str, deadline_ms: int, stream: bool = False) -> VideoRequest:
        width, height = _size(self.size)
        return VideoRequest(
            request_id=request_id,
            model=self.model,
            deadline_ms=deadline_ms,
            stream=stream,
            prompt=self.prompt,
            negative_prompt=self.negative_prompt,
            frames=self.frames,
            fps=self.fps,
            width=width,
            height=height,
            steps=self.steps,
            guidance=self.guidance_scale,
            seed=self.seed,
        )
