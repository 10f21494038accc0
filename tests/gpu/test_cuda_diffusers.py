"""The diffusers image engine on CUDA (half precision), with the tiny pipeline: a PNG of the asked size
and a progress event per step, as on CPU."""

from __future__ import annotations

import pytest

from contracts.base import now_ms
from contracts.requests import ImageRequest
from services.workers.engine import File, Finished, Progress

pytestmark = pytest.mark.gpu


async def test_tiny_pipeline_runs_on_cuda() -> None:
    from services.workers.engines.diffusers_image import DiffusersConfig, DiffusersImageEngine
    from services.workers.tiny_diffusion import ensure_tiny_sd

    engine = DiffusersImageEngine(DiffusersConfig("tiny-sd", ensure_tiny_sd(), device="auto"))
    await engine.start()
    try:
        request = ImageRequest(
            request_id="g1",
            model="tiny-sd",
            deadline_ms=now_ms() + 60_000,
            prompt="a cat",
            width=64,
            height=64,
            steps=4,
            seed=3,
        )
        events = [e async for e in engine.generate(request)]
        assert [e.fraction for e in events if isinstance(e, Progress)] == [0.0, 0.25, 0.5, 0.75, 1.0]
        [image] = [e for e in events if isinstance(e, File)]
        assert image.data.startswith(b"\x89PNG") and (image.meta["width"], image.meta["height"]) == (64, 64)
        assert isinstance(events[-1], Finished)
    finally:
        await engine.cleanup()
