"""Pure helpers of the media path: WAV/MP3 wrapping, vectors on the bus, remembered cancels, merges,
progress events."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import AsyncIterator

import numpy as np

from contracts.results import Artifact, ArtifactChunk, DataChunk, FinalChunk, ProgressChunk, Usage
from services.common.audio import encode_stream, pcm_content_type, sample_rate_of, wav_bytes, wav_header
from services.common.cancels import RecentCancels
from services.common.merge import RequestMerge
from services.common.vectors import collect_vectors, encode_vectors, vectors_content_type
from services.workers.runner import ProgressGate


def test_wav_bytes_is_a_wav_that_python_reads() -> None:
    pcm = (np.sin(np.arange(8000) / 5) * 8000).astype("<i2").tobytes()
    with wave.open(io.BytesIO(wav_bytes(pcm, 16000))) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()) == (1, 2, 16000, 8000)
        assert w.readframes(8000) == pcm


def test_streamed_wav_header_is_open_ended() -> None:
    header = wav_header(22050)
    assert len(header) == 44 and header[4:8] == b"\xff\xff\xff\xff" and header[40:44] == b"\xff\xff\xff\xff"
    assert sample_rate_of(pcm_content_type(22050)) == 22050


async def _pieces(n: int) -> AsyncIterator[tuple[bytes, int]]:
    for _ in range(n):
        yield b"\x01\x00" * 2205, 22050


async def test_encode_stream_formats() -> None:
    wav = b"".join([b async for b in encode_stream(_pieces(3), "wav")])
    assert wav[:4] == b"RIFF" and len(wav) == 44 + 3 * 4410
    pcm = b"".join([b async for b in encode_stream(_pieces(3), "pcm")])
    assert len(pcm) == 3 * 4410
    mp3 = b"".join([b async for b in encode_stream(_pieces(30), "mp3")])
    assert mp3[:2] in (b"\xff\xf3", b"\xff\xfb", b"\xff\xf2") and 0 < len(mp3) < len(pcm) * 10


def test_vectors_round_trip_in_pieces_and_any_order() -> None:
    vectors = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    chunks = [
        DataChunk(
            request_id="r",
            seq=i,
            content_type=vectors_content_type(8),
            index=start,
            data_b64=base64.b64encode(encode_vectors(vectors[start : start + 2])).decode(),
        )
        for i, start in enumerate((4, 0, 2))
    ]
    assert np.array_equal(np.stack(collect_vectors(chunks)), vectors)


def test_recent_cancels_forget_the_oldest() -> None:
    cancels = RecentCancels(most=2)
    for rid in ("a", "b", "c"):
        cancels.add(rid)
    assert "a" not in cancels and "b" in cancels and "c" in cancels


def test_merge_keeps_artifacts_and_latest_progress() -> None:
    merge = RequestMerge()
    art = Artifact(name="r-1-0.png", content_type="image/png", size=3)
    merge.accept(ArtifactChunk(request_id="r", seq=1, artifact=art))
    merge.accept(ProgressChunk(request_id="r", seq=0, fraction=0.5, message="half"))
    merge.accept(FinalChunk(request_id="r", seq=2, finish_reason="stop", usage=Usage()))
    assert merge.done and merge.artifacts == [art] and merge.progress is not None and merge.progress.fraction == 0.5


def test_progress_goes_out_at_most_once_per_interval_but_the_first_and_last_always_do() -> None:
    gate = ProgressGate(every_s=0.2)
    steps = [(0.0, 10.0), (0.1, 10.05), (0.2, 10.1), (0.3, 10.21), (0.4, 10.3), (0.5, 10.42), (1.0, 10.45)]
    assert [fraction for fraction, now in steps if gate.due(fraction, now)] == [0.0, 0.3, 0.5, 1.0]
    assert all(ProgressGate(every_s=0.0).due(fraction, now) for fraction, now in steps)  # 0: every one
