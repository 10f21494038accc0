"""The engine interface every worker engine implements, and the thread bridge blocking engines share.

`start / generate / abort / cleanup`, after Dynamo's backend engine: `generate` streams events for
one request, `abort` stops one request, `cleanup` is safe on a half-started engine and safe twice.
"""

from __future__ import annotations

import abc
import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from contracts.errors import EngineError, InvalidRequest
from contracts.requests import AnyRequest, Modality
from contracts.results import Timings, TokenLogprob, ToolCallDelta, Usage
from contracts.workers import BatchLoad, HeldModel

if TYPE_CHECKING:
    from services.workers.host import ModelHost


@dataclass(frozen=True)
class TextDelta:
    text: str
    tokens: int = 1
    tool_calls: tuple[ToolCallDelta, ...] = ()
    logprobs: tuple[TokenLogprob, ...] = ()

    def __add__(self, other: TextDelta) -> TextDelta:
        return TextDelta(
            self.text + other.text,
            self.tokens + other.tokens,
            self.tool_calls + other.tool_calls,
            self.logprobs + other.logprobs,
        )


@dataclass(frozen=True)
class Progress:
    """How far a non-streamable job is (a denoising step, a video frame), 0..1."""

    fraction: float
    message: str = ""


@dataclass(frozen=True)
class Data:
    """Bytes to hand on inline as they are made: a piece of audio, a batch of vectors."""

    data: bytes
    content_type: str
    index: int = 0


@dataclass(frozen=True)
class File:
    """A finished file (an image, a WAV, an MP4); the worker stores it in the object store."""

    data: bytes
    content_type: str
    extension: str
    index: int = 0
    meta: dict[str, float | int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class Finished:
    finish_reason: str  # "stop" | "length" | "cancelled"
    usage: Usage
    timings: Timings = field(default_factory=Timings)


EngineEvent = TextDelta | Progress | Data | File | Finished


class Engine(abc.ABC):
    """One engine instance. A worker owns exactly one."""

    kind: str = "engine"
    memory_mb: float = 0.0
    """The memory it may fill with the models it loads on command; 0 for an engine of one model."""
    gpu_memory_fraction: float | None = None
    """Its domain's share of its GPU's memory, set by the worker before `start`; None: no cap."""

    @property
    @abc.abstractmethod
    def models(self) -> tuple[str, ...]:
        """Model ids this engine serves once started."""

    @property
    @abc.abstractmethod
    def modalities(self) -> tuple[Modality, ...]:
        """Request modalities it accepts."""

    @property
    @abc.abstractmethod
    def slots(self) -> int:
        """How many requests it runs at once."""

    def health(self) -> tuple[bool, str]:
        """Whether it can serve now, and why not (an engine whose backend is a separate server)."""
        return True, ""

    def batch_load(self) -> BatchLoad | None:
        """A batching engine's KV-cache use and running/waiting counts, for the heartbeat."""
        return None

    @property
    def inputs(self) -> tuple[str, ...]:
        """What its requests may hold besides text (`image` for an engine that can see)."""
        return ("text",)

    @property
    def max_unacked(self) -> int:
        """How many assignments JetStream may hand it before it acknowledges one: its slots."""
        return self.slots

    def held(self) -> dict[str, HeldModel]:
        """What each model it loaded on command holds and how it lives, for the heartbeat."""
        return {}

    def host(self) -> ModelHost | None:
        """Itself when it loads and unloads catalog models on command (`control.<worker>`); None
        for an engine of one fixed model."""
        return None

    @abc.abstractmethod
    async def start(self) -> None:
        """Load the model. May take long; the worker announces itself only after it returns."""

    @abc.abstractmethod
    def generate(self, request: AnyRequest, resume_text: str = "") -> AsyncIterator[EngineEvent]:
        """Stream events for `request`, ending with one `Finished`. `resume_text` was already delivered."""

    @abc.abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop generating for `request_id`; its stream ends with finish_reason "cancelled"."""

    @abc.abstractmethod
    async def cleanup(self) -> None:
        """Free the model and its memory. Safe before `start` finished and safe to call twice."""


_END = object()
Emit = Callable[[EngineEvent], None]


async def iterate_in_thread(
    produce: Callable[[], Iterator[EngineEvent]], executor: Executor
) -> AsyncIterator[EngineEvent]:
    """Run a blocking generator on one of `executor`'s threads and yield its events on the event loop.

    Consecutive text deltas that pile up while the loop is busy are merged into one, so a slow
    consumer costs fewer, larger chunks rather than a growing backlog.
    """

    def work(emit: Emit) -> None:
        for event in produce():
            emit(event)

    async for event in run_in_thread(work, executor):
        yield event


async def run_in_thread(work: Callable[[Emit], None], executor: Executor) -> AsyncIterator[EngineEvent]:
    """Run blocking `work(emit)` on one of `executor`'s threads; what it emits is yielded on the loop.
    For libraries that report through callbacks (a diffusers step, an eSpeak audio buffer)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def emit(event: EngineEvent) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, event)

    def run() -> None:
        try:
            work(emit)
        except BaseException as exc:  # delivered to the consumer, which re-raises it
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, _END)

    done = loop.run_in_executor(executor, run)
    try:
        while True:
            item = await queue.get()
            while isinstance(item, TextDelta) and not queue.empty():
                following = queue.get_nowait()
                if not isinstance(following, TextDelta):
                    yield item
                    item = following
                    break
                item = item + following
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        # The producer stops by itself once aborted; never leave it writing into a dead loop.
        await done


class BackendLost(EngineError):
    """The engine's backend (an upstream server) went away in the middle of a request: the work can
    move to another worker, as after a worker's death."""


class Cancelled(Exception):
    """Raised inside a blocking run when its request was aborted."""


E = TypeVar("E", threading.Event, asyncio.Event)


class _PerRequest(Generic[E]):
    """One event per request in flight, set by `abort`."""

    def __init__(self, make: Callable[[], E]) -> None:
        self._make: Callable[[], E] = make
        self._cancel: dict[str, E] = {}

    def flag(self, request_id: str) -> E:
        return self._cancel.setdefault(request_id, self._make())

    def drop(self, request_id: str) -> None:
        self._cancel.pop(request_id, None)

    async def abort(self, request_id: str) -> None:
        if (event := self._cancel.get(request_id)) is not None:
            event.set()

    def abort_all(self) -> None:
        for event in self._cancel.values():
            event.set()


class CancelFlags(_PerRequest[threading.Event]):
    """Thread events, read by an engine's blocking loop between steps."""

    def __init__(self) -> None:
        _PerRequest.__init__(self, threading.Event)


class StopEvents(_PerRequest[asyncio.Event]):
    """Asyncio events, for engines whose work is a coroutine (a stream from a server, vLLM's
    generator), which waits on its event beside the next output (`until_set`)."""

    def __init__(self) -> None:
        _PerRequest.__init__(self, asyncio.Event)


class TextEngine(Engine):
    """An engine of one chat and completion model, its config's `model_id`."""

    config: Any

    @property
    def models(self) -> tuple[str, ...]:
        return (self.config.model_id,)

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return (Modality.chat, Modality.completion)


class ThreadedEngine(CancelFlags, Engine):
    """An engine around a blocking library with one model instance (diffusers, sentence-transformers,
    eSpeak NG): `load` runs on the engine's own threads, and `abort` sets the request's flag."""

    def __init__(self, model_id: str, modalities: tuple[Modality, ...], slots: int = 1) -> None:
        self.model_id = model_id
        self._modalities = modalities
        self._slots = slots
        self._turns = asyncio.Semaphore(slots)
        CancelFlags.__init__(self)
        self._threads = ThreadPoolExecutor(max_workers=slots, thread_name_prefix=self.kind)

    @property
    def models(self) -> tuple[str, ...]:
        return (self.model_id,)

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return self._modalities

    @property
    def slots(self) -> int:
        return self._slots

    @abc.abstractmethod
    def load(self) -> None:
        """Load the model (blocking, on the engine's thread)."""

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._threads, self.load)

    async def cleanup(self) -> None:
        self.abort_all()
        self._threads.shutdown(wait=False, cancel_futures=True)


class BlockingEngine(ThreadedEngine):
    """A `ThreadedEngine` whose work for one request is one blocking call: requests take turns by
    slot, and `run` checks the request's flag between steps (`check`)."""

    @abc.abstractmethod
    def run(self, request: AnyRequest, cancelled: threading.Event, emit: Emit) -> None:
        """Do the work for `request` (blocking), emitting events and ending with `Finished`; call
        `check(cancelled)` between steps."""

    async def generate(self, request: AnyRequest, resume_text: str = "") -> AsyncIterator[EngineEvent]:
        cancelled = self.flag(request.request_id)
        try:
            async with self._turns:
                async for event in run_in_thread(
                    lambda emit: self._run_or_cancel(request, cancelled, emit), self._threads
                ):
                    yield event
        finally:
            self.drop(request.request_id)

    def _run_or_cancel(self, request: AnyRequest, cancelled: threading.Event, emit: Emit) -> None:
        try:
            check(cancelled)
            self.run(request, cancelled, emit)
        except Cancelled:
            emit(Finished("cancelled", Usage()))


R = TypeVar("R")


def expect(request: AnyRequest, kind: type[R] | tuple[type[R], ...], engine: str) -> R:
    """`request` as the request type an engine serves; another modality is the client's mistake."""
    if not isinstance(request, kind):
        raise InvalidRequest(f"the {engine} engine does not do {request.modality.value}")
    return request


def check(cancelled: threading.Event) -> None:
    """Stop a blocking run between steps once its request is aborted."""
    if cancelled.is_set():
        raise Cancelled


T = TypeVar("T")


async def until_set(cancelled: asyncio.Event, items: AsyncIterator[T]) -> AsyncIterator[T | None]:
    """`items`, but a None as soon as `cancelled` is set, even while waiting for the next item."""
    waiter = asyncio.ensure_future(cancelled.wait())
    try:
        while True:
            step = asyncio.ensure_future(anext(items))
            done, _ = await asyncio.wait({step, waiter}, return_when=asyncio.FIRST_COMPLETED)
            if step in done:
                try:
                    yield step.result()
                except StopAsyncIteration:
                    return
            else:
                step.cancel()
                await asyncio.gather(step, return_exceptions=True)  # the source is idle again: it may close
                yield None
                return
    finally:
        waiter.cancel()
