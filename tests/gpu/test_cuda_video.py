"""The diffusers video engine on CUDA (half precision), with the tiny CogVideoX pipeline: an MP4 of the
asked frames and size, and a progress event per denoising step, as on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.base import now_ms
from contracts.requests import VideoRequest
from services.workers.engine import File, Finished, Progress

pytestmark = pytest.mark.gpu


async def test_tiny_video_pipeline_runs_on_cuda_in_half_precision(tmp_path: Path) -> None:
    import imageio_ffmpeg
    import torch

    from services.workers.engines.diffusers_video import DiffusersVideoEngine, VideoConfig
    from services.workers.tiny_diffusion import TINY_VIDEO_TEXT_TOKENS, ensure_tiny_video

    engine = DiffusersVideoEngine(
        VideoConfig("tiny-video", ensure_tiny_video(), device="auto", max_text_tokens=TINY_VIDEO_TEXT_TOKENS)
    )
    await engine.start()
    try:
        pipe = engine._pipe
        assert pipe.device.type == "cuda" and pipe.transformer.dtype == torch.float16
        request = VideoRequest(
            request_id="gv1",
            model="tiny-video",
            deadline_ms=now_ms() + 60_000,
            prompt="waves",
            frames=9,
            fps=8,
            width=32,
            height=48,
            steps=3,
            seed=2,
        )
        events = [e async for e in engine.generate(request)]
        assert [e.fraction for e in events if isinstance(e, Progress)][:4] == pytest.approx([0, 1 / 3, 2 / 3, 1])
        [video] = [e for e in events if isinstance(e, File)]
        assert video.content_type == "video/mp4" and video.data[4:8] == b"ftyp"
        path = tmp_path / "v.mp4"
        path.write_bytes(video.data)
        frames, _seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
        assert frames == 9
        assert next(imageio_ffmpeg.read_frames(str(path)))["size"] == (32, 48)
        assert isinstance(events[-1], Finished)
    finally:
        await engine.cleanup()
