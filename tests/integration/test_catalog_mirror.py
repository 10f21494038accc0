"""The catalog file mirrored into the `models` bucket on a real NATS server: edits apply without a
restart, a broken edit keeps the last good catalog, workers do not overwrite declared entries, and
export / import round-trips."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from contracts import streams
from contracts.requests import Modality
from contracts.workers import ModelEntry, ModelOverride
from services.common.bus import Bus
from services.scheduler.catalog import export_entries, follow_file, import_entries

FIRST = """\
models:
  mirror-a: {engine: llama_cpp, source: /m/a.gguf, modality: [chat], priority: 3}
  mirror-b: {engine: diffusers, source: /m/b, modality: [image]}
"""
SECOND = """\
models:
  mirror-a: {engine: llama_cpp, source: /m/a.gguf, modality: [chat], priority: 9}
"""


async def _entry(bus: Bus, key: str) -> ModelEntry | None:
    kv = await bus.js.key_value(streams.KV_MODELS)
    try:
        value = (await kv.get(key)).value
    except Exception:
        return None
    return ModelEntry.decode(value) if value else None


async def _until(check, timeout_s: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout_s / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the bucket never caught up with the file")


async def test_edits_to_the_catalog_file_apply_without_a_restart(bus: Bus, tmp_path: Path) -> None:
    kv = await bus.js.key_value(streams.KV_MODELS)
    await kv.put(
        "mirror-worker",
        ModelEntry(id="mirror-worker", modality=(Modality.chat,), engine="llama_cpp", source="/w.gguf").encode(),
    )  # a worker's own entry
    path = tmp_path / "catalog.yaml"
    path.write_text(FIRST)
    stop = asyncio.Event()
    task = asyncio.create_task(follow_file(bus, path, stop, every_s=0.05))
    try:

        async def first_applied() -> bool:
            a = await _entry(bus, "mirror-a")
            return a is not None and a.priority == 3 and await _entry(bus, "mirror-b") is not None

        await _until(first_applied)

        path.write_text(SECOND)

        async def second_applied() -> bool:
            a = await _entry(bus, "mirror-a")
            return a is not None and a.priority == 9 and await _entry(bus, "mirror-b") is None

        await _until(second_applied)
        assert await _entry(bus, "mirror-worker") is not None  # undeclared entries are not the file's to remove

        path.write_text("models: [broken\n")  # a bad edit: reported, the last good catalog stays
        await asyncio.sleep(0.3)
        assert (await _entry(bus, "mirror-a")).priority == 9  # type: ignore[union-attr]
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    overrides = await bus.js.key_value(streams.KV_PLACEMENT)
    await overrides.put("mirror-a", ModelOverride(model="mirror-a", pinned=True, priority=10).encode())
    backup = await export_entries(bus)
    assert backup["models"]["mirror-a"]["priority"] == 9
    assert backup["overrides"]["mirror-a"]["pinned"] is True and backup["overrides"]["mirror-a"]["priority"] == 10
    await kv.delete("mirror-a")
    await overrides.delete("mirror-a")
    assert await _entry(bus, "mirror-a") is None
    assert await import_entries(bus, backup) == len(backup["models"]) + len(backup["overrides"])
    restored = await _entry(bus, "mirror-a")
    assert restored is not None and restored.declared and restored.priority == 9
    override = ModelOverride.decode((await overrides.get("mirror-a")).value or b"")
    assert override.pinned and override.apply(restored).priority == 10 and override.apply(restored).min_replicas == 1


async def test_a_worker_does_not_overwrite_what_the_catalog_declares(bus: Bus) -> None:
    from services.workers.engines.espeak import EspeakEngine
    from services.workers.runner import Worker
    from services.workers.settings import WorkerSettings

    kv = await bus.js.key_value(streams.KV_MODELS)
    declared = ModelEntry(
        id="voice-declared", modality=(Modality.speech,), engine="espeak", source="catalog", declared=True, priority=8
    )
    await kv.put("voice-declared", declared.encode())
    for model_id in ("voice-declared", "voice-undeclared"):
        worker = Worker(WorkerSettings(worker_id=f"w-{model_id}"), EspeakEngine(model_id), bus)
        await worker._register_models()
    kept = await _entry(bus, "voice-declared")
    assert kept is not None and kept.declared and kept.priority == 8 and kept.source == "catalog"
    added = await _entry(bus, "voice-undeclared")
    assert added is not None and not added.declared and added.engine == "espeak"
