"""Neural text to speech with Piper: any Piper voice (a VITS model as `.onnx` with its `.onnx.json`)
run by onnxruntime, phonemized by Piper's own eSpeak NG. One audio piece per sentence, handed on as
soon as it is made; `speed` becomes Piper's length scale.

A voice is a file the operator configures (`MODALMESH_WORKER_MODEL_PATH`); nothing is downloaded.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.errors import InvalidRequest
from contracts.requests import AnyRequest, Modality, SpeechRequest
from services.workers.engine import BlockingEngine, Emit, Progress, check, expect
from services.workers.registry import EngineKind
from services.workers.settings import WorkerSettings
from services.workers.speech import SpeechOut

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PiperConfig:
    model_id: str
    model_path: Path
    use_cuda: bool = False


class PiperEngine(BlockingEngine):
    kind = "piper"

    def __init__(self, config: PiperConfig) -> None:
        super().__init__(config.model_id, (Modality.speech,), slots=1)
        self.config = config
        self._voice: Any = None

    def load(self) -> None:
        from piper import PiperVoice

        if not self.config.model_path.is_file():
            raise FileNotFoundError(f"no Piper voice at {self.config.model_path}")
        self._voice = PiperVoice.load(self.config.model_path, use_cuda=self.config.use_cuda)
        log.info("loaded Piper voice %s (%d Hz)", self.config.model_path.name, self._voice.config.sample_rate)

    def run(self, request: AnyRequest, cancelled: threading.Event, emit: Emit) -> None:
        from piper import SynthesisConfig

        request = expect(request, SpeechRequest, self.kind)
        voice = self._voice
        speakers: dict[str, int] = voice.config.speaker_id_map or {}
        if speakers and request.voice not in speakers:
            raise InvalidRequest(f"unknown voice `{request.voice}`; this model has {', '.join(sorted(speakers))}")
        synthesis = SynthesisConfig(
            speaker_id=speakers.get(request.voice), length_scale=voice.config.length_scale / request.speed
        )
        emit(Progress(0.0, "synthesising"))
        out = SpeechOut(emit, voice.config.sample_rate)
        for sentence in voice.synthesize(request.input, syn_config=synthesis):
            check(cancelled)
            out.piece(sentence.audio_int16_bytes)
        out.finish(len(request.input))


def from_settings(settings: WorkerSettings) -> PiperEngine:
    """A Piper engine of the settings' voice, which it must name: there is no tiny voice to default to."""
    if settings.model_path is None:
        raise SystemExit("the piper engine needs a voice: MODALMESH_WORKER_MODEL_PATH=/voices/<voice>.onnx")
    return PiperEngine(
        PiperConfig(
            model_id=settings.model_id or settings.model_path.stem,
            model_path=settings.model_path,
            use_cuda=settings.device.startswith("cuda"),
        )
    )


ENGINE = EngineKind(PiperEngine.kind, from_settings)
