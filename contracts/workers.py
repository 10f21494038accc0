"""Worker heartbeats (`worker.status.<worker>`) and catalog entries (`models` KV bucket)."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contracts.base import Message, now_ms
from contracts.requests import Modality, Priority


class WorkerState(str, Enum):
    ready = "ready"
    draining = "draining"
    unavailable = "unavailable"  # its engine cannot serve right now (a managed server restarting)


class ModelState(str, Enum):
    """Where a catalog model is in its life on a hosting worker."""

    stopped = "stopped"
    starting = "starting"
    running = "running"
    stopping = "stopping"
    error = "error"
    preempted = "preempted"  # unloaded to make room for a model of higher priority

    @property
    def holds_memory(self) -> bool:
        return self in (ModelState.starting, ModelState.running, ModelState.stopping)


class HeldModel(BaseModel):
    """A catalog model on a hosting worker: loaded, loading, unloading, or ended lately (its state
    says which, since when and why), with what the placement planner needs of it."""

    model_config = ConfigDict(frozen=True)

    memory_mb: float = Field(ge=0)
    last_used_ms: int = Field(description="When it last started a request (or was loaded).")
    in_flight: int = Field(default=0, ge=0)
    state: ModelState = ModelState.running
    reason: str = Field(
        default="",
        description="Why it came to this state: warm, demand, idle, operator, preempted by <model>, or the error.",
    )
    since_ms: int = Field(default_factory=now_ms, description="When it came to this state.")


class BatchLoad(BaseModel):
    """How full a batching engine (vLLM) is, from its own scheduler: more than free slots say."""

    model_config = ConfigDict(frozen=True)

    kv_cache_usage: float = Field(ge=0, le=1, description="Share of the KV cache in use, 0..1.")
    running: int = Field(ge=0, description="Requests in the engine's running batch.")
    waiting: int = Field(ge=0, description="Requests the engine holds waiting for KV-cache room.")


class WorkerStatus(Message):
    """A worker's heartbeat, published every `heartbeat_s`; missing ones mean the worker is gone."""

    worker_id: str
    node: str = Field(description="Host the worker runs on.")
    engine: str = Field(description="Engine kind, e.g. llama_cpp.")
    models: tuple[str, ...] = Field(description="Models loaded and ready to serve.")
    slots_total: int = Field(ge=0)
    slots_free: int = Field(ge=0)
    outstanding: int = Field(ge=0, description="Assignments received and not yet finished.")
    state: WorkerState = WorkerState.ready
    detail: str = Field(default="", description="Why the worker is not ready, when it is not.")
    domain: str = Field(default="default", description="The resource domain whose queue and capacity it serves.")
    memory_mb: float = Field(
        default=0.0,
        ge=0,
        description="Memory it may fill with catalog models the placement "
        "controller loads; 0 for a worker with one fixed model.",
    )
    held: dict[str, HeldModel] = Field(
        default_factory=dict,
        description="Catalog models it has loaded, is loading or unloading on command, and those it ended lately.",
    )
    batch: BatchLoad | None = Field(default=None, description="A batching engine's own load, where it reports one.")
    started_ms: int = Field(default_factory=now_ms, description="When this worker process started.")
    ts_ms: int = Field(default_factory=now_ms)

    def holding(self) -> dict[str, HeldModel]:
        """The models that take up its memory (loading, loaded or unloading)."""
        return {m: h for m, h in self.held.items() if h.state.holds_memory}

    def replicas(self) -> dict[str, HeldModel]:
        """Every model it serves or has a record of, with its state: a host's record as it is, a
        fixed worker's model running since the worker started, with the worker's requests in flight."""
        fixed = {
            m: HeldModel(
                memory_mb=0.0,
                last_used_ms=self.ts_ms,
                in_flight=self.outstanding,
                state=ModelState.running,
                since_ms=self.started_ms,
            )
            for m in self.models
            if m not in self.held
        }
        return {**fixed, **self.held}


class ModelEntry(Message):
    """One model in the catalog, kept in the `models` KV bucket under its id."""

    id: str
    modality: tuple[Modality, ...]
    engine: str
    source: str = Field(description="Where the weights come from: a path or a catalog reference.")
    inputs: tuple[str, ...] = Field(default=("text",), description="What requests may hold: text, image.")
    owned_by: str = "modalmesh"
    priority_class: Priority = Field(
        default=Priority.interactive, description="The class of its requests that name none (nor does their API key)."
    )
    domain: str = Field(default="default", description="The resource domain of the workers that serve it.")
    # From the catalog file (`declared`); a worker that loads the model does not overwrite these.
    declared: bool = Field(default=False, description="Written from the catalog file, not by a worker.")
    memory_mb: float | None = Field(default=None, description="Memory it needs, given or estimated.")
    priority: int = Field(default=5, ge=1, le=10, description="Placement priority: a higher one may push a lower out.")
    min_replicas: int = Field(default=0, ge=0, description="Copies kept loaded even when idle.")
    max_replicas: int = Field(default=1, ge=1)
    idle_unload_s: float | None = Field(default=None, gt=0, description="Unloaded after this long without work.")
    node_labels: dict[str, str] = Field(default_factory=dict, description="Only on nodes with these labels.")
    fallback: str | None = Field(default=None, description="A model that serves its requests when it has no capacity.")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Settings of its engine beyond the source: "
        "worker settings by name (upstream_command, upstream_image, upstream_gpus, "
        "engine_args, n_gpu_layers ...).",
    )
    created_ms: int = Field(default_factory=now_ms)

    @property
    def placed(self) -> bool:
        """Placed by the scheduler's placement controller on host workers (declared in the catalog
        file with its memory), rather than served by a worker of its own."""
        return self.declared and bool(self.memory_mb)


class ModelOverride(Message):
    """An operator's word on one catalog model, from the admin API (`placement` bucket, key = model
    id): it takes precedence over the catalog file until changed, and survives restarts."""

    model: str
    pinned: bool = Field(default=False, description="Keep a replica loaded: never unloaded idle, never preempted.")
    priority: int | None = Field(default=None, ge=1, le=10, description="Replaces the catalog's priority.")
    min_replicas: int | None = Field(
        default=None, ge=0, description="Replaces the catalog's min_replicas: load sets at least 1, unload 0."
    )
    updated_ms: int = Field(default_factory=now_ms)

    def apply(self, entry: ModelEntry) -> ModelEntry:
        """`entry` as the operator wants it now."""
        minimum = entry.min_replicas if self.min_replicas is None else self.min_replicas
        if self.pinned:
            minimum = max(1, minimum)
        return entry.model_copy(
            update={"priority": self.priority or entry.priority, "min_replicas": min(minimum, entry.max_replicas)}
        )
