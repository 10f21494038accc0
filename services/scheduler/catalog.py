"""The model catalog: a YAML file the operator edits, mirrored into the `models` KV bucket, which
every service watches. Edits apply without a restart (the file is re-read when it changes); a file
that does not parse is reported and the last good catalog stays.

    models:
      qwen2.5-7b-instruct:
        engine: llama_cpp
        source: /models/qwen2.5-7b-instruct-q4_k_m.gguf
        modality: [chat, completion]
        params_b: 7.6
        quantization: q4_k_m
        context: 8192
        priority: 8
        domain: llm
        min_replicas: 1
        max_replicas: 2
        idle_unload_s: 900
        node_labels: {gpu: "true"}
        fallback: tiny-llama

`python -m services.scheduler.catalog export [FILE]` writes, as JSON, every entry of the bucket, the
operators' overrides (the `placement` bucket: pins, priorities, loads and unloads from the admin
API) and where each model is now (from the workers' heartbeats); `import FILE` puts the entries and
overrides back, for backup, and the placement controllers bring the fleet to them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml
from nats.aio.msg import Msg
from nats.js.errors import KeyNotFoundError
from pydantic import BaseModel, ConfigDict, Field

from contracts import streams, subjects
from contracts.requests import Modality, Priority, default_priority
from contracts.workers import ModelEntry, ModelOverride, WorkerStatus
from services.common.bus import Bus, connect
from services.common.domains import default_domain
from services.common.settings import ServiceSettings
from services.common.shutdown import wait_or_stop

log = logging.getLogger(__name__)

# Bytes per parameter of common weight formats (GGUF quantizations, with their block overhead).
BYTES_PER_PARAM = {
    "f32": 4.0,
    "f16": 2.0,
    "bf16": 2.0,
    "q8_0": 1.0625,
    "q6_k": 0.82,
    "q5_k_m": 0.71,
    "q5_0": 0.6875,
    "q4_k_m": 0.61,
    "q4_0": 0.5625,
    "q3_k_m": 0.49,
    "q2_k": 0.41,
}
KV_MB_PER_TOKEN_PER_B = 0.07
RUNTIME_OVERHEAD = 1.10  # activations, buffers and the engine's own allocations


def estimate_memory_mb(params_b: float, quantization: str | None = None, context: int = 4096) -> float:
    """Memory a model needs: its weights at the quantization's bytes per parameter, plus an fp16 KV
    cache for `context` tokens sized from the parameter count (layers x width grows with it: 0.07 MB
    per token per billion parameters with full multi-head attention, as Llama 2 7B's 0.5 MB; models
    with grouped-query attention need about a quarter, so this errs on the safe side), plus 10%."""
    per_param = BYTES_PER_PARAM.get((quantization or "f16").lower())
    if per_param is None:
        raise ValueError(f"unknown quantization {quantization!r}: one of {', '.join(BYTES_PER_PARAM)}")
    weights_mb = params_b * 1e9 * per_param / 2**20
    kv_mb = KV_MB_PER_TOKEN_PER_B * params_b * context
    return round((weights_mb + kv_mb) * RUNTIME_OVERHEAD, 1)


class CatalogModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: str
    source: str = Field(description="A path, or a hub id the weights are pulled from.")
    modality: tuple[Modality, ...] = Field(min_length=1)
    inputs: tuple[str, ...] = ("text",)
    params_b: float | None = Field(default=None, gt=0, description="Parameters, in billions.")
    quantization: str | None = None
    context: int = Field(default=4096, ge=1)
    memory_mb: float | None = Field(default=None, gt=0, description="Given: used as is; else estimated.")
    priority: int = Field(default=5, ge=1, le=10)
    priority_class: Priority | None = None
    domain: str | None = None
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(default=1, ge=1)
    idle_unload_s: float | None = Field(default=None, gt=0)
    node_labels: dict[str, str] = Field(default_factory=dict)
    fallback: str | None = None
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Worker settings for its engine, e.g. "
        "upstream_command, upstream_image, upstream_gpus, engine_args.",
    )

    def entry(self, model_id: str) -> ModelEntry:
        memory = self.memory_mb
        if memory is None and self.params_b is not None:
            memory = estimate_memory_mb(self.params_b, self.quantization, self.context)
        return ModelEntry(
            id=model_id,
            modality=self.modality,
            engine=self.engine,
            source=self.source,
            inputs=self.inputs,
            priority_class=self.priority_class or default_priority(self.modality),
            domain=self.domain or default_domain(self.modality),
            declared=True,
            memory_mb=memory,
            priority=self.priority,
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            idle_unload_s=self.idle_unload_s,
            node_labels=self.node_labels,
            fallback=self.fallback,
            options=self.options,
        )


class Catalog(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, CatalogModel] = Field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> Catalog:
        catalog = cls.model_validate(yaml.safe_load(path.read_text()) or {})
        for model_id, model in catalog.models.items():
            if model.fallback is not None and model.fallback not in catalog.models:
                raise ValueError(f"{model_id}: fallback {model.fallback!r} is not in the catalog")
            if model.min_replicas > model.max_replicas:
                raise ValueError(f"{model_id}: min_replicas is above max_replicas")
        return catalog

    def entries(self) -> dict[str, ModelEntry]:
        return {model_id: model.entry(model_id) for model_id, model in self.models.items()}


def _same(a: ModelEntry, b: ModelEntry) -> bool:
    return a.model_dump(exclude={"created_ms"}) == b.model_dump(exclude={"created_ms"})


async def _bucket(bus: Bus, bucket: str) -> dict[str, Any]:
    """Every entry of a KV bucket, by key, as JSON."""
    kv = await bus.js.key_value(bucket)
    out: dict[str, Any] = {}
    try:
        keys = await kv.keys()
    except Exception:  # an empty bucket has no keys to list
        keys = []
    for key in sorted(keys):
        try:
            stored = await kv.get(key)
        except KeyNotFoundError:  # deleted since it was listed
            continue
        if stored.value:
            out[key] = json.loads(stored.value)
    return out


async def sync(bus: Bus, wanted: dict[str, ModelEntry]) -> tuple[int, int]:
    """Make the bucket's declared entries those of `wanted`: put the new and changed, delete the
    declared ones no longer wanted. Entries workers wrote (undeclared) are left alone. Returns
    (written, deleted)."""
    kv = await bus.js.key_value(streams.KV_MODELS)
    current = {k: ModelEntry.model_validate(v) for k, v in (await _bucket(bus, streams.KV_MODELS)).items()}
    written = deleted = 0
    for model_id, entry in wanted.items():
        if model_id not in current or not _same(current[model_id], entry):
            await kv.put(model_id, entry.encode())
            written += 1
    for model_id, entry in current.items():
        if entry.declared and model_id not in wanted:
            await kv.delete(model_id)
            deleted += 1
    return written, deleted


def _mtime(path: Path) -> float:
    return path.stat().st_mtime


async def follow_file(bus: Bus, path: Path, stop: asyncio.Event, every_s: float = 2.0) -> None:
    """Mirror the catalog file into the bucket now and whenever the file changes."""
    seen: float | None = None
    while not stop.is_set():
        try:
            mtime = _mtime(path)
            if mtime != seen:
                seen = mtime
                written, deleted = await sync(bus, Catalog.read(path).entries())
                log.info("catalog %s: %d entries written, %d removed", path, written, deleted)
        except (OSError, ValueError, yaml.YAMLError) as exc:
            log.error("catalog %s not applied (the last good one stays): %s", path, exc)
        await wait_or_stop(stop, every_s)


async def placement_now(bus: Bus, listen_s: float) -> dict[str, dict[str, Any]]:
    """Per worker heard within `listen_s` (a heartbeat): the state of each model it holds or serves."""
    heard: dict[str, dict[str, Any]] = {}

    async def on_status(msg: Msg) -> None:
        status = WorkerStatus.decode(msg.data)
        heard[status.worker_id] = {
            m: {"state": r.state.value, "reason": r.reason, "since_ms": r.since_ms}
            for m, r in status.replicas().items()
        }

    sub = await bus.nc.subscribe(subjects.WORKER_STATUS_ALL, cb=on_status)
    await asyncio.sleep(listen_s)
    await sub.unsubscribe()
    return dict(sorted(heard.items()))


async def export_entries(bus: Bus, listen_s: float = 0.0) -> dict[str, Any]:
    backup = {"models": await _bucket(bus, streams.KV_MODELS), "overrides": await _bucket(bus, streams.KV_PLACEMENT)}
    if listen_s > 0:
        backup["placement"] = await placement_now(bus, listen_s)
    return backup


async def import_entries(bus: Bus, backup: dict[str, Any]) -> int:
    """Put back the catalog entries and overrides of an export; returns how many of each in all."""
    models = await bus.js.key_value(streams.KV_MODELS)
    for key, value in backup.get("models", {}).items():
        await models.put(key, ModelEntry.model_validate(value).encode())
    overrides = await bus.js.key_value(streams.KV_PLACEMENT)
    for key, value in backup.get("overrides", {}).items():
        await overrides.put(key, ModelOverride.model_validate(value).encode())
    return len(backup.get("models", {})) + len(backup.get("overrides", {}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.scheduler.catalog",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    export = sub.add_parser("export")
    export.add_argument("file", nargs="?", type=Path)
    export.add_argument(
        "--listen",
        type=float,
        default=2.5,
        metavar="S",
        help="seconds to hear the workers' heartbeats for where models are now (0: skip)",
    )
    sub.add_parser("import").add_argument("file", type=Path)
    sub.add_parser("check").add_argument("file", type=Path)
    args = parser.parse_args(argv)
    if args.command == "check":
        entries = Catalog.read(args.file).entries()
        for model_id, entry in entries.items():
            print(
                f"{model_id}: {entry.engine}, {entry.domain}, priority {entry.priority}, "
                f"memory {entry.memory_mb or '?'} MB"
            )
        return 0

    async def work() -> None:
        bus = await connect(ServiceSettings().nats_url, "catalog-cli")
        try:
            if args.command == "export":
                text = json.dumps(await export_entries(bus, args.listen), indent=1) + "\n"
                if args.file is None:
                    sys.stdout.write(text)
                else:
                    args.file.write_text(text)
            else:
                print(f"imported {await import_entries(bus, json.loads(args.file.read_text()))} entries and overrides")
        finally:
            await bus.close()

    asyncio.run(work())
    return 0


if __name__ == "__main__":
    sys.exit(main())
