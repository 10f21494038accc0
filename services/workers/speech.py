"""What every text-to-speech engine does alike: hand on each piece of PCM as it is made, then the
whole answer as one WAV file, then the end."""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.results import Usage
from services.common.audio import pcm_content_type, wav_bytes
from services.workers.engine import Data, Emit, File, Finished


@dataclass
class SpeechOut:
    emit: Emit
    sample_rate: int
    pieces: list[bytes] = field(default_factory=list)

    def piece(self, pcm: bytes) -> None:
        """16-bit mono PCM at `sample_rate`, sent on at once."""
        if pcm:
            self.pieces.append(pcm)
            self.emit(Data(pcm, pcm_content_type(self.sample_rate)))

    def finish(self, characters: int) -> None:
        pcm = b"".join(self.pieces)
        seconds = len(pcm) / 2 / self.sample_rate
        self.emit(
            File(
                wav_bytes(pcm, self.sample_rate),
                "audio/wav",
                "wav",
                meta={"seconds": round(seconds, 3), "sample_rate": self.sample_rate},
            )
        )
        self.emit(Finished("stop", Usage(prompt_tokens=characters)))
