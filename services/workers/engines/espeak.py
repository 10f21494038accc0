"""Text to speech with eSpeak NG: the library and voice data that the `espeakng-loader` wheel ships,
called through ctypes. Formant synthesis, so nothing to download and it runs anywhere, on one CPU
core, far faster than real time. Audio is handed on in buffers as eSpeak makes them, so the client
hears the start before the end is synthesised.

eSpeak NG keeps one global synthesiser per process: the engine runs one request at a time.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from typing import Any

from contracts.errors import InvalidRequest
from contracts.requests import AnyRequest, Modality, SpeechRequest
from services.workers.engine import BlockingEngine, Emit, Progress, check, expect
from services.workers.registry import EngineKind
from services.workers.settings import WorkerSettings
from services.workers.speech import SpeechOut

log = logging.getLogger(__name__)

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_RATE = 1
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_DEFAULT_WPM = 175
_BUFFER_MS = 100
# OpenAI's voice names, so clients that send them get a voice rather than an error.
OPENAI_VOICES = {
    "alloy": "en-us",
    "echo": "en",
    "fable": "en-gb-scotland",
    "onyx": "en+m3",
    "nova": "en-us+f3",
    "shimmer": "en+f4",
    "ash": "en-us+m2",
    "coral": "en+f2",
    "sage": "en-gb-x-rp",
}
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakEngine(BlockingEngine):
    kind = "espeak"

    def __init__(self, model_id: str = "espeak") -> None:
        super().__init__(model_id, (Modality.speech,), slots=1)
        self._lib: Any = None
        self.sample_rate = 0
        self._out: SpeechOut | None = None
        self._cancelled: threading.Event | None = None
        self._callback = _CALLBACK(self._on_audio)  # kept referenced: eSpeak calls it from C

    def load(self) -> None:
        import espeakng_loader

        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_MS, espeakng_loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({rate})")
        lib.espeak_SetSynthCallback(self._callback)
        self._lib, self.sample_rate = lib, rate
        log.info("eSpeak NG ready at %d Hz", rate)

    def run(self, request: AnyRequest, cancelled: threading.Event, emit: Emit) -> None:
        request = expect(request, SpeechRequest, self.kind)
        voice = OPENAI_VOICES.get(request.voice, request.voice)
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise InvalidRequest(f"unknown voice `{request.voice}`")
        self._lib.espeak_SetParameter(_ESPEAK_RATE, round(_DEFAULT_WPM * request.speed), 0)
        emit(Progress(0.0, "synthesising"))
        out = SpeechOut(emit, self.sample_rate)
        self._out, self._cancelled = out, cancelled
        try:
            text = request.input.encode()
            self._lib.espeak_Synth(text, len(text) + 1, 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None)
        finally:
            self._out = self._cancelled = None
        check(cancelled)
        out.finish(len(request.input))

    def _on_audio(self, wav: Any, samples: int, _events: Any) -> int:
        """eSpeak's callback: one buffer of 16-bit samples. Returning 1 stops the synthesis."""
        if self._cancelled is None or self._cancelled.is_set():
            return 1
        if samples > 0 and self._out is not None:
            self._out.piece(ctypes.string_at(wav, samples * 2))
        return 0


def from_settings(settings: WorkerSettings) -> EspeakEngine:
    """An eSpeak NG engine: the voices come with the library, so only its model id is set."""
    return EspeakEngine(settings.model_id or "espeak")


ENGINE = EngineKind(EspeakEngine.kind, from_settings)
