"""The requests of each kind, sent with httpx, timed as their bytes arrive."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx

from loadgen.record import Record
from loadgen.spec import RequestClass
from loadgen.stats import wav_seconds

Send = Callable[["Sender", RequestClass, str, Record], Awaitable[None]]


class RequestFailed(Exception):
    def __init__(self, status: int, code: str) -> None:
        super().__init__(code)
        self.status = status
        self.code = code


def error_code(status: int, body: bytes) -> str:
    """The OpenAI error's code (or type) when the body has one, else `http_<status>`."""
    try:
        error = json.loads(body).get("error") or {}
    except (ValueError, AttributeError):
        error = {}
    code = error.get("code") or error.get("type") if isinstance(error, dict) else None
    return str(code) if code else f"http_{status}"


async def sse(response: httpx.Response) -> AsyncIterator[tuple[str, str]]:
    """(event, data) of each server-sent event, as each arrives."""
    event, data = "message", list[str]()
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield event, "\n".join(data)
            event, data = "message", list[str]()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
        elif line.startswith("event:"):
            event = line[6:].strip()
    if data:
        yield event, "\n".join(data)


class Sender:
    """Sends one request of a class and fills its record; `origin` is the run's perf_counter zero."""

    def __init__(self, client: httpx.AsyncClient, origin: float) -> None:
        self.client = client
        self.origin = origin
        self._png: dict[int, str] = {}

    def now(self) -> float:
        return time.perf_counter() - self.origin

    async def send(self, cls: RequestClass, prompt: str, record: Record) -> None:
        try:
            await SENDERS[cls.kind](self, cls, prompt, record)
        except RequestFailed as exc:
            record.status, record.error = exc.status, exc.code
        except httpx.TimeoutException:
            record.error = "timeout"
        except httpx.HTTPError as exc:
            record.error = type(exc).__name__
        except (ValueError, KeyError, TypeError, AttributeError):
            record.error = "bad_response"  # not the OpenAI shape: counted, and the run goes on
        finally:
            record.end = self.now()

    async def post(self, path: str, body: dict[str, Any], record: Record, stream: bool = False) -> httpx.Response:
        """Sends the request, its record's start taken as it goes out (as vLLM's benchmark times it),
        not before its body is built."""
        request = self.client.build_request("POST", path, json=body)
        record.start = self.now()
        return await self.client.send(request, stream=stream)

    async def _checked(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            raise RequestFailed(response.status_code, error_code(response.status_code, await response.aread()))

    async def stream_text(self, path: str, body: dict[str, Any], record: Record, field: str) -> None:
        """A streamed chat or completion: the first token and each gap between tokens as chunks arrive."""
        body = {**body, "stream": True, "stream_options": {"include_usage": True}}
        async with contextlib.aclosing(await self.post(path, body, record, stream=True)) as response:
            await self._checked(response)
            record.status = response.status_code
            last, pieces, usage = 0.0, 0, None
            async for _, data in sse(response):
                if data == "[DONE]":
                    continue  # read on to the end: a response left unread closes its connection
                now = self.now()
                chunk = json.loads(data)
                if chunk.get("error"):
                    raise RequestFailed(response.status_code, error_code(500, data.encode()))
                usage = chunk.get("usage") or usage
                choices = chunk.get("choices") or []
                text = (choices[0].get("delta") or {}).get(field) if field == "content" and choices else None
                if field == "text" and choices:
                    text = choices[0].get("text")
                if not text:
                    continue
                if record.ttft is None:
                    record.ttft = now - record.start
                else:
                    record.itls.append(now - last)
                last, pieces = now, pieces + 1
        record.output_tokens = (usage or {}).get("completion_tokens") or pieces
        record.input_tokens = (usage or {}).get("prompt_tokens") or 0

    async def follow_task(self, body: dict[str, Any], record: Record) -> None:
        """A task through the task API: accepted, then its events to the end. The first event a worker
        sends marks the end of the queue wait; the first progress event the time to first progress."""
        response = await self.post("/v1/tasks", body, record)
        await self._checked(response)
        accepted = self.now()
        task_id = response.json()["id"]
        async with self.client.stream("GET", f"/v1/tasks/{task_id}/events") as events:
            await self._checked(events)
            async for event, data in sse(events):
                now = self.now()
                if record.queue_wait is None:
                    record.queue_wait = now - accepted
                if event == "progress" and record.first_progress is None:
                    record.first_progress = now
                    record.ttft = now - record.start
                elif event == "artifact":
                    record.items += 1
                elif event == "error":
                    raise RequestFailed(500, error_code(500, data.encode()))
                elif event == "final":
                    break
        record.status = response.status_code

    def png(self, side: int) -> str:
        """A data URL of a small gradient PNG, made once per size."""
        if side not in self._png:
            from PIL import Image

            image = Image.linear_gradient("L").resize((side, side)).convert("RGB")
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
            self._png[side] = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
        return self._png[side]


async def send_chat(sender: Sender, cls: RequestClass, prompt: str, record: Record) -> None:
    messages = [{"role": "user", "content": prompt}]
    body = {"model": cls.model, "messages": messages, "max_tokens": cls.max_tokens, **cls.params}
    await sender.stream_text("/v1/chat/completions", body, record, "content")


async def send_vision(sender: Sender, cls: RequestClass, prompt: str, record: Record) -> None:
    content = [
        {"type": "text", "text": prompt},
        {"type": "image_url", "image_url": {"url": sender.png(cls.image_side)}},
    ]
    body = {"model": cls.model, "messages": [{"role": "user", "content": content}], "max_tokens": cls.max_tokens}
    await sender.stream_text("/v1/chat/completions", {**body, **cls.params}, record, "content")


async def send_completion(sender: Sender, cls: RequestClass, prompt: str, record: Record) -> None:
    body = {"model": cls.model, "prompt": prompt, "max_tokens": cls.max_tokens, **cls.params}
    await sender.stream_text("/v1/completions", body, record, "text")


async def send_embedding(sender: Sender, cls: RequestClass, prompt: str, record: Record) -> None:
    texts = [f"{i} {prompt}" for i in range(cls.inputs)]
    response = await sender.post("/v1/embeddings", {"model": cls.model, "input": texts, **cls.params}, record)
    await sender._checked(response)
    reply = response.json()
    record.status = response.status_code
    record.items = len(reply.get("data") or [])
    record.input_tokens = (reply.get("usage") or {}).get("prompt_tokens") or 0


def _media_fields(cls: RequestClass) -> dict[str, Any]:
    fields: dict[str, Any] = {"model": cls.model, "size": cls.size}
    if cls.steps is not None:
        fields["steps"] = cls.steps
    return fields


async def send_image(sender: Sender, cls: RequestClass, prompt: str, record: Record) -> None:
    body = {**_media_fields(cls), "prompt": prompt, **cls.params}
    if cls.via_tasks:
        await sender.follow_task({"modality": "image", **body}, record)
        return
    response = await sender.post("/v1/images/generations", {"response_format": "url", **body}, record)
    await sender._checked(response)
    record.status = response.status_code
    record.items = len(response.json().get("data") or [])


async def send_speech(sender: Sender, cls: RequestClass, prompt: str, record: Record) -> None:
    body = {"model": cls.model, "input": prompt, "voice": cls.voice, "response_format": cls.response_format}
    audio = bytearray()
    speech = await sender.post("/v1/audio/speech", {**body, **cls.params}, record, stream=True)
    async with contextlib.aclosing(speech) as response:
        await sender._checked(response)
        record.status = response.status_code
        async for piece in response.aiter_bytes():
            if piece and record.first_byte is None:
                record.first_byte = sender.now()
                record.ttft = record.first_byte - record.start
            audio += piece
    record.audio_s = wav_seconds(bytes(audio)) if cls.response_format == "wav" else None


async def send_video(sender: Sender, cls: RequestClass, prompt: str, record: Record) -> None:
    body = {"modality": "video", **_media_fields(cls), "prompt": prompt, "frames": cls.frames, **cls.params}
    await sender.follow_task(body, record)


SENDERS: dict[str, Send] = {
    "chat": send_chat,
    "vision": send_vision,
    "completion": send_completion,
    "embedding": send_embedding,
    "image": send_image,
    "speech": send_speech,
    "video": send_video,
}
