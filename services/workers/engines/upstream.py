"""Any OpenAI-compatible server as an engine: `vllm serve`, Ollama, llama.cpp's `llama-server` or
`python -m llama_cpp.server`, LMDeploy, TGI. The worker forwards each chat or completion as a
streamed request, turns the server's SSE chunks into events, and cancels by closing the upstream
request. The models it advertises are the server's own `/v1/models`, unless one is configured.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx

from contracts.capabilities import check_fields, fields_in_use
from contracts.errors import EngineError, InvalidRequest
from contracts.requests import AnyRequest, ChatMessage, ChatRequest, CompletionRequest, Modality, TextRequest
from contracts.results import Timings, TokenLogprob, ToolCallDelta, TopLogprob, Usage
from services.common.ports import free_port
from services.workers.chat_format import openai_messages, openai_tools
from services.workers.engine import (
    BackendLost,
    Engine,
    EngineEvent,
    Finished,
    StopEvents,
    TextDelta,
    expect,
    until_set,
)
from services.workers.managed import ContainerServer, ManagedServer, ProcessState, Supervised
from services.workers.registry import EngineKind
from services.workers.settings import WorkerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpstreamConfig:
    base_url: str  # up to and including /v1, e.g. http://127.0.0.1:8080/v1 (Ollama's API: the root)
    api: str = "openai"  # or "ollama": Ollama's own /api/chat and /api/generate
    model_id: str | None = None  # what clients ask for; None: every model the server lists
    upstream_model: str | None = None  # the server's name for it, when it differs from model_id
    api_key: str | None = None
    slots: int = 4
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 300.0
    command: str | None = None  # start the server itself: e.g. "llama-server -m m.gguf --port {port}"
    image: str | None = None  # or run it in a Docker container of this image, e.g. "vllm/vllm-openai:latest"
    image_args: str = ""  # the container's arguments, e.g. "--model /models/qwen --port {port}"
    container_port: int = 8000
    gpus: str | None = None  # the server's GPUs: "all" or "0,1" (a process gets CUDA_VISIBLE_DEVICES)
    volumes: tuple[tuple[str, str], ...] = ()  # (host path, path inside), read-only
    log_path: Path | None = None  # where a started server's output goes


class UpstreamEngine(StopEvents, Engine):
    kind = "openai_upstream"

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        StopEvents.__init__(self)
        self._models: tuple[str, ...] = (config.model_id,) if config.model_id else ()
        self.server: Supervised | None = None
        if config.api not in WIRES:
            raise EngineError(f"upstream api {config.api!r} is not one of {', '.join(WIRES)}")
        self._wire = WIRES[config.api]
        base_url = config.base_url
        if config.command:
            gpus = {"CUDA_VISIBLE_DEVICES": config.gpus} if config.gpus and config.gpus != "all" else {}
            self.server = ManagedServer(command=config.command, port=free_port(), log_path=config.log_path, env=gpus)
        elif config.image:
            self.server = ContainerServer(
                image=config.image,
                args=config.image_args,
                gpus=config.gpus,
                port=free_port(),
                container_port=config.container_port,
                volumes=dict(config.volumes),
                log_path=config.log_path,
            )
        if self.server is not None:
            base_url = self.server.base_url + ("/v1" if config.api == "openai" else "")
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s),
            limits=httpx.Limits(max_connections=config.slots * 2),
        )

    @property
    def models(self) -> tuple[str, ...]:
        return self._models

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return (Modality.chat, Modality.completion)

    @property
    def slots(self) -> int:
        return self.config.slots

    def health(self) -> tuple[bool, str]:
        if self.server is None or self.server.state is ProcessState.running:
            return True, ""
        return False, f"upstream server {self.server.state.value}: {self.server.detail}"

    async def start(self) -> None:
        """Start the server if this engine manages it; learn the models it serves."""
        if self.server is not None:
            await self.server.start()
        listed = await self.upstream_models()
        if not self._models:
            self._models = listed
        log.info(
            "upstream %s serves %s; advertising %s", self.config.base_url, ", ".join(listed), ", ".join(self._models)
        )

    async def upstream_models(self) -> tuple[str, ...]:
        try:
            res = await self._client.get(self._wire.models_path)
            res.raise_for_status()
            return self._wire.model_ids(res.json())
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise EngineError(
                f"upstream {self.config.base_url} is not answering {self._wire.models_path}: {exc}"
            ) from exc

    async def generate(self, any_request: AnyRequest, resume_text: str = "") -> AsyncIterator[EngineEvent]:
        request = cast(TextRequest, expect(any_request, (ChatRequest, CompletionRequest), self.kind))
        check_fields(self.kind, request)
        path, body = self._wire.body(request, self.config.upstream_model or request.model, resume_text)
        cancelled = self.flag(request.request_id)
        started = time.perf_counter()
        first_at: float | None = None
        pieces, unreported, finish = 0, 0, "length"
        prompt_tokens: int | None = None
        completion_tokens: int | None = None
        try:
            async with self._client.stream("POST", path, json=body) as res:
                if res.status_code >= 400:
                    detail = (await res.aread()).decode(errors="replace")[:300]
                    error = InvalidRequest if res.status_code in (400, 404, 422) else EngineError
                    raise error(f"upstream answered {res.status_code}: {detail}")
                async for data in until_set(cancelled, self._wire.messages(res)):
                    if data is None:
                        finish = "cancelled"
                        break  # leaving the `async with` closes the upstream request: it stops too
                    piece = self._wire.piece(json.loads(data))
                    if piece.prompt_tokens is not None:
                        prompt_tokens = piece.prompt_tokens
                    if piece.completion_tokens is not None:
                        completion_tokens = piece.completion_tokens
                    if piece.token:
                        pieces += 1
                        unreported += 1
                    if piece.text or piece.tool_calls or piece.logprobs:
                        first_at = first_at or time.perf_counter()
                        yield TextDelta(piece.text, unreported, piece.tool_calls, piece.logprobs)
                        unreported = 0
                    finish = piece.finish or finish
        except httpx.TransportError as exc:  # connection refused, reset, cut off mid-stream
            raise BackendLost(f"upstream {self.config.base_url} lost: {type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise EngineError(f"upstream {self.config.base_url} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self.drop(request.request_id)
        yield Finished(
            finish_reason=finish if finish in ("stop", "length", "cancelled", "tool_calls") else "stop",
            usage=Usage(
                prompt_tokens=prompt_tokens or 0,
                completion_tokens=completion_tokens if completion_tokens is not None else pieces,
            ),
            timings=Timings.since(started, first_at, time.perf_counter()),
        )

    async def cleanup(self) -> None:
        self.abort_all()
        await self._client.aclose()
        if self.server is not None:
            await self.server.stop()


@dataclass(frozen=True)
class Piece:
    """What one streamed message of an upstream says: text, whether it was a token, how it ended."""

    text: str = ""
    token: bool = False
    finish: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    tool_calls: tuple[ToolCallDelta, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()


def _openai_fields(request: TextRequest) -> dict[str, Any]:
    """The request's fields beyond plain sampling, as OpenAI's API names them (the server honours them)."""
    s = request.sampling
    body: dict[str, Any] = {}
    if s.presence_penalty:
        body["presence_penalty"] = s.presence_penalty
    if s.frequency_penalty:
        body["frequency_penalty"] = s.frequency_penalty
    if s.logprobs and isinstance(request, ChatRequest):
        body |= {"logprobs": True, **({"top_logprobs": s.top_logprobs} if s.top_logprobs else {})}
    elif s.logprobs:
        body["logprobs"] = s.top_logprobs
    if not isinstance(request, ChatRequest):
        return body
    if request.tools:
        choice = request.tool_choice
        body |= {
            "tools": openai_tools(request.tools),
            "tool_choice": {"type": "function", "function": {"name": choice.name}}
            if choice.mode == "function"
            else choice.mode,
            "parallel_tool_calls": request.parallel_tool_calls,
        }
    fmt = request.response_format
    if fmt.type == "json_schema":
        schema = {"name": fmt.name, "schema": fmt.json_schema or {"type": "object"}, "strict": fmt.strict}
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    elif fmt.type == "json_object":
        body["response_format"] = {"type": "json_object"}
    return body


def _tool_pieces(delta: dict[str, Any]) -> tuple[ToolCallDelta, ...]:
    pieces = []
    for i, call in enumerate(delta.get("tool_calls") or ()):
        function = call.get("function") or {}
        pieces.append(
            ToolCallDelta(
                index=call.get("index", i),
                id=call.get("id"),
                name=function.get("name"),
                arguments=function.get("arguments") or "",
            )
        )
    return tuple(pieces)


def _logprob_entries(choice: dict[str, Any]) -> tuple[TokenLogprob, ...]:
    """A chunk's log probabilities, from chat's `logprobs.content` or the legacy parallel lists."""
    logprobs = choice.get("logprobs") or {}
    if logprobs.get("content") is not None:
        return tuple(
            TokenLogprob(
                token=t["token"],
                logprob=t["logprob"],
                bytes=tuple(t.get("bytes") or ()),
                top=tuple(
                    TopLogprob(token=a["token"], logprob=a["logprob"], bytes=tuple(a.get("bytes") or ()))
                    for a in t.get("top_logprobs") or ()
                ),
            )
            for t in logprobs["content"]
        )
    tokens, values = logprobs.get("tokens") or (), logprobs.get("token_logprobs") or ()
    tops = logprobs.get("top_logprobs") or [None] * len(tokens)
    return tuple(
        TokenLogprob(
            token=token,
            logprob=value if value is not None else 0.0,
            top=tuple(TopLogprob(token=k, logprob=v) for k, v in (top or {}).items()),
        )
        for token, value, top in zip(tokens, values, tops, strict=False)
    )


class OpenAIWire:
    """OpenAI's API: `/v1/models`, `/v1/chat/completions` and `/v1/completions`, streamed as SSE."""

    models_path = "/models"

    @staticmethod
    def model_ids(listing: dict[str, Any]) -> tuple[str, ...]:
        return tuple(m["id"] for m in listing["data"])

    @staticmethod
    def body(request: TextRequest, model: str, resume_text: str) -> tuple[str, dict[str, Any]]:
        s = request.sampling
        body: dict[str, Any] = {
            "model": model,
            "stream": True,
            "max_tokens": s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "stream_options": {"include_usage": True},
        }
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop:
            body["stop"] = list(s.stop)
        if s.logit_bias:
            body["logit_bias"] = {str(k): v for k, v in s.logit_bias.items()}
        body |= _openai_fields(request)
        if isinstance(request, ChatRequest):
            return "/chat/completions", {**body, "messages": openai_messages(request, resume_text)}
        return "/completions", {**body, "prompt": request.prompt + resume_text}

    @staticmethod
    def messages(res: httpx.Response) -> AsyncIterator[str]:
        return _sse_data(res)

    @staticmethod
    def piece(chunk: dict[str, Any]) -> Piece:
        usage = chunk.get("usage") or {}
        text, token, finish = "", False, None
        calls: tuple[ToolCallDelta, ...] = ()
        logprobs: tuple[TokenLogprob, ...] = ()
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            content = delta.get("content") or choice.get("text") or ""
            text += content
            calls += _tool_pieces(delta)
            logprobs += _logprob_entries(choice)
            # One content chunk per token, even an empty one (a token that ends mid-character), but
            # not the closing chunk: the count when the server sends no usage.
            if ("content" in delta or "text" in choice) and (content or not choice.get("finish_reason")):
                token = True
            finish = choice.get("finish_reason") or finish
        return Piece(text, token, finish, usage.get("prompt_tokens"), usage.get("completion_tokens"), calls, logprobs)


class OllamaWire:
    """Ollama's own API: `/api/tags`, `/api/chat` and `/api/generate` (raw), streamed as JSON lines.
    Its base URL is the server's root, e.g. http://127.0.0.1:11434."""

    models_path = "/api/tags"

    @staticmethod
    def model_ids(listing: dict[str, Any]) -> tuple[str, ...]:
        return tuple(m["name"] for m in listing["models"])

    @staticmethod
    def body(request: TextRequest, model: str, resume_text: str) -> tuple[str, dict[str, Any]]:
        s = request.sampling
        for field in ("logit_bias", "logprobs", "tools"):
            if field in fields_in_use(request):
                raise InvalidRequest(f"`{field}` is not supported by `{request.model}` (its server is Ollama)", field)
        options: dict[str, Any] = {"num_predict": s.max_tokens, "temperature": s.temperature, "top_p": s.top_p}
        if s.presence_penalty:
            options["presence_penalty"] = s.presence_penalty
        if s.frequency_penalty:
            options["frequency_penalty"] = s.frequency_penalty
        if s.seed is not None:
            options["seed"] = s.seed
        if s.stop:
            options["stop"] = list(s.stop)
        body: dict[str, Any] = {"model": model, "stream": True, "options": options}
        if isinstance(request, ChatRequest) and request.response_format.type != "text":
            fmt = request.response_format  # Ollama's `format`: "json", or a JSON schema
            body["format"] = fmt.json_schema if fmt.type == "json_schema" else "json"
        if isinstance(request, ChatRequest):
            # A last assistant message is continued, not answered: the failover's resume.
            resume = [{"role": "assistant", "content": resume_text}] if resume_text else []
            return "/api/chat", {**body, "messages": [_ollama_message(m) for m in request.messages] + resume}
        return "/api/generate", {**body, "prompt": request.prompt + resume_text, "raw": True}

    @staticmethod
    async def messages(res: httpx.Response) -> AsyncIterator[str]:
        async for line in res.aiter_lines():
            if line.strip():
                yield line

    @staticmethod
    def piece(chunk: dict[str, Any]) -> Piece:
        if "error" in chunk:
            raise EngineError(f"upstream failed mid-stream: {chunk['error']}")
        text = (chunk.get("message") or {}).get("content") or chunk.get("response") or ""
        if not chunk.get("done"):
            return Piece(text, token=True)
        return Piece(
            text,
            token=bool(text),
            finish=chunk.get("done_reason") or "stop",
            prompt_tokens=chunk.get("prompt_eval_count"),
            completion_tokens=chunk.get("eval_count"),
        )


def _ollama_message(message: ChatMessage) -> dict[str, Any]:
    images = list(message.images_base64)  # Ollama takes bare base64
    return {"role": message.role, "content": message.content, **({"images": images} if images else {})}


async def _sse_data(res: httpx.Response) -> AsyncIterator[str]:
    """The `data:` payloads of a server-sent event stream, up to `[DONE]`."""
    async for line in res.aiter_lines():
        if line.startswith("data:"):
            data = line[5:].strip()
            if data == "[DONE]":
                return
            if data:
                yield data


WIRES: dict[str, type[OpenAIWire] | type[OllamaWire]] = {"openai": OpenAIWire, "ollama": OllamaWire}


def from_settings(settings: WorkerSettings) -> UpstreamEngine:
    """An engine in front of the server the settings name: a URL, or a command or container it manages."""
    if not (settings.upstream_url or settings.upstream_command or settings.upstream_image):
        raise SystemExit(
            "the openai_upstream engine needs MODALMESH_WORKER_UPSTREAM_URL (http://host:8080/v1), "
            "MODALMESH_WORKER_UPSTREAM_COMMAND (a server to start, with {port}) or "
            "MODALMESH_WORKER_UPSTREAM_IMAGE (a container to run)"
        )
    managed = settings.upstream_command or settings.upstream_image
    log_name = "-".join(["upstream", settings.worker_id, *([settings.model_id] if settings.model_id else [])])
    return UpstreamEngine(
        UpstreamConfig(
            base_url=settings.upstream_url or "",
            api=settings.upstream_api,
            model_id=settings.model_id,
            upstream_model=settings.upstream_model,
            api_key=settings.upstream_api_key,
            slots=settings.slots or 4,
            command=settings.upstream_command,
            image=settings.upstream_image,
            image_args=settings.upstream_image_args,
            container_port=settings.upstream_container_port,
            gpus=settings.upstream_gpus,
            volumes=tuple(settings.upstream_volumes.items()),
            log_path=settings.logs_dir / f"{log_name}.log" if managed else None,
        )
    )


ENGINE = EngineKind(UpstreamEngine.kind, from_settings)
