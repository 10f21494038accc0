"""Loading a model onto this node: its weights checked or fetched first, and a catalog entry turned
into the settings of the engine that serves it."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from contracts.errors import EngineError
from contracts.workers import ModelEntry
from services.common.bus import connect
from services.workers.engine import Engine
from services.workers.registry import build_engine
from services.workers.settings import WorkerSettings
from services.workers.weights import WeightsError, copy_shared, fetch, verify

log = logging.getLogger(__name__)


async def load_entry(settings: WorkerSettings, entry: ModelEntry, gpu_memory_fraction: float | None = None) -> Engine:
    """A started engine for a catalog entry, on a host worker, held to the host's GPU share."""
    engine = build_engine(await trusted_weights(entry_settings(settings, entry)))
    engine.gpu_memory_fraction = gpu_memory_fraction
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
            bus = await connect(settings.nats_url, f"worker-{settings.worker_id}-fetch", settings.nats_replicas)
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
