"""A worker that hosts catalog models on command: the placement controller (in the scheduler) sends
`control.<worker>` load and unload commands, and this engine builds, starts and frees the engine of
each model (any engine kind the catalog names), routing every request to its model's engine.

It reports each model's state (starting, running, stopping, stopped, preempted, error: why and since
when) and what it holds (memory, last use, requests in flight) in its heartbeat, so the planner sees
the worker's room and operators see the models' lives. An unloaded model takes no new work at once;
its requests in flight finish before its memory is freed, and those still running at the drain
timeout are cut off and handed back to the scheduler, which re-queues them: preempted work is
continued elsewhere or later, never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from contracts.base import now_ms
from contracts.requests import AnyRequest, Modality
from contracts.workers import HeldModel, ModelEntry, ModelState
from services.common.confinement import memory_limit_note
from services.workers.engine import BackendLost, Engine, EngineEvent
from services.workers.registry import EngineKind
from services.workers.settings import WorkerSettings

log = logging.getLogger(__name__)
Loader = Callable[[ModelEntry], Awaitable[Engine]]  # builds a started engine for a catalog entry


@dataclass
class _Life:
    """One model's life on this host: its state, since when and why, and the memory it holds."""

    state: ModelState
    reason: str
    memory_mb: float
    since_ms: int = field(default_factory=now_ms)


class ModelHost(Engine):
    kind = "host"

    def __init__(self, memory_mb: float, loader: Loader, drain_timeout_s: float = 20.0) -> None:
        self.memory_mb = memory_mb
        self._loader = loader
        self._drain_timeout_s = drain_timeout_s
        self._engines: dict[str, Engine] = {}
        self._life: dict[str, _Life] = {}  # every model it was asked to load, the ended ones too
        self._last_used: dict[str, int] = {}
        self._running: dict[str, str] = {}  # request id -> model
        self._cut: set[str] = set()  # requests aborted because their model was unloaded under them
        self._lock = asyncio.Lock()  # one load or unload at a time

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted(self._engines))

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return tuple(sorted({m for e in self._engines.values() for m in e.modalities}, key=lambda m: m.value))

    @property
    def slots(self) -> int:
        return sum(e.slots for e in self._engines.values())

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(sorted({i for e in self._engines.values() for i in e.inputs})) or ("text",)

    def health(self) -> tuple[bool, str]:
        for model, engine in self._engines.items():
            healthy, detail = engine.health()
            if not healthy:
                return False, f"{model}: {detail}"
        return True, ""

    @property
    def max_unacked(self) -> int:
        # Its slots come and go with its models: the scheduler sends only to free slots.
        return 256

    def host(self) -> ModelHost:
        return self

    def held(self) -> dict[str, HeldModel]:
        in_flight = Counter(self._running.values())
        return {
            m: HeldModel(
                memory_mb=life.memory_mb if life.state.holds_memory else 0.0,
                last_used_ms=self._last_used.get(m, life.since_ms),
                in_flight=in_flight[m],
                state=life.state,
                reason=life.reason,
                since_ms=life.since_ms,
            )
            for m, life in self._life.items()
        }

    def engine_of(self, model: str) -> Engine | None:
        return self._engines.get(model)

    def _used_mb(self) -> float:
        return sum(life.memory_mb for life in self._life.values() if life.state.holds_memory)

    async def load(self, entry: ModelEntry, reason: str = "") -> bool:
        """Load `entry` unless it is here already; False when it would not fit. A loader's failure
        leaves the model in state `error`, with the message as its reason, and is raised."""
        async with self._lock:
            if entry.id in self._engines:
                return True
            need = entry.memory_mb or 0.0
            if self._used_mb() + need > self.memory_mb:
                log.warning(
                    "not loading %s: %.0f MB would not fit in what is left of %.0f MB", entry.id, need, self.memory_mb
                )
                return False
            self._life[entry.id] = _Life(ModelState.starting, reason, need)
            try:
                engine = await self._loader(entry)
            except BaseException as exc:
                self._life[entry.id] = _Life(ModelState.error, f"{type(exc).__name__}: {exc}{memory_limit_note()}", 0.0)
                raise
            self._engines[entry.id] = engine
            self._last_used[entry.id] = now_ms()
            self._life[entry.id] = _Life(ModelState.running, reason, need)
            log.info("loaded %s (%s) in %d ms", entry.id, entry.engine, now_ms() - self._life[entry.id].since_ms)
            return True

    async def unload(self, model: str, reason: str = "", by: str | None = None) -> None:
        """Take `model` out of service now; free it once its requests in flight end, or once the
        drain timeout passes, when what still runs is cut off and handed back (see `generate`)."""
        async with self._lock:
            engine = self._engines.pop(model, None)
            if engine is None:
                return
            life = self._life[model]
            self._life[model] = _Life(ModelState.stopping, reason, life.memory_mb)
            await self._until_idle(model, self._drain_timeout_s)
            cut = [rid for rid, m in self._running.items() if m == model]
            self._cut.update(cut)
            for rid in cut:
                await engine.abort(rid)
            await self._until_idle(model, 5.0)  # aborted work ends at the engine's next step
            await engine.cleanup()
            self._last_used.pop(model, None)
            preempted = reason == "preempted"
            self._life[model] = _Life(
                ModelState.preempted if preempted else ModelState.stopped,
                f"preempted by {by}" if preempted and by else reason,
                0.0,
            )
            log.info("unloaded %s (%s)%s", model, reason, f", {len(cut)} request(s) handed back" if cut else "")

    async def _until_idle(self, model: str, timeout_s: float) -> None:
        """Wait until no request of `model` runs here, or `timeout_s` has passed."""
        for _ in range(int(timeout_s / 0.05)):
            if model not in self._running.values():
                return
            await asyncio.sleep(0.05)

    async def start(self) -> None:
        """Nothing to load at start: models come on command."""

    async def generate(self, request: AnyRequest, resume_text: str = "") -> AsyncIterator[EngineEvent]:
        engine = self._engines.get(request.model)
        if engine is None:  # unloaded between assignment and start: another worker takes it
            raise BackendLost(f"{request.model} is no longer loaded here")
        rid = request.request_id
        self._running[rid] = request.model
        self._last_used[request.model] = now_ms()
        lost = BackendLost(f"{request.model} was unloaded here mid-request")
        try:
            async for event in engine.generate(request, resume_text):
                if rid in self._cut:  # its model is being unloaded: the rest is made elsewhere
                    raise lost
                yield event
            if rid in self._cut:
                raise lost
        except Exception as exc:
            if rid in self._cut and exc is not lost:
                raise lost from exc
            raise
        finally:
            self._running.pop(rid, None)
            self._cut.discard(rid)
            if request.model in self._last_used:
                self._last_used[request.model] = now_ms()

    async def abort(self, request_id: str) -> None:
        for engine in list(self._engines.values()):
            await engine.abort(request_id)

    async def cleanup(self) -> None:
        for model in list(self._engines):
            await self._engines.pop(model).cleanup()
            self._life[model] = _Life(ModelState.stopped, "worker stopped", 0.0)


def from_settings(settings: WorkerSettings) -> ModelHost:
    """A host that starts empty and builds each catalog model's engine from the catalog entry, held
    to the host's own GPU share."""
    from services.workers.loading import load_entry

    def loader(entry: ModelEntry) -> Awaitable[Engine]:
        return load_entry(settings, entry, host.gpu_memory_fraction)

    host = ModelHost(settings.memory_mb, loader, settings.drain_timeout_s)
    return host


ENGINE = EngineKind(ModelHost.kind, from_settings)
