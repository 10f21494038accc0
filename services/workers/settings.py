"""Worker settings (env prefix MODALMESH_WORKER_)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.common.settings import ServiceSettings


class WorkerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MODALMESH_WORKER_", extra="ignore")

    worker_id: str = Field(
        default_factory=lambda: f"llm-{os.getpid()}",
        description="Stable id: a restarted worker with the same id resumes its assignments.",
    )
    engine: str = Field(default="llama_cpp", description="Which engine this worker runs.")
    model_id: str = Field(default="tiny-llama", description="Id clients use in `model`.")
    model_path: Path | None = Field(
        default=None, description="GGUF file. Unset: the project's tiny random-weight model."
    )
    slots: int = Field(default=1, ge=1, description="Requests run at once (one engine instance each).")
    n_ctx: int = Field(default=2048, ge=128)
    n_threads: int | None = Field(default=None, ge=1)
    n_gpu_layers: int = 0
    ack_wait_s: float = Field(default=30.0, gt=0, description="Redelivery if a worker goes silent this long.")
    drain_timeout_s: float = Field(default=20.0, ge=0, description="How long SIGTERM waits for in-flight work.")
