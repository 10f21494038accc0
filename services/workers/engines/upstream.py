"""Any OpenAI-compatible server as an engine: `vllm serve`, Ollama, llama.cpp's `llama-server` or
`python -m llama_cpp.server`, LMDeploy, TGI. The worker forwards each chat or completion as a
streamed request, turns the server's SSE chunks into events, and cancels by closing the upstream
request. The models it advertises are the server's own `/v1/models`, unless one is configured.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx

from contracts.errors import EngineError, InvalidRequest
from contracts.requests import AnyRequest, ChatRequest, CompletionRequest, Modality, TextRequest
from contracts.results import Timings, Usage
from services.common.ports import free_port
from services.workers.chat_format import openai_messages
from services.workers.engine import BackendLost, Engine, EngineEvent, Finished, TextDelta, expect
from services.workers.managed import ManagedServer, ProcessState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpstreamConfig:
    base_url: str  # up to and including /v1, e.g. http://127.0.0.1:8080/v1
    model_id: str | None = None  # what clients ask for; None: every model the server lists
    upstream_model: str | None = None  # the server's name for it, when it differs from model_id
    api_key: str | None = None
    slots: int = 4
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 300.0
    command: str | None = None  # start the server itself: e.g. "llama-server -m m.gguf --port {port}"
    log_path: Path | None = None  # where a started server's output goes


class UpstreamEngine(Engine):
    kind = "openai_upstream"

    def __init__(self, config: UpstreamConfig) -> None:
        self.config = config
        self._stop: dict[str, asyncio.Event] = {}
        self._models: tuple[str, ...] = (config.model_id,) if config.model_id else ()
        self.server: ManagedServer | None = None
        base_url = config.base_url
        if config.command:
            self.server = ManagedServer(config.command, port=free_port(), log_path=config.log_path)
            base_url = f"{self.server.base_url}/v1"
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers,
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
        log.info("upstream %s serves %s; advertising %s", self.config.base_url, ", ".join(listed),
                 ", ".join(self._models))

    async def upstream_models(self) -> tuple[str, ...]:
        try:
            res = await self._client.get("/models")
            res.raise_for_status()
            return tuple(m["id"] for m in res.json()["data"])
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise EngineError(f"upstream {self.config.base_url} is not answering /models: {exc}") from exc

    def _body(self, request: TextRequest, resume_text: str) -> tuple[str, dict[str, Any]]:
        s = request.sampling
        body: dict[str, Any] = {
            "model": self.config.upstream_model or request.model, "stream": True, "max_tokens": s.max_tokens,
            "temperature": s.temperature, "top_p": s.top_p, "stream_options": {"include_usage": True},
        }
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop:
            body["stop"] = list(s.stop)
        if s.logit_bias:
            body["logit_bias"] = {str(k): v for k, v in s.logit_bias.items()}
        if isinstance(request, ChatRequest):
            return "/chat/completions", {**body, "messages": openai_messages(request, resume_text)}
        return "/completions", {**body, "prompt": request.prompt + resume_text}

    async def generate(self, any_request: AnyRequest, resume_text: str = "") -> AsyncIterator[EngineEvent]:
        request = cast(TextRequest, expect(any_request, (ChatRequest, CompletionRequest), self.kind))
        path, body = self._body(request, resume_text)
        cancelled = self._stop.setdefault(request.request_id, asyncio.Event())
        started = time.perf_counter()
        first_at: float | None = None
        pieces, unreported, finish, usage = 0, 0, "length", None
        try:
            async with self._client.stream("POST", path, json=body) as res:
                if res.status_code >= 400:
                    detail = (await res.aread()).decode(errors="replace")[:300]
                    error = InvalidRequest if res.status_code in (400, 404, 422) else EngineError
                    raise error(f"upstream answered {res.status_code}: {detail}")
                async for data in _until(cancelled, _sse_data(res)):
                    if data is None:
                        finish = "cancelled"
                        break  # leaving the `async with` closes the upstream request: it stops too
                    chunk = json.loads(data)
                    usage = chunk.get("usage") or usage
                    for choice in chunk.get("choices") or []:
                        delta = choice.get("delta") or {}
                        text = delta.get("content") or choice.get("text") or ""
                        # One content chunk per token, even an empty one (a token that ends mid-character),
                        # but not the closing chunk: the count when the server sends no usage.
                        if ("content" in delta or "text" in choice) and (text or not choice.get("finish_reason")):
                            pieces += 1
                            unreported += 1
                        if text:
                            first_at = first_at or time.perf_counter()
                            yield TextDelta(text, tokens=unreported)
                            unreported = 0
                        finish = choice.get("finish_reason") or finish
        except httpx.TransportError as exc:  # connection refused, reset, cut off mid-stream
            raise BackendLost(f"upstream {self.config.base_url} lost: {type(exc).__name__}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise EngineError(f"upstream {self.config.base_url} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self._stop.pop(request.request_id, None)
        yield Finished(
            finish_reason=finish if finish in ("stop", "length", "cancelled") else "stop",
            usage=Usage(prompt_tokens=(usage or {}).get("prompt_tokens", 0),
                        completion_tokens=(usage or {}).get("completion_tokens", pieces)),
            timings=Timings.since(started, first_at, time.perf_counter()),
        )

    async def abort(self, request_id: str) -> None:
        if (event := self._stop.get(request_id)) is not None:
            event.set()

    async def cleanup(self) -> None:
        for event in self._stop.values():
            event.set()
        await self._client.aclose()
        if self.server is not None:
            await self.server.stop()


async def _sse_data(res: httpx.Response) -> AsyncIterator[str]:
    """The `data:` payloads of a server-sent event stream, up to `[DONE]`."""
    async for line in res.aiter_lines():
        if line.startswith("data:"):
            data = line[5:].strip()
            if data == "[DONE]":
                return
            if data:
                yield data


async def _until(cancelled: asyncio.Event, items: AsyncIterator[str]) -> AsyncIterator[str | None]:
    """`items`, but a None as soon as `cancelled` is set, even while waiting for the next item."""
    waiter = asyncio.ensure_future(cancelled.wait())
    try:
        while True:
            step = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait({step, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if step in done:
                try:
                    yield step.result()
                except StopAsyncIteration:
                    return
            else:
                step.cancel()
                yield None
                return
    finally:
        waiter.cancel()
