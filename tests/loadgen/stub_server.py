"""A test-only OpenAI-shaped server with known delays: SSE chat and completions (the first token after
`ttft`, then one every `itl`), embeddings answered after `latency`, speech whose first WAV byte comes
after `ttft` and holds `audio` seconds of silence, a 429 for the model `limited` and a broken event
for the model `garbled`.

Delays run from the request's arrival to absolute deadlines, so waking late once does not shift the
tokens after it; `Kept` records the delays it really kept (a busy machine wakes timers late)."""

from __future__ import annotations

import asyncio
import itertools
import json
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

RATE = 16000


@dataclass
class Delays:
    ttft: float
    itl: float
    tokens: int
    latency: float
    audio: float


@dataclass
class Kept:
    """Per request: seconds from its arrival to its first token or byte (`first`), between tokens (`gaps`),
    and the perf_counter times it arrived and each token went (`at`: the stub shares the test's clock)."""

    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, route: str, arrived: float, sent: list[float]) -> None:
        gaps = [b - a for a, b in itertools.pairwise(sent)]
        self.rows.append({"route": route, "first": sent[0] - arrived, "gaps": gaps, "arrived": arrived, "at": sent})

    def ms(self, route: str, figure: str) -> list[float]:
        values = [r[figure] for r in self.rows if r["route"] == route]
        flat = [v for vs in values for v in vs] if figure == "gaps" else values
        return [float(v) * 1000 for v in flat]


async def until(deadline: float) -> float:
    """Sleeps until the deadline; returns when it really woke."""
    await asyncio.sleep(max(0.0, deadline - time.perf_counter()))
    return time.perf_counter()


def wav_header(rate: int) -> bytes:
    """A streamed WAV's header: 16-bit mono, sizes left open."""
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF\xff\xff\xff\xffWAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data\xff\xff\xff\xff"


async def body_of(receive: Receive) -> dict[str, Any]:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            data: dict[str, Any] = json.loads(b"".join(chunks))
            return data


def build(delays: Delays, kept: Kept) -> ASGIApp:
    """A bare ASGI app: no framework between uvicorn and the handlers, so a streamed answer is over as
    its last byte goes (a framework's teardown after it would hold the connection's next request back,
    a delay the stub would not see)."""

    async def reply(send: Send, status: int, content_type: str, chunks: AsyncIterator[bytes]) -> None:
        headers = [(b"content-type", content_type.encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        async for chunk in chunks:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def once(data: bytes) -> AsyncIterator[bytes]:
        yield data

    async def text(path: str, arrived: float, body: dict[str, Any], send: Send) -> None:
        chat = path.endswith("chat/completions")

        async def events() -> AsyncIterator[bytes]:
            sent = []
            for i in range(delays.tokens):
                sent.append(await until(arrived + delays.ttft + i * delays.itl))
                choice = {"index": 0, "delta": {"content": f" t{i}"}} if chat else {"index": 0, "text": f" t{i}"}
                yield f"data: {json.dumps({'choices': [choice]})}\n\n".encode()
            kept.add(path, arrived, sent)
            usage = {"prompt_tokens": 5, "completion_tokens": delays.tokens, "total_tokens": delays.tokens + 5}
            yield f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode()

        await reply(send, 200, "text/event-stream", events())

    async def embeddings(path: str, arrived: float, body: dict[str, Any], send: Send) -> None:
        kept.add(path, arrived, [await until(arrived + delays.latency)])
        data = [{"object": "embedding", "index": i, "embedding": [0.0, 1.0]} for i in range(len(body["input"]))]
        answer = {"object": "list", "data": data, "usage": {"prompt_tokens": 3, "total_tokens": 3}}
        await reply(send, 200, "application/json", once(json.dumps(answer).encode()))

    async def speech(path: str, arrived: float, body: dict[str, Any], send: Send) -> None:
        async def audio_bytes() -> AsyncIterator[bytes]:
            kept.add(path, arrived, [await until(arrived + delays.ttft)])
            yield wav_header(RATE)
            yield b"\0" * round(delays.audio * RATE) * 2

        await reply(send, 200, "audio/wav", audio_bytes())

    routes = {
        "/v1/chat/completions": text,
        "/v1/completions": text,
        "/v1/embeddings": embeddings,
        "/v1/audio/speech": speech,
    }

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        arrived = time.perf_counter()  # as uvicorn hands the request over, before its body is read
        if scope["type"] != "http":
            return
        handler = routes.get(scope["path"])
        if handler is None:
            await reply(send, 404, "text/plain", once(b"not found"))
            return
        body = await body_of(receive)
        if body.get("model") == "garbled":
            await reply(send, 200, "text/event-stream", once(b"data: {not json\n\n"))
            return
        if body.get("model") == "limited":
            error = {"message": "slow down", "type": "rate_limit_error", "code": "rate_limited"}
            await reply(send, 429, "application/json", once(json.dumps({"error": error}).encode()))
            return
        await handler(scope["path"], arrived, body, send)

    return app
