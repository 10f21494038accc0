"""Worker settings (env prefix MODALMESH_WORKER_)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from contracts.requests import Priority
from services.common.settings import ServiceSettings
from services.workers.registry import names, unknown_engine


class WorkerSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MODALMESH_WORKER_", extra="ignore")

    worker_id: str = Field(
        default_factory=lambda: f"llm-{os.getpid()}",
        description="Stable id: a restarted worker with the same id resumes its assignments.",
    )
    engine: str = Field(
        default="llama_cpp",
        description="An engine services/workers/registry.py knows (each engine module declares its "
        "name), or host (catalog models on command).",
    )
    memory_mb: float = Field(default=0.0, ge=0, description="host: the memory it may fill with catalog models.")
    model_id: str | None = Field(default=None, description="Id clients use in `model`. Unset: the engine's default.")
    model_path: Path | None = Field(
        default=None, description="GGUF file or model folder. Unset: the engine's built-in or tiny default."
    )
    clip_model_path: Path | None = Field(
        default=None,
        description="llama.cpp vision projector (mmproj GGUF): the model then sees images. "
        "Unset with the tiny default model: the tiny projector.",
    )
    images_per_prompt: int = Field(
        default=0, ge=0, description="vllm: a model that sees images takes this many per prompt; 0: text only."
    )
    engine_args: dict[str, Any] = Field(
        default_factory=dict,
        description='vllm: more AsyncEngineArgs as JSON, e.g. {"gpu_memory_utilization": 0.5, "quantization": "awq"}.',
    )
    upstream_url: str | None = Field(default=None, description="openai_upstream: the server's base URL, up to /v1.")
    upstream_api: Literal["openai", "ollama"] = Field(
        default="openai",
        description="openai_upstream: the server's API: OpenAI's /v1 (vLLM, llama.cpp, LMDeploy, "
        "TGI, Ollama too) or Ollama's own /api/chat (the URL is then the server's root).",
    )
    upstream_model: str | None = Field(default=None, description="openai_upstream: the server's name for the model.")
    upstream_command: str | None = Field(
        default=None,
        description="openai_upstream: start this server itself ({port} is filled in), restart it "
        "when it exits, stop it with the worker. Replaces upstream_url.",
    )
    upstream_image: str | None = Field(
        default=None,
        description="openai_upstream: run the server in a Docker container of this image instead "
        "(e.g. vllm/vllm-openai), restarted when it exits, removed with the worker.",
    )
    upstream_image_args: str = Field(
        default="", description="openai_upstream: the container's arguments ({port} is the port inside it)."
    )
    upstream_container_port: int = Field(
        default=8000, description="openai_upstream: the port the server listens on inside its container."
    )
    upstream_gpus: str | None = Field(
        default=None,
        description='openai_upstream: the managed server\'s GPUs, "all" '
        'or "0,1" (a process gets CUDA_VISIBLE_DEVICES).',
    )
    upstream_volumes: dict[str, str] = Field(
        default_factory=dict,
        description="openai_upstream: host paths mounted read-only into the container, as JSON {host: inside}.",
    )
    logs_dir: Path = Field(
        default=Path("."),
        description="openai_upstream: where a managed server's output goes, as upstream-<worker>[-<model>].log.",
    )
    upstream_api_key: str | None = Field(default=None, description="openai_upstream: bearer key for the server.")
    model_fetch: str | None = Field(
        default=None,
        description="Copy this model from the fleet's object store "
        "(`python -m services.workers.models publish`) into models_dir and load it.",
    )
    model_copy_from: Path | None = Field(
        default=None,
        description="Copy this model (a file or folder with its manifest) from a shared path every "
        "node sees, such as an NFS mount, into models_dir, check the copy and load it.",
    )
    models_dir: Path = Field(
        default=Path.home() / ".cache" / "modalmesh" / "models", description="Where fetched and copied models are kept."
    )
    verify_weights: bool = Field(
        default=True, description="Check the model against its sha256 manifest, when it has one, before loading it."
    )
    slots: int | None = Field(default=None, ge=1, description="Requests run at once. Unset: the engine's default.")
    domain: str | None = Field(
        default=None,
        description="Resource domain (see MODALMESH_DOMAINS_FILE). Unset: its "
        "modality's own (llm, embedding, image, speech).",
    )
    priority_class: Priority | None = Field(
        default=None,
        description="Class of its models' requests that name none: realtime, interactive or batch. "
        "Unset: batch for image and video, interactive for the rest.",
    )
    device: str = Field(default="auto", description="Torch device for torch engines: auto, cpu, cuda, cuda:1 ...")
    max_batch: int = Field(default=64, ge=1, description="Most texts one embeddings forward pass takes.")
    n_ctx: int = Field(default=2048, ge=128)
    n_threads: int | None = Field(default=None, ge=1)
    n_gpu_layers: int = 0
    ack_wait_s: float = Field(default=30.0, gt=0, description="Redelivery if a worker goes silent this long.")
    drain_timeout_s: float = Field(default=20.0, ge=0, description="How long SIGTERM waits for in-flight work.")
    progress_every_s: float = Field(
        default=0.2,
        ge=0,
        description="At most one progress event per request this "
        "often (the first and the last always go): a diffusion step is not worth a "
        "message through the control plane each. 0: every one.",
    )

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, engine: str) -> str:
        if engine not in names():
            raise ValueError(unknown_engine(engine))
        return engine
