"""`POST /v1/audio/transcriptions` and `/v1/audio/translations`: OpenAI's speech to text, multipart,
answered as json, text, verbose_json, srt or vtt."""

from __future__ import annotations

import base64
import json
from contextlib import aclosing
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from contracts.errors import EngineError, InvalidRequest, PayloadTooLarge
from contracts.requests import Priority, Sampling, TranscriptionRequest
from contracts.results import DataChunk
from services.gateway.intake import Intake, Take, chunks_of

router = APIRouter(prefix="/v1", tags=["audio"])
# The file travels inline in the request message: base64 of this much stays under NATS's 1 MB payload.
MAX_AUDIO_BYTES = 700 * 1024
TRANSCRIPT_TYPE = "application/vnd.modalmesh.transcript+json"
Format = Literal["json", "text", "srt", "verbose_json", "vtt"]


@router.post("/audio/transcriptions", response_model=None)
async def transcriptions(
    take: Take,
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form(min_length=1)],
    language: Annotated[str | None, Form(pattern=r"^[a-z]{2,3}$")] = None,
    prompt: Annotated[str, Form(max_length=2000)] = "",
    response_format: Annotated[Format, Form()] = "json",
    temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
    timestamp_granularities: Annotated[list[str] | None, Form(alias="timestamp_granularities[]")] = None,
    priority: Annotated[Priority | None, Form()] = None,
) -> Response:
    if "word" in (timestamp_granularities or ()):
        raise InvalidRequest(f"word timestamps are not supported by model `{model}`", "timestamp_granularities")
    job = await _job(take, file, model, "transcribe", language, prompt, response_format, temperature)
    return await _answer(take, job, response_format, priority)


@router.post("/audio/translations", response_model=None)
async def translations(
    take: Take,
    file: Annotated[UploadFile, File()],
    model: Annotated[str, Form(min_length=1)],
    prompt: Annotated[str, Form(max_length=2000)] = "",
    response_format: Annotated[Format, Form()] = "json",
    temperature: Annotated[float, Form(ge=0.0, le=1.0)] = 0.0,
    priority: Annotated[Priority | None, Form()] = None,
) -> Response:
    """Speech in any language to English text."""
    job = await _job(take, file, model, "translate", None, prompt, response_format, temperature)
    return await _answer(take, job, response_format, priority)


async def _job(
    take: Intake,
    file: UploadFile,
    model: str,
    task: Literal["transcribe", "translate"],
    language: str | None,
    prompt: str,
    response_format: Format,
    temperature: float,
) -> TranscriptionRequest:
    data = await file.read(MAX_AUDIO_BYTES + 1)
    if len(data) > MAX_AUDIO_BYTES:
        raise PayloadTooLarge(f"the audio file is over {MAX_AUDIO_BYTES // 1024} KiB", "file")
    if not data:
        raise InvalidRequest("the audio file is empty", "file")
    return TranscriptionRequest(
        request_id=take.request_id("stt"),
        model=model,
        deadline_ms=take.deadline_ms,
        audio_b64=base64.b64encode(data).decode(),
        filename=file.filename or "",
        task=task,
        language=language,
        prompt=prompt,
        timestamps=response_format in ("verbose_json", "srt", "vtt"),
        sampling=Sampling(max_tokens=440, temperature=temperature),
    )


async def _answer(
    take: Take, job: TranscriptionRequest, response_format: Format, priority: Priority | None
) -> Response:
    async with aclosing(chunks_of(*await take.submit(job, priority))) as chunks:
        made = [c async for c in chunks if isinstance(c, DataChunk) and c.content_type == TRANSCRIPT_TYPE]
    if not made:
        raise EngineError("the engine returned no transcript")
    transcript: dict[str, Any] = json.loads(base64.b64decode(made[0].data_b64))
    if response_format == "json":
        return JSONResponse({"text": transcript["text"]})
    if response_format == "verbose_json":
        return JSONResponse(transcript)
    if response_format == "text":
        return PlainTextResponse(transcript["text"] + "\n")
    return PlainTextResponse(subtitles(transcript["segments"], vtt=response_format == "vtt"))


def _clock(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    return f"{hours:02d}:{minutes:02d}:{rest // 1000:02d}{separator}{rest % 1000:03d}"


def subtitles(segments: list[dict[str, Any]], *, vtt: bool) -> str:
    """Segments as SubRip (numbered cues, comma before the milliseconds) or WebVTT."""
    cues = []
    for n, s in enumerate(segments, 1):
        times = f"{_clock(s['start'], '.' if vtt else ',')} --> {_clock(s['end'], '.' if vtt else ',')}"
        cues.append(f"{times}\n{s['text'].strip()}\n" if vtt else f"{n}\n{times}\n{s['text'].strip()}\n")
    return ("WEBVTT\n\n" if vtt else "") + "\n".join(cues)
