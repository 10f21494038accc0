"""What the diffusers engines (images, video) do alike: pick the device and dtype, load a pipeline
from a folder without touching a hub, seed generators, and report each denoising step."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.common.gpu_share import limit_gpu_memory
from services.workers.engine import Emit, Progress, check


def pick_device(wanted: str) -> str:
    import torch

    if wanted != "auto":
        return wanted
    return "cuda" if torch.cuda.is_available() else "cpu"


def load_pipeline(pipeline_class: Any, path: Path, device: str, gpu_memory_fraction: float | None) -> Any:
    """`pipeline_class.from_pretrained(path)` on `device`: half precision on CUDA, full on CPU, held
    to `gpu_memory_fraction` of the GPU, and never a download (a missing file is an error, not a fetch)."""
    import torch

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not Path(path).is_dir():
        raise FileNotFoundError(f"no pipeline folder at {path}")
    target = pick_device(device)
    limit_gpu_memory(target, gpu_memory_fraction)
    dtype = torch.float16 if target.startswith("cuda") else torch.float32
    pipe = pipeline_class.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True)
    pipe = pipe.to(target)
    pipe.set_progress_bar_config(disable=True)  # progress goes out as events, not to the log
    return pipe


def seeded_generator(seed: int | None, device: Any) -> Any:
    import torch

    if seed is None:
        return None
    return torch.Generator(device="cpu" if str(device).startswith("mps") else device).manual_seed(seed)


def step_reporter(steps: int, cancelled: threading.Event, emit: Emit) -> Callable[..., dict[str, Any]]:
    """A `callback_on_step_end`: a progress event after each step, and the place an abort stops."""
    emit(Progress(0.0, f"step 0/{steps}"))

    def on_step(_pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        check(cancelled)
        emit(Progress((step + 1) / steps, f"step {step + 1}/{steps}"))
        return tensors

    return on_step
