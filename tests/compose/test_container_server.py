"""A managed upstream server in a Docker container: the project's own llama.cpp server image
(modalmesh/llama-server, built by compose's `engines` profile) on the tiny GGUF, started, killed and
restarted with back-off, then stopped and removed. Part of `make test-compose`."""

from __future__ import annotations

import asyncio

import pytest

from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, Sampling
from services.workers.engine import Finished
from services.workers.engines.upstream import UpstreamConfig, UpstreamEngine
from services.workers.managed import ContainerServer, ProcessState
from services.workers.tiny_model import ensure_tiny_gguf
from tests.compose.fleet import ComposeFleet

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The project's llama.cpp server image, built as compose builds it (its wheel stage shared with
    the worker image's)."""
    fleet = ComposeFleet(project="modalmesh-engines", workdir=tmp_path_factory.mktemp("engines"))
    built = fleet.compose("--profile", "engines", "build", "llama-server", check=False)
    assert built.returncode == 0, built.stderr[-4000:]
    return f"modalmesh/llama-server:{fleet.env['MODALMESH_TAG']}"


async def test_a_container_is_started_restarted_after_a_kill_and_removed(image: str) -> None:
    import docker

    gguf = ensure_tiny_gguf()
    gguf.parent.chmod(0o755)  # the server runs as an unprivileged user in its container
    engine = UpstreamEngine(
        UpstreamConfig(
            base_url="",
            image=image,
            image_args=f"--model /models/{gguf.name} --host 0.0.0.0 --port {{port}}",
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
