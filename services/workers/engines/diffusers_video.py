"""Text to video with diffusers: any text-to-video pipeline folder (CogVideoX, and others that take
`num_frames`) through `DiffusionPipeline`, frames encoded to H.264 MP4 by the ffmpeg that the
`imageio-ffmpeg` wheel carries. A progress event per denoising step, then one for encoding.
"""

from __future__ import annotations

import logging
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.errors import EngineError, InvalidRequest
from contracts.requests import AnyRequest, Modality, VideoRequest
from contracts.results import Usage
from services.workers.diffusion import load_pipeline, seeded_generator, step_reporter
from services.workers.engine import BlockingEngine, Emit, File, Finished, Progress, check, expect
from services.workers.registry import EngineKind
from services.workers.settings import WorkerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoConfig:
    model_id: str
    model_path: Path
    device: str = "auto"
    max_text_tokens: int | None = None  # the text encoder's length, when the pipeline asks for it


def encode_mp4(frames: np.ndarray, fps: int) -> bytes:
    """(frames, height, width, 3) floats in 0..1 to an H.264 MP4 playable in browsers (yuv420p)."""
    import imageio_ffmpeg

    pixels = (np.clip(frames, 0.0, 1.0) * 255).round().astype(np.uint8)
    height, width = pixels.shape[1:3]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "video.mp4"
        writer = imageio_ffmpeg.write_frames(
            str(path),
            (width, height),
            fps=fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=2,
            output_params=["-movflags", "+faststart"],
        )
        writer.send(None)  # start ffmpeg
        for frame in pixels:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        return path.read_bytes()


class DiffusersVideoEngine(BlockingEngine):
    kind = "diffusers_video"

    def __init__(self, config: VideoConfig) -> None:
        super().__init__(config.model_id, (Modality.video,), slots=1)
        self.config = config
        self._pipe: Any = None

    def load(self) -> None:
        from diffusers import DiffusionPipeline

        self._pipe = load_pipeline(
            DiffusionPipeline, self.config.model_path, self.config.device, self.gpu_memory_fraction
        )
        log.info("loaded %s (%s) from %s", self.model_id, type(self._pipe).__name__, self.config.model_path)

    def run(self, request: AnyRequest, cancelled: threading.Event, emit: Emit) -> None:
        request = expect(request, VideoRequest, self.kind)
        # Causal video VAEs (CogVideoX: 4) compress time: only 1 + k * ratio frames come out as asked.
        ratio = int(getattr(self._pipe, "vae_scale_factor_temporal", 1) or 1)
        if (request.frames - 1) % ratio:
            raise InvalidRequest(
                f"{self.model_id} makes 1 + k*{ratio} frames (e.g. {1 + ratio * 2}), not {request.frames}"
            )
        extra = {"max_sequence_length": self.config.max_text_tokens} if self.config.max_text_tokens else {}
        try:
            frames = self._pipe(
                prompt=request.prompt,
                negative_prompt=request.negative_prompt or None,
                num_frames=request.frames,
                height=request.height,
                width=request.width,
                num_inference_steps=request.steps,
                guidance_scale=request.guidance,
                generator=seeded_generator(request.seed, self._pipe.device),
                output_type="np",
                callback_on_step_end=step_reporter(request.steps, cancelled, emit),
                **extra,
            ).frames[0]
        except ValueError as exc:  # the pipeline's own checks of sizes and frame counts
            raise InvalidRequest(str(exc)) from exc
        check(cancelled)
        if len(frames) < request.frames:
            raise EngineError(f"the pipeline made {len(frames)} frames of the {request.frames} asked")
        frames = frames[: request.frames]  # some VAEs decode whole frame groups: keep what was asked
        emit(Progress(1.0, f"encoding {len(frames)} frames"))
        video = encode_mp4(np.asarray(frames), request.fps)
        emit(
            File(
                video,
                "video/mp4",
                "mp4",
                meta={
                    "frames": len(frames),
                    "fps": request.fps,
                    "width": request.width,
                    "height": request.height,
                    "seconds": round(len(frames) / request.fps, 3),
                },
            )
        )
        emit(Finished("stop", Usage()))


def from_settings(settings: WorkerSettings) -> DiffusersVideoEngine:
    """A diffusers video engine of the settings' pipeline; unset, the tiny text-to-video one."""
    from services.workers.tiny_diffusion import TINY_VIDEO_TEXT_TOKENS, ensure_tiny_video

    return DiffusersVideoEngine(
        VideoConfig(
            model_id=settings.model_id or "tiny-video",
            model_path=settings.model_path or ensure_tiny_video(),
            device=settings.device,
            max_text_tokens=None if settings.model_path else TINY_VIDEO_TEXT_TOKENS,
        )
    )


ENGINE = EngineKind(DiffusersVideoEngine.kind, from_settings)
