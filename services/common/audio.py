"""16-bit mono PCM as it travels on the bus, and the containers clients ask for (WAV, MP3, raw PCM)."""

from __future__ import annotations

import re
import struct
from collections.abc import AsyncIterator
from typing import Any

SAMPLE_WIDTH = 2  # bytes: signed 16-bit little-endian
_UNKNOWN_LENGTH = 0xFFFFFFFF
_RATE = re.compile(r"rate=(\d+)")


def pcm_content_type(sample_rate: int) -> str:
    """The MIME type of raw 16-bit mono PCM (RFC 2586's audio/L16, little-endian here)."""
    return f"audio/L16;rate={sample_rate};channels=1;endianness=little"


def sample_rate_of(content_type: str) -> int:
    found = _RATE.search(content_type)
    if not found:
        raise ValueError(f"no sample rate in {content_type!r}")
    return int(found.group(1))


def wav_header(sample_rate: int, data_bytes: int | None = None) -> bytes:
    """A 44-byte RIFF/WAVE header. Without `data_bytes` (a stream whose end is not known yet) the
    sizes are 0xFFFFFFFF, which players and decoders read as "until the end of the file"."""
    data_size = _UNKNOWN_LENGTH if data_bytes is None else data_bytes
    riff_size = _UNKNOWN_LENGTH if data_bytes is None else 36 + data_bytes
    byte_rate = sample_rate * SAMPLE_WIDTH
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, byte_rate, SAMPLE_WIDTH, 16)
        + b"data"
        + struct.pack("<I", data_size)
    )


def wav_bytes(pcm: bytes, sample_rate: int) -> bytes:
    return wav_header(sample_rate, len(pcm)) + pcm


class Mp3Encoder:
    """Incremental MP3 (LAME, from the `lameenc` wheel): PCM in, MP3 frames out as they fill."""

    def __init__(self, sample_rate: int, bitrate_kbps: int = 64) -> None:
        import lameenc

        self._lame: Any = lameenc.Encoder()
        self._lame.set_bit_rate(bitrate_kbps)
        self._lame.set_in_sample_rate(sample_rate)
        self._lame.set_channels(1)
        self._lame.set_quality(5)

    def encode(self, pcm: bytes) -> bytes:
        return bytes(self._lame.encode(pcm))

    def flush(self) -> bytes:
        return bytes(self._lame.flush())


async def encode_stream(pcm_pieces: AsyncIterator[tuple[bytes, int]], response_format: str) -> AsyncIterator[bytes]:
    """Wrap a stream of (pcm, sample_rate) pieces in `response_format` (wav, mp3 or pcm), piece by piece."""
    mp3: Mp3Encoder | None = None
    first = True
    async for pcm, rate in pcm_pieces:
        if response_format == "wav":
            if first:
                yield wav_header(rate)
            yield pcm
        elif response_format == "mp3":
            mp3 = mp3 or Mp3Encoder(rate)
            if frames := mp3.encode(pcm):
                yield frames
        else:
            yield pcm
        first = False
    if mp3 is not None:
        yield mp3.flush()
