"""The media engines called directly (no bus): what they emit, batching, cancelling."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest

from contracts.base import now_ms
from contracts.errors import InvalidRequest
from contracts.requests import EmbeddingRequest, ImageRequest, SpeechRequest, VideoRequest
from services.common.audio import sample_rate_of
from services.workers.engine import Data, Engine, EngineEvent, File, Finished, Progress


def _deadline() -> int:
    return now_ms() + 60_000


async def _all(events: AsyncIterator[EngineEvent]) -> list[EngineEvent]:
    return [event async for event in events]


@pytest.fixture(scope="module")
async def embeddings() -> AsyncIterator[Any]:
    from services.workers.engines.embeddings import EmbeddingsConfig, EmbeddingsEngine, packaged_minilm

    engine = EmbeddingsEngine(EmbeddingsConfig("minilm", packaged_minilm(), batch_window_s=0.01))
    await engine.start()
    yield engine
    await engine.cleanup()


async def test_concurrent_embedding_requests_share_forward_passes(embeddings: Any) -> None:
    requests = [
        EmbeddingRequest(
            request_id=f"e{i}", model="minilm", deadline_ms=_deadline(), inputs=(f"sentence number {i}", "shared text")
        )
        for i in range(12)
    ]
    before = embeddings.batches
    results = await asyncio.gather(*(_all(embeddings.generate(r)) for r in requests))
    assert embeddings.batches - before < len(requests)  # batched, not one pass each
    for events in results:
        data = [e for e in events if isinstance(e, Data)]
        final = events[-1]
        assert isinstance(final, Finished) and final.usage.prompt_tokens > 2
        vectors = np.frombuffer(b"".join(d.data for d in data), dtype="<f4").reshape(-1, 384)
        assert vectors.shape == (2, 384)
    shared = [np.frombuffer(b"".join(d.data for d in r if isinstance(d, Data)), dtype="<f4")[384:] for r in results]
    assert all(np.allclose(shared[0], s, atol=1e-5) for s in shared)


async def test_large_embedding_batches_are_split_under_the_payload_limit(embeddings: Any) -> None:
    request = EmbeddingRequest(
        request_id="big", model="minilm", deadline_ms=_deadline(), inputs=tuple(f"text {i}" for i in range(300))
    )
    data = [e for e in await _all(embeddings.generate(request)) if isinstance(e, Data)]
    assert len(data) > 1 and all(len(d.data) <= 192 * 1024 for d in data)
    assert [d.index for d in data] == sorted(d.index for d in data) and data[0].index == 0
    assert sum(len(d.data) for d in data) == 300 * 384 * 4


@pytest.fixture(scope="module")
async def images() -> AsyncIterator[Engine]:
    from services.workers.engines.diffusers_image import DiffusersConfig, DiffusersImageEngine
    from services.workers.tiny_diffusion import ensure_tiny_sd

    engine = DiffusersImageEngine(DiffusersConfig("tiny-sd", ensure_tiny_sd(), device="cpu"))
    await engine.start()
    yield engine
    await engine.cleanup()


async def test_image_engine_reports_every_step_then_files(images: Engine) -> None:
    request = ImageRequest(
        request_id="i1",
        model="tiny-sd",
        deadline_ms=_deadline(),
        prompt="a cat",
        n=2,
        width=64,
        height=32,
        steps=5,
        seed=1,
    )
    events = await _all(images.generate(request))
    progress = [e.fraction for e in events if isinstance(e, Progress)]
    assert progress == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    files = [e for e in events if isinstance(e, File)]
    assert [(f.index, f.meta["width"], f.meta["height"]) for f in files] == [(0, 64, 32), (1, 64, 32)]
    assert all(f.data.startswith(b"\x89PNG") for f in files)
    assert isinstance(events[-1], Finished) and events[-1].finish_reason == "stop"


async def test_aborting_an_image_stops_it_between_steps(images: Engine) -> None:
    request = ImageRequest(
        request_id="i2", model="tiny-sd", deadline_ms=_deadline(), prompt="a cat", width=128, height=128, steps=100
    )
    events: list[EngineEvent] = []
    async for event in images.generate(request):
        events.append(event)
        if isinstance(event, Progress) and event.fraction >= 0.03:
            await images.abort("i2")
    steps = [e for e in events if isinstance(e, Progress)]
    assert isinstance(events[-1], Finished) and events[-1].finish_reason == "cancelled"
    assert len(steps) < 10 and not any(isinstance(e, File) for e in events)


async def test_speech_streams_audio_before_it_ends() -> None:
    from services.workers.engines.espeak import EspeakEngine

    engine = EspeakEngine()
    await engine.start()
    try:
        text = "This is a longer sentence, so eSpeak hands it over in several buffers. " * 3
        events = await _all(
            engine.generate(SpeechRequest(request_id="s1", model="espeak", deadline_ms=_deadline(), input=text))
        )
        pieces = [e for e in events if isinstance(e, Data)]
        [wav] = [e for e in events if isinstance(e, File)]
        assert len(pieces) > 5 and events.index(pieces[0]) < events.index(wav)
        assert wav.data[44:] == b"".join(p.data for p in pieces)  # the file is exactly what was streamed
        rate = sample_rate_of(pieces[0].content_type)
        assert wav.meta["seconds"] == pytest.approx(len(wav.data[44:]) / 2 / rate, abs=1e-3)
    finally:
        await engine.cleanup()


async def test_video_engine_makes_an_mp4_with_the_asked_frames(tmp_path: Any) -> None:
    import imageio_ffmpeg

    from services.workers.engines.diffusers_video import DiffusersVideoEngine, VideoConfig
    from services.workers.tiny_diffusion import TINY_VIDEO_TEXT_TOKENS, ensure_tiny_video

    engine = DiffusersVideoEngine(
        VideoConfig("tiny-video", ensure_tiny_video(), device="cpu", max_text_tokens=TINY_VIDEO_TEXT_TOKENS)
    )
    await engine.start()
    try:
        request = VideoRequest(
            request_id="v1",
            model="tiny-video",
            deadline_ms=_deadline(),
            prompt="waves",
            frames=9,
            fps=8,
            width=32,
            height=48,
            steps=3,
            seed=2,
        )
        events = await _all(engine.generate(request))
        assert [e.fraction for e in events if isinstance(e, Progress)][:4] == pytest.approx([0, 1 / 3, 2 / 3, 1])
        [video] = [e for e in events if isinstance(e, File)]
        assert video.content_type == "video/mp4" and video.data[4:8] == b"ftyp"
        path = tmp_path / "v.mp4"
        path.write_bytes(video.data)
        frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
        assert frames == 9 and seconds == pytest.approx(9 / 8, abs=0.15)
        reader = imageio_ffmpeg.read_frames(str(path))
        assert next(reader)["size"] == (32, 48)
        bad = VideoRequest(
            request_id="v2",
            model="tiny-video",
            deadline_ms=_deadline(),
            prompt="x",
            frames=8,
            width=32,
            height=32,
            steps=1,
        )
        with pytest.raises(InvalidRequest, match="frames"):
            await _all(engine.generate(bad))
    finally:
        await engine.cleanup()


async def test_piper_voice_streams_a_sentence_at_a_time() -> None:
    from services.workers.engines.piper import PiperConfig, PiperEngine
    from services.workers.tiny_voice import SAMPLE_RATE, ensure_tiny_voice

    engine = PiperEngine(PiperConfig("tiny-piper", ensure_tiny_voice()))
    await engine.start()
    try:

        def speak(text: str, speed: float = 1.0) -> SpeechRequest:
            return SpeechRequest(
                request_id=f"p-{len(text)}-{speed}",
                model="tiny-piper",
                deadline_ms=_deadline(),
                input=text,
                speed=speed,
            )

        events = await _all(engine.generate(speak("First sentence here. And a second one. A third.")))
        pieces = [e for e in events if isinstance(e, Data)]
        [wav] = [e for e in events if isinstance(e, File)]
        assert len(pieces) == 3 and sample_rate_of(pieces[0].content_type) == SAMPLE_RATE
        assert wav.data[44:] == b"".join(p.data for p in pieces)
        short = next(e for e in await _all(engine.generate(speak("Hi."))) if isinstance(e, File))
        fast = next(
            e
            for e in await _all(engine.generate(speak("First sentence here. And a second one. A third.", speed=2.0)))
            if isinstance(e, File)
        )
        assert short.meta["seconds"] < wav.meta["seconds"] / 3
        assert fast.meta["seconds"] == pytest.approx(wav.meta["seconds"] / 2, rel=0.1)
    finally:
        await engine.cleanup()
