"""A worker that hosts catalog models on command: the placement controller (in the scheduler) sends
`control.<worker>` load and unload commands, and this engine builds, starts and frees the engine of
each model (any engine kind the catalog names), routing every request to its model's engine.

It reports what it holds (memory, last use, requests in flight) in its heartbeat, so the planner
sees the worker's room. An unloaded model takes no new work at once; its requests in flight finish
(up to the drain timeout) before its memory is freed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

from contracts.base import now_ms
from contracts.requests import AnyRequest, Modality
from contracts.workers import HeldModel, ModelEntry
from services.workers.engine import BackendLost, Engine, EngineEvent

log = logging.getLogger(__name__)
Loader = Callable[[ModelEntry], Awaitable[Engine]]  # builds a started engine for a catalog entry


class ModelHost(Engine):
    kind = "host"

    def __init__(self, memory_mb: float, loader: Loader, drain_timeout_s: float = 20.0) -> None:
        self.memory_mb = memory_mb
        self._loader = loader
        self._drain_timeout_s = drain_timeout_s
        self._engines: dict[str, Engine] = {}
        self._memory: dict[str, float] = {}
        self._last_used: dict[str, int] = {}
        self._in_flight: Counter[str] = Counter()
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

    def held(self) -> dict[str, HeldModel]:
        return {m: HeldModel(memory_mb=self._memory[m], last_used_ms=self._last_used[m], in_flight=self._in_flight[m])
                for m in self._engines}

    def engine_of(self, model: str) -> Engine | None:
        return self._engines.get(model)

    async def load(self, entry: ModelEntry) -> bool:
        """Load `entry` unless it is here already; False when it would not fit."""
        async with self._lock:
            if entry.id in self._engines:
                return True
            need = entry.memory_mb or 0.0
            if sum(self._memory.values()) + need > self.memory_mb:
                log.warning("not loading %s: %.0f MB would not fit in what is left of %.0f MB",
                            entry.id, need, self.memory_mb)
                return False
            started = now_ms()
            engine = await self._loader(entry)
            self._engines[entry.id] = engine
            self._memory[entry.id] = need
            self._last_used[entry.id] = now_ms()
            log.info("loaded %s (%s) in %d ms", entry.id, entry.engine, now_ms() - started)
            return True

    async def unload(self, model: str) -> None:
        """Take `model` out of service now; free it once its requests in flight end."""
        async with self._lock:
            engine = self._engines.pop(model, None)
            if engine is None:
                return
            for _ in range(int(self._drain_timeout_s / 0.05)):
                if not self._in_flight[model]:
                    break
                await asyncio.sleep(0.05)
            await engine.cleanup()
            self._memory.pop(model, None)
            self._last_used.pop(model, None)
            log.info("unloaded %s", model)

    async def start(self) -> None:
        """Nothing to load at start: models come on command."""

    async def generate(self, request: AnyRequest, resume_text: str = "") -> AsyncIterator[EngineEvent]:
        engine = self._engines.get(request.model)
        if engine is None:  # unloaded between assignment and start: another worker takes it
            raise BackendLost(f"{request.model} is no longer loaded here")
        self._in_flight[request.model] += 1
        self._last_used[request.model] = now_ms()
        try:
            async for event in engine.generate(request, resume_text):
                yield event
        finally:
            self._in_flight[request.model] -= 1
            self._last_used[request.model] = now_ms()

    async def abort(self, request_id: str) -> None:
        for engine in list(self._engines.values()):
            await engine.abort(request_id)

    async def cleanup(self) -> None:
        for model in list(self._engines):
            await self._engines.pop(model).cleanup()
