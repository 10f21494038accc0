"""`python -m services.workers`: run one worker process with the engine its settings name."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts.errors import EngineError
from contracts.workers import ModelEntry
from services.common.bus import connect
from services.common.domains import Domains, DomainSpec, confine, default_domain, memory_limit_note, share_budget_mb
from services.common.logs import setup_logging
from services.common.metrics import serve_metrics
from services.common.runtime import run
from services.common.shutdown import stop_event_on_signals
from services.common.tracing import setup_tracing
from services.workers.engine import Engine
from services.workers.host import ModelHost
from services.workers.runner import Worker
from services.workers.settings import WorkerSettings
from services.workers.weights import WeightsError, copy_shared, fetch, verify

log = logging.getLogger("services.workers")


def build_engine(settings: WorkerSettings) -> Engine:
    """The engine `settings.engine` names, with its default model where none is configured."""
    if settings.engine == "host":
        return ModelHost(settings.memory_mb, lambda entry: load_entry(settings, entry), settings.drain_timeout_s)
    if settings.engine == "llama_cpp":
        from services.workers.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine
        from services.workers.tiny_model import ensure_tiny_gguf, ensure_tiny_mmproj

        tiny = settings.model_path is None
        return LlamaCppEngine(
            LlamaCppConfig(
                model_id=settings.model_id or "tiny-llama",
                model_path=settings.model_path or ensure_tiny_gguf(),
                clip_model_path=settings.clip_model_path or (ensure_tiny_mmproj() if tiny else None),
                slots=settings.slots or 1,
                n_ctx=settings.n_ctx,
                n_threads=settings.n_threads,
                n_gpu_layers=settings.n_gpu_layers,
            )
        )
    if settings.engine == "vllm":
        from services.workers.engines.vllm import VllmConfig, VllmEngine
        from services.workers.tiny_hf import ensure_tiny_hf

        return VllmEngine(
            VllmConfig(
                model_id=settings.model_id or "tiny-hf-llama",
                model=str(settings.model_path or ensure_tiny_hf()),
                max_num_seqs=settings.slots or 64,
                max_model_len=settings.n_ctx,
                images_per_prompt=settings.images_per_prompt,
                engine_args=settings.engine_args,
            )
        )
    if settings.engine == "sentence_transformers":
        from services.workers.engines.embeddings import EmbeddingsConfig, EmbeddingsEngine, packaged_minilm

        return EmbeddingsEngine(
            EmbeddingsConfig(
                model_id=settings.model_id or "all-minilm-l6-v2",
                model_path=settings.model_path or packaged_minilm(),
                device="cpu" if settings.device == "auto" else settings.device,
                max_batch=settings.max_batch,
                slots=settings.slots or 32,
                threads=settings.n_threads,
            )
        )
    if settings.engine == "diffusers":
        from services.workers.engines.diffusers_image import DiffusersConfig, DiffusersImageEngine
        from services.workers.tiny_diffusion import ensure_tiny_sd

        return DiffusersImageEngine(
            DiffusersConfig(
                model_id=settings.model_id or "tiny-sd",
                model_path=settings.model_path or ensure_tiny_sd(),
                device=settings.device,
            )
        )
    if settings.engine == "diffusers_video":
        from services.workers.engines.diffusers_video import DiffusersVideoEngine, VideoConfig
        from services.workers.tiny_diffusion import TINY_VIDEO_TEXT_TOKENS, ensure_tiny_video

        return DiffusersVideoEngine(
            VideoConfig(
                model_id=settings.model_id or "tiny-video",
                model_path=settings.model_path or ensure_tiny_video(),
                device=settings.device,
                max_text_tokens=None if settings.model_path else TINY_VIDEO_TEXT_TOKENS,
            )
        )
    if settings.engine == "piper":
        from services.workers.engines.piper import PiperConfig, PiperEngine

        if settings.model_path is None:
            raise SystemExit("the piper engine needs a voice: MODALMESH_WORKER_MODEL_PATH=/voices/<voice>.onnx")
        return PiperEngine(
            PiperConfig(
                model_id=settings.model_id or settings.model_path.stem,
                model_path=settings.model_path,
                use_cuda=settings.device.startswith("cuda"),
            )
        )
    if settings.engine == "openai_upstream":
        from services.workers.engines.upstream import UpstreamConfig, UpstreamEngine

        if not (settings.upstream_url or settings.upstream_command or settings.upstream_image):
            raise SystemExit(
                "the openai_upstream engine needs MODALMESH_WORKER_UPSTREAM_URL (http://host:8080/v1), "
                "MODALMESH_WORKER_UPSTREAM_COMMAND (a server to start, with {port}) or "
                "MODALMESH_WORKER_UPSTREAM_IMAGE (a container to run)"
            )
        managed = settings.upstream_command or settings.upstream_image
        log_name = "-".join(["upstream", settings.worker_id, *([settings.model_id] if settings.model_id else [])])
        return UpstreamEngine(
            UpstreamConfig(
                base_url=settings.upstream_url or "",
                api=settings.upstream_api,
                model_id=settings.model_id,
                upstream_model=settings.upstream_model,
                api_key=settings.upstream_api_key,
                slots=settings.slots or 4,
                command=settings.upstream_command,
                image=settings.upstream_image,
                image_args=settings.upstream_image_args,
                container_port=settings.upstream_container_port,
                gpus=settings.upstream_gpus,
                volumes=tuple(settings.upstream_volumes.items()),
                log_path=settings.logs_dir / f"{log_name}.log" if managed else None,
            )
        )
    if settings.engine == "espeak":
        from services.workers.engines.espeak import EspeakEngine

        return EspeakEngine(settings.model_id or "espeak")
    raise SystemExit(
        f"MODALMESH_WORKER_ENGINE={settings.engine!r} is not a known engine (llama_cpp, vllm, "
        "sentence_transformers, diffusers, diffusers_video, espeak, piper, openai_upstream, host)"
    )


async def load_entry(settings: WorkerSettings, entry: ModelEntry) -> Engine:
    """A started engine for a catalog entry, on a host worker."""
    engine = build_engine(await trusted_weights(entry_settings(settings, entry)))
    await engine.start()
    return engine


def entry_settings(settings: WorkerSettings, entry: ModelEntry) -> WorkerSettings:
    """The host's settings for one catalog model. Its `source` is a path, `fleet:<id>` (copied from
    the fleet's object store), `shared:<path>` (copied from a shared path such as an NFS mount),
    `tiny` (the engine's own tiny model) or, for an upstream engine, the
    server's URL. Its `options` are worker settings by name; `{source}` in a managed server's command
    or container arguments is the source."""
    source = entry.source.strip()
    update: dict[str, Any] = {
        "engine": entry.engine,
        "model_id": entry.id,
        "slots": None,
        "model_path": None,
        "model_fetch": None,
        "model_copy_from": None,
    }
    if source.startswith(("http://", "https://")):
        update["upstream_url"] = source
    elif source.startswith("fleet:"):
        update["model_fetch"] = source.removeprefix("fleet:")
    elif source.startswith("shared:"):
        update["model_copy_from"] = Path(source.removeprefix("shared:"))
    elif source not in ("", "tiny"):
        update["model_path"] = Path(source)
    options = dict(entry.options)
    unknown = sorted((set(options) - set(WorkerSettings.model_fields)) | (set(options) & _HOST_OWNED))
    if unknown:
        raise EngineError(f"catalog options of {entry.id} that a model may not set: {', '.join(unknown)}")
    for key in ("upstream_command", "upstream_image_args"):
        if isinstance(options.get(key), str):
            options[key] = options[key].replace("{source}", source)
    try:
        return WorkerSettings.model_validate({**settings.model_dump(), **update, **options})
    except ValidationError as exc:
        raise EngineError(f"catalog options of {entry.id}: {exc}") from None


# What the hosting worker decides, not one of its models.
_HOST_OWNED = frozenset({"worker_id", "nats_url", "engine", "model_id", "memory_mb", "domain", "metrics_port"})


async def trusted_weights(settings: WorkerSettings) -> WorkerSettings:
    """Settings whose model is on this node and matches its manifest: fetched from the fleet first
    when `model_fetch` names it, copied from a shared path when `model_copy_from` does (both check
    what they install). Weights that do not match stop the worker with the reason."""
    try:
        if settings.model_fetch:
            bus = await connect(settings.nats_url, f"worker-{settings.worker_id}-fetch")
            try:
                path = await fetch(bus, settings.model_fetch, settings.models_dir)
            finally:
                await bus.close()
            settings = settings.model_copy(update={"model_path": path})
        elif settings.model_copy_from is not None:
            path = await copy_shared(settings.model_copy_from, settings.models_dir)
            settings = settings.model_copy(update={"model_path": path})
        elif settings.model_path is not None and settings.verify_weights:
            if await asyncio.to_thread(verify, settings.model_path) is None:
                log.info("%s has no manifest: loaded unchecked", settings.model_path)
            else:
                log.info("%s matches its manifest", settings.model_path)
    except WeightsError as exc:
        raise SystemExit(f"refusing to load the model: {exc.message}") from None
    return settings


def host_memory_mb(settings: WorkerSettings, spec: DomainSpec) -> float:
    """The memory a host worker fills with models: MEMORY_MB, held within its domain's share."""
    share = share_budget_mb(spec, settings.device)
    if share is None:
        if not settings.memory_mb:
            raise SystemExit(
                "a host worker needs MODALMESH_WORKER_MEMORY_MB (the memory it may fill with models) "
                "or a domain with a memory share (ram_fraction, gpu_memory_fraction)"
            )
        return settings.memory_mb
    if settings.memory_mb > share:
        log.warning("MEMORY_MB %.0f is more than the domain's share leaves: %.0f MB", settings.memory_mb, share)
    return min(settings.memory_mb or share, share)


async def main() -> None:
    settings = WorkerSettings()
    setup_logging(f"worker[{settings.worker_id}]", settings.log_level)
    serve_metrics(settings.metrics_port)
    setup_tracing(f"worker {settings.worker_id}")
    stop = stop_event_on_signals()
    settings = await trusted_weights(settings)
    engine = build_engine(settings)
    domain = settings.domain or default_domain(engine.modalities)
    spec = Domains.load().spec(domain)
    confine(spec)  # before the engine starts its threads, which inherit it
    if isinstance(engine, ModelHost):
        engine.memory_mb = host_memory_mb(settings, spec)
    try:
        try:
            await engine.start()
        except Exception:
            log.error("the engine did not start%s", memory_limit_note())
            raise
        bus = await connect(settings.nats_url, f"worker-{settings.worker_id}")
        try:
            await Worker(settings, engine, bus, domain=domain).run(stop)
        finally:
            await bus.close()
    finally:
        await engine.cleanup()


if __name__ == "__main__":
    run(main)
