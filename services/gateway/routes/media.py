"""OpenAI-shaped media routes: embeddings, image generation, text to speech, and the files workers made."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from contracts.errors import EngineError
from contracts.results import ArtifactChunk, DataChunk, FinalChunk
from services.common.audio import encode_stream, sample_rate_of
from services.common.vectors import collect_vectors, encode_vectors
from services.gateway.files import Files
from services.gateway.intake import Take, chunks_of
from services.gateway.schemas import EmbeddingsBody, ImageGenerationBody, SpeechBody

router = APIRouter(prefix="/v1", tags=["media"])
AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mpeg", "pcm": "audio/pcm"}


@router.post("/embeddings")
async def embeddings(body: EmbeddingsBody, take: Take) -> dict[str, Any]:
    bus_request = body.to_contract(take.request_id("embd"), take.deadline_ms)
    async with aclosing(chunks_of(*await take.submit(bus_request, body.priority))) as chunks:
        received = [chunk async for chunk in chunks]
    vectors = collect_vectors(received)
    if len(vectors) != len(bus_request.inputs):
        raise EngineError(f"the engine returned {len(vectors)} vectors for {len(bus_request.inputs)} inputs")
    data = []
    for index, vector in enumerate(vectors):
        encoded: Any = (
            base64.b64encode(encode_vectors(vector)).decode() if body.encoding_format == "base64" else vector.tolist()
        )
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    final = received[-1]
    tokens = final.usage.prompt_tokens if isinstance(final, FinalChunk) else 0
    return {
        "object": "list",
        "data": data,
        "model": body.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


@router.post("/images/generations")
async def images(body: ImageGenerationBody, request: Request, take: Take) -> dict[str, Any]:
    bus_request = body.to_contract(take.request_id("img"), take.deadline_ms)
    files: Files = request.app.state.files
    async with aclosing(chunks_of(*await take.submit(bus_request, body.priority))) as chunks:
        made = [chunk async for chunk in chunks if isinstance(chunk, ArtifactChunk)]
    data = []
    for chunk in sorted(made, key=lambda c: c.artifact.index):
        if body.response_format == "b64_json":
            content, _ = await files.read(chunk.artifact.name)
            data.append({"b64_json": base64.b64encode(content).decode(), "revised_prompt": None})
        else:
            data.append({"url": files.url(str(request.base_url), chunk.artifact.name), "revised_prompt": None})
    return {"created": int(time.time()), "data": data}


@router.post("/audio/speech", response_model=None)
async def speech(body: SpeechBody, take: Take) -> Response:
    """Audio streams out as the worker makes it: WAV with an open-ended header, MP3 frame by frame,
    or raw 16-bit PCM."""
    bus_request = body.to_contract(take.request_id("tts"), take.deadline_ms)
    chunks = chunks_of(*await take.submit(bus_request, body.priority))

    async def pcm() -> AsyncIterator[tuple[bytes, int]]:
        async with aclosing(chunks):  # a client that hangs up cancels the synthesis at once
            async for chunk in chunks:
                if isinstance(chunk, DataChunk):
                    yield base64.b64decode(chunk.data_b64), sample_rate_of(chunk.content_type)

    return StreamingResponse(encode_stream(pcm(), body.response_format), media_type=AUDIO_TYPES[body.response_format])


files_router = APIRouter(prefix="/v1", tags=["files"])


@files_router.get("/files/{file_id}")
async def download(file_id: str, request: Request, expires: int | None = None, sig: str | None = None) -> Response:
    """A file a worker made. Needs the API key, or the signature of a URL the gateway handed out."""
    files: Files = request.app.state.files
    files.authorize(request, file_id, expires, sig)
    content, content_type = await files.read(file_id)
    return Response(
        content,
        media_type=content_type,
        headers={"Content-Disposition": f'inline; filename="{file_id}"', "Cache-Control": "private"},
    )
