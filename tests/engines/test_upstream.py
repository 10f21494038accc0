"""The OpenAI-compatible upstream engine against a real server (`python -m llama_cpp.server`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from contracts.base import now_ms
from contracts.errors import EngineError
from contracts.requests import ChatMessage, ChatRequest, CompletionRequest, Sampling
from services.workers.engine import Finished, TextDelta
from services.workers.engines.upstream import UpstreamConfig, UpstreamEngine
from tests.engines.aborting import abort_after
from tests.upstream_server import ALIAS, LlamaServer

NO_EOS = {2: -100.0, 4: -100.0}


@pytest.fixture(scope="module")
def server() -> Iterator[LlamaServer]:
    running = LlamaServer().start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
async def engine(server: LlamaServer) -> AsyncIterator[UpstreamEngine]:
    upstream = UpstreamEngine(UpstreamConfig(base_url=server.url))
    await upstream.start()
    yield upstream
    await upstream.cleanup()


def _chat(rid: str, max_tokens: int, **sampling: object) -> ChatRequest:
    return ChatRequest(
        request_id=rid,
        model=ALIAS,
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content="Tell me a story"),),
        sampling=Sampling(max_tokens=max_tokens, logit_bias=NO_EOS, **sampling),
    )  # type: ignore[arg-type]


async def test_advertises_the_servers_models_and_streams(engine: UpstreamEngine) -> None:
    assert engine.models == (ALIAS,)
    events = [e async for e in engine.generate(_chat("u1", 12, seed=3, temperature=0.0))]
    deltas = [e for e in events if isinstance(e, TextDelta)]
    final = events[-1]
    assert len(deltas) >= 2 and isinstance(final, Finished)
    # llama_cpp.server sends no usage while streaming: the completion is counted from what arrived
    assert final.finish_reason == "length" and final.usage.completion_tokens == 12
    again = [e async for e in engine.generate(_chat("u2", 12, seed=3, temperature=0.0))]
    assert "".join(e.text for e in again if isinstance(e, TextDelta)) == "".join(d.text for d in deltas)


async def test_completions_and_stop_sequences(engine: UpstreamEngine) -> None:
    request = CompletionRequest(
        request_id="u3",
        model=ALIAS,
        deadline_ms=now_ms() + 60_000,
        prompt="Once",
        sampling=Sampling(max_tokens=8, logit_bias=NO_EOS),
    )
    events = [e async for e in engine.generate(request)]
    assert isinstance(events[-1], Finished) and "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_abort_closes_the_upstream_request(engine: UpstreamEngine) -> None:
    texts, final = await abort_after(engine, _chat("u4", 2000), deltas=3)
    assert final is not None and final.finish_reason == "cancelled" and len(texts) < 50
    # the server is free again at once: a new request is answered
    quick = [e async for e in engine.generate(_chat("u5", 3))]
    assert isinstance(quick[-1], Finished) and quick[-1].finish_reason == "length"


async def test_a_configured_name_and_clear_errors(server: LlamaServer) -> None:
    named = UpstreamEngine(UpstreamConfig(base_url=server.url, model_id="mine", upstream_model=ALIAS))
    await named.start()
    try:
        assert named.models == ("mine",)
        events = [e async for e in named.generate(_chat("u6", 3).model_copy(update={"model": "mine"}))]
        assert isinstance(events[-1], Finished)
    finally:
        await named.cleanup()
    wrong_path = UpstreamEngine(UpstreamConfig(base_url=server.url + "/nope"))
    with pytest.raises(EngineError, match="not answering"):
        await wrong_path.start()
    await wrong_path.cleanup()
    nowhere = UpstreamEngine(UpstreamConfig(base_url="http://127.0.0.1:9/v1", connect_timeout_s=0.5))
    with pytest.raises(EngineError, match="not answering"):
        await asyncio.wait_for(nowhere.start(), 10)
    await nowhere.cleanup()


async def test_a_managed_server_is_started_restarted_and_stopped() -> None:
    import os
    import signal
    import sys

    from services.workers.managed import ProcessState
    from services.workers.tiny_model import ensure_tiny_gguf

    command = (
        f"{sys.executable} -m llama_cpp.server --model {ensure_tiny_gguf()} --model_alias {ALIAS} "
        "--host 127.0.0.1 --port {port}"
    )
    engine = UpstreamEngine(UpstreamConfig(base_url="", command=command))
    engine.server.backoff_s = (0.1,)  # type: ignore[union-attr]
    await engine.start()
    server = engine.server
    assert server is not None and server.state is ProcessState.running and engine.health() == (True, "")
    assert engine.models == (ALIAS,)
    first_pid = server.pid
    assert first_pid is not None
    os.kill(first_pid, signal.SIGKILL)  # a crash
    for _ in range(100):  # noticed at once: the worker stops taking work
        if not engine.health()[0]:
            break
        await asyncio.sleep(0.02)
    healthy, detail = engine.health()
    assert not healthy and "exited" in detail
    for _ in range(300):  # and restarted by itself
        if server.state is ProcessState.running and server.pid != first_pid:
            break
        await asyncio.sleep(0.1)
    assert server.state is ProcessState.running and server.restarts == 1
    events = [e async for e in engine.generate(_chat("m1", 4))]
    assert isinstance(events[-1], Finished) and events[-1].finish_reason == "length"
    await engine.cleanup()
    assert server.state is ProcessState.stopped
    with pytest.raises(ProcessLookupError):
        os.kill(server.pid or 0, 0)  # gone, not left running
