"""The Whisper engine on the tiny random-weight Whisper the project writes: a WAV and an MP3 decoded by
ffmpeg, transcribed in 30-second windows with segments that cover the audio, translated, and what is
not audio refused."""

from __future__ import annotations

import base64
import io
import json
import wave
from collections.abc import AsyncIterator

import numpy as np
import pytest

from contracts.base import now_ms
from contracts.errors import InvalidRequest
from contracts.requests import TranscriptionRequest
from services.workers.engine import Data, Finished
from services.workers.engines.whisper import TRANSCRIPT_TYPE, WhisperConfig, WhisperEngine, decode_audio
from services.workers.tiny_whisper import ensure_tiny_whisper


def _wav(seconds: float, rate: int = 22050) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (np.sin(2 * np.pi * 220 * t) * 8000).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out.getvalue()


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[WhisperEngine]:
    running = WhisperEngine(WhisperConfig("tiny-whisper", ensure_tiny_whisper(), threads=1))
    await running.start()
    yield running
    await running.cleanup()


async def transcribe(engine: WhisperEngine, audio: bytes, **fields: object) -> dict[str, object]:
    request = TranscriptionRequest(
        request_id="t1",
        model="tiny-whisper",
        deadline_ms=now_ms() + 60_000,
        audio_b64=base64.b64encode(audio).decode(),
        **fields,  # type: ignore[arg-type]
    )
    events = [e async for e in engine.generate(request)]
    assert isinstance(events[-1], Finished) and events[-1].usage.completion_tokens > 0
    data = [e for e in events if isinstance(e, Data)]
    assert [d.content_type for d in data] == [TRANSCRIPT_TYPE]
    return json.loads(data[0].data)  # type: ignore[no-any-return]


def test_ffmpeg_decodes_to_16k_mono() -> None:
    samples = decode_audio(_wav(1.5))
    assert samples.dtype == np.float32 and abs(len(samples) - 24_000) < 200
    assert 0.1 < float(np.abs(samples).max()) <= 1.0


async def test_a_long_file_is_transcribed_window_by_window(engine: WhisperEngine) -> None:
    transcript = await transcribe(engine, _wav(31.0), timestamps=True)
    segments = transcript["segments"]
    assert isinstance(segments, list) and transcript["duration"] == pytest.approx(31.0, abs=0.05)
    starts = [seg["start"] for seg in segments]
    assert starts == sorted(starts) and 0.0 <= starts[0] and segments[-1]["end"] <= 31.0 and starts[-1] >= 30.0
    assert all(seg["start"] <= seg["end"] for seg in segments)
    assert transcript["language"] and transcript["task"] == "transcribe"
    assert all(s["avg_logprob"] < 0 and s["compression_ratio"] > 0 for s in segments if s["text"])


async def test_translation_and_a_named_language(engine: WhisperEngine) -> None:
    transcript = await transcribe(engine, _wav(1.0), task="translate", language="fr")
    assert transcript["task"] == "translate" and transcript["language"] == "fr"


async def test_what_is_not_audio_is_refused(engine: WhisperEngine) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await transcribe(engine, b"this is not audio")
    assert refused.value.param == "file"
