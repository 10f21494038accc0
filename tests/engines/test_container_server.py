"""A managed upstream server in a Docker container: llama.cpp's server image on the tiny GGUF, started,
killed and restarted, then stopped and removed. Runs where a Docker engine answers; skipped elsewhere."""

from __future__ import annotations

import asyncio
import os

import pytest

from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, Sampling
from services.workers.engine import Finished
from services.workers.engines.upstream import UpstreamConfig, UpstreamEngine
from services.workers.managed import ContainerServer, ProcessState
from services.workers.tiny_model import ensure_tiny_gguf


def _docker_answers() -> bool:
    try:
        import docker

        return bool(docker.from_env().ping())
    except Exception:
        return False


pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(not _docker_answers(), reason="no Docker engine answers on this machine"),
]
IMAGE = os.environ.get("MODALMESH_TEST_LLAMA_IMAGE", "ghcr.io/ggml-org/llama.cpp:server")


async def test_a_container_is_started_restarted_after_a_kill_and_removed() -> None:
    import docker

    gguf = ensure_tiny_gguf()
    engine = UpstreamEngine(
        UpstreamConfig(
            base_url="",
            image=IMAGE,
            image_args=f"-m /models/{gguf.name} --host 0.0.0.0 --port {{port}}",
            container_port=8080,
            volumes=((str(gguf.parent), "/models"),),
        )
    )
    server = engine.server
    assert isinstance(server, ContainerServer)
    server.backoff_s = (0.1,)
    await engine.start()
    try:
        assert server.state is ProcessState.running and engine.models
        first = server.container_id
        docker.from_env().containers.get(first).kill()  # a crash
        for _ in range(600):
            if server.state is ProcessState.running and server.container_id not in (None, first):
                break
            await asyncio.sleep(0.1)
        assert server.restarts == 1 and server.state is ProcessState.running
        request = ChatRequest(
            request_id="c1",
            model=engine.models[0],
            deadline_ms=now_ms() + 60_000,
            messages=(ChatMessage(role="user", content="hi"),),
            sampling=Sampling(max_tokens=4),
        )
        events = [e async for e in engine.generate(request)]
        assert isinstance(events[-1], Finished)
        last = server.container_id
    finally:
        await engine.cleanup()
    assert server.state is ProcessState.stopped
    with pytest.raises(docker.errors.NotFound):
        docker.from_env().containers.get(last)  # stopped and removed, its GPU memory freed
