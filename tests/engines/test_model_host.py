"""The model host with the real tiny llama.cpp model: each model's life (starting, running, stopping,
stopped, preempted, error) with its reason, the memory it holds, and work cut off by an unload
handed back rather than lost."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, Modality, Sampling
from contracts.workers import ModelEntry, ModelState
from services.workers.engine import BackendLost, Engine, Finished, TextDelta
from services.workers.host import ModelHost
from services.workers.loading import load_entry
from services.workers.settings import WorkerSettings

NO_EOS = {2: -100.0, 4: -100.0}  # keep the random model talking until max_tokens


def _entry(model: str, memory_mb: float = 40.0, source: str = "tiny") -> ModelEntry:
    return ModelEntry(
        id=model, modality=(Modality.chat,), engine="llama_cpp", source=source, memory_mb=memory_mb, declared=True
    )


def _chat(model: str, rid: str, max_tokens: int) -> ChatRequest:
    return ChatRequest(
        request_id=rid,
        model=model,
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content="Tell me a story"),),
        sampling=Sampling(max_tokens=max_tokens, logit_bias=NO_EOS, seed=1),
    )


class GatedLoader:
    """The real loader, held at the gate until the test opens it, so `starting` can be seen."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.settings = WorkerSettings(worker_id="host-test", n_ctx=512)

    async def __call__(self, entry: ModelEntry) -> Engine:
        await self.gate.wait()
        return await load_entry(self.settings, entry)


async def test_a_model_goes_from_starting_to_running_and_to_stopped_or_preempted() -> None:
    loader = GatedLoader()
    host = ModelHost(100, loader, drain_timeout_s=1)
    try:
        loading = asyncio.create_task(host.load(_entry("a"), reason="demand"))
        await asyncio.sleep(0.05)
        starting = host.held()["a"]
        assert starting.state is ModelState.starting and starting.reason == "demand" and starting.memory_mb == 40
        assert host.models == ()  # not served until it has loaded
        loader.gate.set()
        assert await loading
        running = host.held()["a"]
        assert running.state is ModelState.running and running.since_ms >= starting.since_ms
        assert host.models == ("a",)
        assert not await host.load(_entry("too-big", memory_mb=70))  # 40 of 100 MB are taken
        assert "too-big" not in host.held()

        assert await host.load(_entry("b"), reason="warm")
        await host.unload("a", reason="preempted", by="high")
        await host.unload("b", reason="idle")
        held = host.held()
        assert (held["a"].state, held["a"].reason) == (ModelState.preempted, "preempted by high")
        assert held["a"].memory_mb == 0
        assert (held["b"].state, held["b"].reason) == (ModelState.stopped, "idle")
        assert host.models == ()
    finally:
        await host.cleanup()


async def test_a_model_that_fails_to_load_is_in_error_with_the_reason(tmp_path: Path) -> None:
    loader = GatedLoader()
    loader.gate.set()
    host = ModelHost(100, loader)
    with pytest.raises((SystemExit, Exception)):
        await host.load(_entry("broken", source=str(tmp_path / "missing.gguf")))
    broken = host.held()["broken"]
    assert broken.state is ModelState.error and broken.reason and broken.memory_mb == 0
    assert host.models == ()


async def test_work_still_running_at_the_drain_timeout_is_handed_back() -> None:
    loader = GatedLoader()
    loader.gate.set()
    host = ModelHost(100, loader, drain_timeout_s=0.0)  # no grace: what runs is cut at once
    try:
        assert await host.load(_entry("a"))
        deltas = 0
        answering = asyncio.Event()

        async def consume() -> None:
            nonlocal deltas
            async for event in host.generate(_chat("a", "long-1", max_tokens=100_000)):
                deltas += isinstance(event, TextDelta)
                answering.set()

        running = asyncio.create_task(consume())
        await answering.wait()
        await host.unload("a", reason="preempted", by="high")
        with pytest.raises(BackendLost, match="unloaded here mid-request"):
            await running
        assert deltas > 0 and host.held()["a"].state is ModelState.preempted
        with pytest.raises(BackendLost, match="no longer loaded"):  # what comes after is handed back at once
            async for _ in host.generate(_chat("a", "late-1", max_tokens=4)):
                pass
    finally:
        await host.cleanup()


async def test_an_answer_longer_than_the_context_ends_at_the_context_with_length() -> None:
    loader = GatedLoader()
    loader.gate.set()
    host = ModelHost(100, loader)
    try:
        assert await host.load(_entry("a"))
        events = [e async for e in host.generate(_chat("a", "huge-1", max_tokens=100_000))]
        final = events[-1]
        assert isinstance(final, Finished) and final.finish_reason == "length"
        assert final.usage.prompt_tokens + final.usage.completion_tokens == loader.settings.n_ctx
    finally:
        await host.cleanup()
