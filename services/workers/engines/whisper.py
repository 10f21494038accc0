"""Speech to text with Whisper through Hugging Face transformers (`WhisperForConditionalGeneration`):
transcribe, or translate into English, any file ffmpeg reads.

Why transformers: it runs every Whisper checkpoint (tiny to large-v3, distil-whisper) from a local
folder on CPU or CUDA, installs from PyPI with the torch the other engines use, and lets the tests
build a tiny random-weight Whisper from a config (`services/workers/tiny_whisper.py`), so nothing is
downloaded. The audio is decoded by the ffmpeg binary the `imageio-ffmpeg` wheel carries, to 16 kHz
mono, and transcribed in 30-second windows (Whisper's own). Segments come from Whisper's timestamp
tokens where the model writes them, else one segment per window; `no_speech_prob` is not reported.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.errors import InvalidRequest
from contracts.requests import AnyRequest, Modality, TranscriptionRequest
from contracts.results import Timings, Usage
from services.workers.engine import BlockingEngine, Data, Emit, Finished, check, expect
from services.workers.registry import EngineKind
from services.workers.settings import WorkerSettings

log = logging.getLogger(__name__)
RATE = 16_000
WINDOW_S = 30
TRANSCRIPT_TYPE = "application/vnd.modalmesh.transcript+json"


@dataclass(frozen=True)
class WhisperConfig:
    model_id: str
    model_path: Path
    device: str = "cpu"
    threads: int | None = None
    max_new_tokens: int = 440  # a window's text: Whisper's decoder holds 448 positions


def decode_audio(data: bytes) -> np.ndarray:
    """Any audio file as 16 kHz mono float32 samples, by ffmpeg; what it cannot read is the client's mistake."""
    import imageio_ffmpeg

    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", "pipe:0"]
    command += ["-f", "f32le", "-ac", "1", "-ar", str(RATE), "pipe:1"]
    done = subprocess.run(command, input=data, capture_output=True, timeout=120, check=False)
    if done.returncode != 0 or not done.stdout:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no audio in it"]
        raise InvalidRequest(f"the file is not audio ffmpeg can read: {reason[0][:200]}", param="file")
    return np.frombuffer(done.stdout, dtype="<f4")


class WhisperEngine(BlockingEngine):
    kind = "whisper"

    def __init__(self, config: WhisperConfig) -> None:
        super().__init__(config.model_id, (Modality.transcription,), slots=1)
        self.config = config
        self._model: Any = None
        self._processor: Any = None

    def load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        path = str(self.config.model_path)
        self._processor = WhisperProcessor.from_pretrained(path, local_files_only=True)
        self._model = WhisperForConditionalGeneration.from_pretrained(path, local_files_only=True)
        self._model.to(self.config.device).eval()
        log.info("loaded %s from %s", self.model_id, path)

    def run(self, request: AnyRequest, cancelled: threading.Event, emit: Emit) -> None:
        job = expect(request, TranscriptionRequest, self.kind)
        started = time.perf_counter()
        audio = decode_audio(base64.b64decode(job.audio_b64))
        language = job.language
        segments: list[dict[str, Any]] = []
        tokens = 0
        for at in range(0, max(len(audio), 1), WINDOW_S * RATE):
            check(cancelled)
            window = audio[at : at + WINDOW_S * RATE]
            features = self._features(window)
            language = language or self._language(features)
            made = self._generate(features, job, language)
            tokens += len(made.ids)
            segments += self._segments(made, at / RATE, len(window) / RATE, len(segments), job)
        transcript = {
            "task": job.task,
            "language": language,
            "duration": round(len(audio) / RATE, 3),
            "text": "".join(s["text"] for s in segments).strip(),
            "segments": segments,
        }
        emit(Data(json.dumps(transcript).encode(), TRANSCRIPT_TYPE))
        emit(Finished("stop", Usage(completion_tokens=tokens), Timings.since(started, None, time.perf_counter())))

    def _features(self, window: np.ndarray) -> Any:
        inputs = self._processor(window, sampling_rate=RATE, return_tensors="pt")
        return inputs.input_features.to(self.config.device, dtype=self._model.dtype)

    def _language(self, features: Any) -> str:
        """The language Whisper hears, as its ISO code."""
        token = int(self._model.detect_language(features)[0])
        return str(self._processor.tokenizer.convert_ids_to_tokens(token)).strip("<|>")

    def _generate(self, features: Any, job: TranscriptionRequest, language: str) -> _Window:
        import torch

        s = job.sampling
        options: dict[str, Any] = {"do_sample": True, "temperature": s.temperature} if s.temperature > 0 else {}
        if job.prompt:
            options["prompt_ids"] = torch.tensor(self._processor.get_prompt_ids(job.prompt))
        with torch.inference_mode():
            out = self._model.generate(
                features,
                task=job.task,
                language=language,
                return_timestamps=job.timestamps,
                max_new_tokens=min(s.max_tokens, self.config.max_new_tokens, self._room()),
                return_dict_in_generate=True,
                output_scores=True,
                **options,
            )
            # With timestamps Whisper answers with its segments, each holding the window's generation.
            segments = out["segments"][0] if isinstance(out, dict) and out.get("segments") else []
            run = segments[0]["result"] if segments else out
            sequences, steps = run["sequences"], run["scores"]
            if sequences.dim() == 1:  # a segment's result is one sequence without its batch axis
                sequences, steps = sequences[None], tuple(step[None] for step in steps)
            scores = self._model.compute_transition_scores(sequences, steps, normalize_logits=True)[0]
        finite = scores[torch.isfinite(scores)]
        tokenizer = self._processor.tokenizer
        spans = [
            (tokenizer.decode(seg["tokens"], skip_special_tokens=True), float(seg["start"]), float(seg["end"]))
            for seg in segments
        ]
        return _Window([int(t) for t in out["sequences"][0]], float(finite.mean()) if len(finite) else 0.0, spans)

    def _room(self) -> int:
        """New tokens a window may take: the checkpoint's own `max_length` less its start tokens."""
        return max(1, int(self._model.generation_config.max_length or 448) - 4)

    def _segments(
        self, window: _Window, start: float, length: float, first_id: int, job: TranscriptionRequest
    ) -> list[dict[str, Any]]:
        """The window's segments: Whisper's own where it timed them, else one for the window. The
        window's mean log probability stands for each of its segments'."""
        text = self._processor.tokenizer.decode(window.ids, skip_special_tokens=True)
        # In time order and inside the window (a poorly trained model's timestamps may be neither).
        inside = [(t, min(max(0.0, b), length), min(max(b, e), length)) for t, b, e in window.spans]
        spans = sorted(inside, key=lambda span: span[1]) or [(text, 0.0, length)]
        return [
            {
                "id": first_id + n,
                "seek": int(start * 100),
                "start": round(start + begin, 2),
                "end": round(start + end, 2),
                "text": piece,
                "tokens": window.ids if not window.spans else [],
                "temperature": job.sampling.temperature,
                "avg_logprob": round(window.logprob, 4),
                "compression_ratio": _compression_ratio(piece),
            }
            for n, (piece, begin, end) in enumerate(spans)
        ]


@dataclass(frozen=True)
class _Window:
    """What Whisper made of one 30-second window."""

    ids: list[int]
    logprob: float
    spans: list[tuple[str, float, float]]  # Whisper's timed segments: text, start, end (s)


def _compression_ratio(text: str) -> float:
    """Whisper's repetition check: the text's bytes over its zlib-compressed bytes."""
    raw = text.encode()
    return round(len(raw) / len(zlib.compress(raw)), 3) if raw else 0.0


def from_settings(settings: WorkerSettings) -> WhisperEngine:
    """A Whisper checkpoint folder; unset, the tiny random-weight Whisper."""
    from services.workers.tiny_whisper import ensure_tiny_whisper

    return WhisperEngine(
        WhisperConfig(
            model_id=settings.model_id or "tiny-whisper",
            model_path=settings.model_path or ensure_tiny_whisper(),
            device="cpu" if settings.device == "auto" else settings.device,
            threads=settings.n_threads,
        )
    )


ENGINE = EngineKind(WhisperEngine.kind, from_settings)
