"""One run: warm-up, then the measured requests let out by the shape, bounded in count and in time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from loadgen.client import Sender
from loadgen.prompts import prompts
from loadgen.record import Record
from loadgen.shapes import arrival_times, class_sequence
from loadgen.spec import RequestClass, RunSpec, check_target


@dataclass
class Progress:
    """What the live view shows: per class, sent and finished so far, and the records themselves."""

    total: int
    started_at: float = field(default_factory=time.time)
    origin: float = field(default_factory=time.perf_counter)
    deadline: float = 0.0
    records: list[Record] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    phase: str = "warm-up"

    def elapsed(self) -> float:
        return time.perf_counter() - self.origin


@dataclass
class RunResult:
    spec: RunSpec
    records: list[Record]
    started_at: float  # Unix time of the run's zero
    duration_s: float


class Run:
    def __init__(self, spec: RunSpec, on_record: Callable[[Record], None] | None = None) -> None:
        check_target(spec.target, spec.allow_hosts)
        self.spec = spec
        self.on_record = on_record
        self.progress = Progress(total=spec.requests + spec.warmup * len(spec.classes))
        self._prompts: dict[str, Iterator[str]] = {
            c.name: prompts(c.prompt, spec.seed + i) for i, c in enumerate(spec.classes)
        }
        self._seq = 0

    async def execute(self) -> RunResult:
        spec = self.spec
        headers = {"Authorization": f"Bearer {spec.api_key}"} if spec.api_key else {}
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        timeout = httpx.Timeout(spec.timeout_s, connect=min(10.0, spec.timeout_s))
        async with httpx.AsyncClient(base_url=spec.target, headers=headers, limits=limits, timeout=timeout) as client:
            self.progress.origin = time.perf_counter()
            self.progress.started_at = time.time()
            self.progress.deadline = spec.duration_s
            sender = Sender(client, self.progress.origin)
            await self._warm_up(sender)
            self.progress.phase = "measure"
            order = [spec.classes[i] for i in class_sequence([c.weight for c in spec.classes], spec.requests)]
            if spec.shape.kind == "concurrency":
                await self._closed_loop(sender, order, spec.shape.concurrency)
            else:
                await self._open_loop(sender, order)
        self.progress.phase = "done"
        return RunResult(spec, self.progress.records, self.progress.started_at, self.progress.elapsed())

    def _left(self) -> float:
        return self.spec.duration_s - self.progress.elapsed()

    async def _one(self, sender: Sender, cls: RequestClass, warmup: bool = False) -> None:
        record = Record(cls=cls.name, kind=cls.kind, seq=self._seq, start=sender.now(), warmup=warmup)
        self._seq += 1
        self.progress.in_flight[cls.name] = self.progress.in_flight.get(cls.name, 0) + 1
        try:
            await sender.send(cls, next(self._prompts[cls.name]), record)
        finally:
            self.progress.in_flight[cls.name] -= 1
            self.progress.records.append(record)
            if self.on_record:
                self.on_record(record)

    async def _warm_up(self, sender: Sender) -> None:
        """Each class's warm-up requests, one class after another so that loading one model does not
        stand in the queue of another."""
        for cls in self.spec.classes:
            for _ in range(self.spec.warmup):
                if self._left() > 0:
                    await self._one(sender, cls, warmup=True)

    async def _closed_loop(self, sender: Sender, order: list[RequestClass], concurrency: int) -> None:
        queue = iter(order)

        async def worker() -> None:
            for cls in queue:
                if self._left() <= 0:
                    return
                await self._one(sender, cls)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    async def _open_loop(self, sender: Sender, order: list[RequestClass]) -> None:
        shape = self.spec.shape
        limit = asyncio.Semaphore(shape.max_concurrency) if shape.max_concurrency else None
        start = self.progress.elapsed()
        times = arrival_times(shape, len(order), self._left(), self.spec.seed)

        async def later(cls: RequestClass) -> None:
            if limit is None:
                await self._one(sender, cls)
                return
            async with limit:
                await self._one(sender, cls)

        tasks = []
        for cls, at in zip(order, times, strict=True):
            wait = start + at - self.progress.elapsed()
            if wait >= self._left():
                break
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(later(cls)))
        await asyncio.gather(*tasks)
