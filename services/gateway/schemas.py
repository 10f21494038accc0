"""OpenAI request bodies the gateway accepts, and their translation into bus requests."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.capabilities import REFUSED_FIELDS, is_neutral
from contracts.errors import InvalidRequest
from contracts.requests import (
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImageRequest,
    Priority,
    ResponseFormat,
    Sampling,
    SpeechRequest,
    Tool,
    ToolCall,
    ToolChoice,
    VideoRequest,
)
from services.gateway.files import Files
from services.gateway.images import inline_image


class _Body(BaseModel):
    # Fields beyond these are kept (model_extra) so that OpenAI's fields no engine serves are refused.
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=8, description="Choices to make: the gateway runs one request per choice.")
    logit_bias: dict[str, float] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    user: str | None = Field(default=None, max_length=256, description="The end user, for the gateway's log.")
    stream_options: dict[str, bool] | None = None
    priority: Priority | None = Field(default=None, description="realtime, interactive or batch (ModalMesh's own).")

    @model_validator(mode="after")
    def _no_refused_fields(self) -> _Body:
        """OpenAI fields no engine here serves are refused by name, not ignored; unknown ones are ignored."""
        for name, value in (self.model_extra or {}).items():
            if name in REFUSED_FIELDS and not is_neutral(value):
                raise InvalidRequest(f"`{name}` is not supported by model `{self.model}`", param=name)
        return self

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
            presence_penalty=self.presence_penalty or 0.0,
            frequency_penalty=self.frequency_penalty or 0.0,
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


class FunctionCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)
    arguments: str = "{}"


class BodyToolCall(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall


class BodyMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[BodyToolCall] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _tool_turns(self) -> BodyMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only an assistant message has tool_calls")
        return self

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
        calls = tuple(
            ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments) for c in self.tool_calls or ()
        )
        return ChatMessage(
            role=role, content=text, name=self.name, images=images, tool_calls=calls, tool_call_id=self.tool_call_id
        )


class FunctionDef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]+$")
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class BodyTool(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: FunctionDef


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(min_length=1)


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    name: str = Field(default="response", min_length=1, max_length=64)
    description: str = ""
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


class BodyResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    def to_contract(self) -> ResponseFormat:
        if self.type == "json_schema":
            if self.json_schema is None:
                raise InvalidRequest("response_format json_schema needs `json_schema`", param="response_format")
            _check_schema(self.json_schema.schema_, "response_format.json_schema.schema")
            return ResponseFormat(
                type="json_schema",
                name=self.json_schema.name,
                json_schema=self.json_schema.schema_ or {"type": "object"},
                strict=bool(self.json_schema.strict),
            )
        return ResponseFormat(type=self.type)


def _check_schema(schema: dict[str, Any], param: str) -> None:
    """A JSON schema the client sent: it must be one (Draft 2020-12's own meta-schema says)."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise InvalidRequest(f"{param} is not a valid JSON schema: {exc.message}", param=param) from None


class ChatCompletionBody(_Body):
    messages: list[BodyMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: list[BodyTool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: BodyResponseFormat | None = None

    @model_validator(mode="after")
    def _tools_agree(self) -> ChatCompletionBody:
        if self.tool_choice is not None and not self.tools:
            raise InvalidRequest("tool_choice is only allowed when tools are given", param="tool_choice")
        if isinstance(self.tool_choice, NamedToolChoice):
            name = self.tool_choice.function.name
            if name not in {t.function.name for t in self.tools or ()}:
                raise InvalidRequest(f"tool_choice names `{name}`, which is not among the tools", param="tool_choice")
        if self.top_logprobs and not self.logprobs:
            raise InvalidRequest("top_logprobs needs logprobs: true", param="top_logprobs")
        for tool in self.tools or ():
            _check_schema(tool.function.parameters, f"tools[{tool.function.name}].parameters")
        return self

    def _tool_choice(self) -> ToolChoice:
        if isinstance(self.tool_choice, NamedToolChoice):
            return ToolChoice(mode="function", name=self.tool_choice.function.name)
        return ToolChoice(mode=self.tool_choice or "auto")

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
            tools=tuple(
                Tool(name=t.function.name, description=t.function.description, parameters=t.function.parameters)
                for t in self.tools or ()
            ),
            tool_choice=self._tool_choice(),
            parallel_tool_calls=self.parallel_tool_calls is not False,
            response_format=self.response_format.to_contract() if self.response_format else ResponseFormat(),
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
        update: dict[str, Any] = {"logprobs": bool(self.logprobs), "top_logprobs": self.top_logprobs or 0}
        if self.max_completion_tokens and not self.max_tokens:
            update["max_tokens"] = self.max_completion_tokens
        return base.model_copy(update=update)


class CompletionBody(_Body):
    prompt: str | list[str]
    logprobs: int | None = Field(default=None, ge=0, le=5, description="Alternatives per token (0: the token's own).")

    def sampling(self, default_max_tokens: int) -> Sampling:
        base = super().sampling(default_max_tokens)
        if self.logprobs is None:
            return base
        return base.model_copy(update={"logprobs": True, "top_logprobs": self.logprobs})

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
