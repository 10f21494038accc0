"""The engine interface every worker engine implements, and the thread bridge blocking engines share.

`start / generate / abort / cleanup`, after Dynamo's backend engine: `generate` streams events for
one request, `abort` stops one request, `cleanup` is safe on a half-started engine and safe twice.
"""

from __future__ import annotations

import abc
import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field

from contracts.requests import Modality, TextRequest
from contracts.results import Timings, Usage


@dataclass(frozen=True)
class TextDelta:
    text: str
    tokens: int = 1


@dataclass(frozen=True)
class Finished:
    finish_reason: str  # "stop" | "length" | "cancelled"
    usage: Usage
    timings: Timings = field(default_factory=Timings)


EngineEvent = TextDelta | Finished


class Engine(abc.ABC):
    """One engine instance. A worker owns exactly one."""

    kind: str = "engine"

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

    @abc.abstractmethod
    async def start(self) -> None:
        """Load the model. May take long; the worker announces itself only after it returns."""

    @abc.abstractmethod
    def generate(self, request: TextRequest, resume_text: str = "") -> AsyncIterator[EngineEvent]:
        """Stream events for `request`, ending with one `Finished`. `resume_text` was already delivered."""

    @abc.abstractmethod
    async def abort(self, request_id: str) -> None:
        """Stop generating for `request_id`; its stream ends with finish_reason "cancelled"."""

    @abc.abstractmethod
    async def cleanup(self) -> None:
        """Free the model and its memory. Safe before `start` finished and safe to call twice."""


_END = object()


async def iterate_in_thread(
    produce: Callable[[], Iterator[EngineEvent]], executor: Executor
) -> AsyncIterator[EngineEvent]:
    """Run a blocking generator on one of `executor`'s threads and yield its events on the event loop.

    Consecutive text deltas that pile up while the loop is busy are merged into one, so a slow
    consumer costs fewer, larger chunks rather than a growing backlog.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[object] = asyncio.Queue()

    def run() -> None:
        try:
            for event in produce():
                loop.call_soon_threadsafe(queue.put_nowait, event)
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
                item = TextDelta(item.text + following.text, item.tokens + following.tokens)
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        # The producer stops by itself once aborted; never leave it writing into a dead loop.
        await done
