"""Text to image with Hugging Face diffusers: `AutoPipelineForText2Image` picks the pipeline class a
model folder names (SD 1.5, SDXL, SD-Turbo, FLUX-class), so any of them loads from a path.

A progress event per denoising step (the pipeline's `callback_on_step_end`), which is also where an
aborted request stops; each image goes out as a PNG file.
"""

from __future__ import annotations

import io
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.errors import InvalidRequest
from contracts.requests import AnyRequest, ImageRequest, Modality
from contracts.results import Usage
from services.workers.diffusion import load_pipeline, seeded_generator, step_reporter
from services.workers.engine import BlockingEngine, Emit, File, Finished, check, expect
from services.workers.registry import EngineKind
from services.workers.settings import WorkerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiffusersConfig:
    model_id: str
    model_path: Path
    device: str = "auto"  # auto: CUDA when there is one, else CPU
    max_pixels: int = 1024 * 1024


class DiffusersImageEngine(BlockingEngine):
    kind = "diffusers"

    def __init__(self, config: DiffusersConfig) -> None:
        super().__init__(config.model_id, (Modality.image,), slots=1)
        self.config = config
        self._pipe: Any = None

    def load(self) -> None:
        from diffusers import AutoPipelineForText2Image

        self._pipe = load_pipeline(
            AutoPipelineForText2Image, self.config.model_path, self.config.device, self.gpu_memory_fraction
        )
        log.info("loaded %s (%s) from %s", self.model_id, type(self._pipe).__name__, self.config.model_path)

    def run(self, request: AnyRequest, cancelled: threading.Event, emit: Emit) -> None:
        request = expect(request, ImageRequest, self.kind)
        if request.width * request.height > self.config.max_pixels:
            raise InvalidRequest(
                f"{request.width}x{request.height} is larger than this model's limit of {self.config.max_pixels} pixels"
            )
        images = self._pipe(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt or None,
            num_images_per_prompt=request.n,
            width=request.width,
            height=request.height,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            generator=seeded_generator(request.seed, self._pipe.device),
            callback_on_step_end=step_reporter(request.steps, cancelled, emit),
        ).images
        check(cancelled)
        for index, image in enumerate(images):
            png = io.BytesIO()
            image.save(png, format="PNG")
            emit(
                File(
                    png.getvalue(), "image/png", "png", index=index, meta={"width": image.width, "height": image.height}
                )
            )
        emit(Finished("stop", Usage()))


def from_settings(settings: WorkerSettings) -> DiffusersImageEngine:
    """A diffusers image engine of the settings' pipeline; unset, the tiny Stable Diffusion."""
    from services.workers.tiny_diffusion import ensure_tiny_sd

    return DiffusersImageEngine(
        DiffusersConfig(
            model_id=settings.model_id or "tiny-sd",
            model_path=settings.model_path or ensure_tiny_sd(),
            device=settings.device,
        )
    )


ENGINE = EngineKind(DiffusersImageEngine.kind, from_settings)
