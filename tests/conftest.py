"""Shared fixtures: a real NATS server per session (or --nats-url to use a running one), and the whole
stack as processes, started by the same launcher as `make run`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.common.bus import Bus, connect
from services.devstack import LocalStack, StackDidNotStart
from tests.natsserver import NatsServer

# The compose suite builds images and brings a fleet up in Docker: `make test-compose` runs it
# (tests/compose/run.sh), with a Docker engine it sets up where it may; `make test` does not.
collect_ignore = [] if os.environ.get("MODALMESH_COMPOSE_TESTS") else ["compose"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--nats-url", default=None, help="Use this running NATS server instead of starting one.")


@pytest.fixture(scope="session")
def nats_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = request.config.getoption("--nats-url")
    if given:
        yield given
        return
    server = NatsServer(store=Path(tmp_path_factory.mktemp("nats"))).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
async def bus(nats_url: str) -> AsyncIterator[Bus]:
    connection = await connect(nats_url, "test")
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack(data=Path(tmp_path_factory.mktemp("stack")), env={"MODALMESH_DEAD_AFTER_S": "2"})
    try:
        with stack:
            yield stack
    except StackDidNotStart as exc:
        pytest.fail(f"stack did not start:\n{exc}")


@pytest.fixture(scope="session")
def media_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The stack with one worker per media modality (embeddings, images, speech, video, rerank, speech to
    text) and their default models, and a Piper worker with the tiny voice."""
    from services.workers.tiny_voice import ensure_tiny_voice

    stack = LocalStack(
        data=Path(tmp_path_factory.mktemp("media")),
        modalities="embedding,image,speech,video,rerank,transcription",
        env={"MODALMESH_PIPER_VOICE": str(ensure_tiny_voice())},
    )
    try:
        with stack:
            yield stack
    except StackDidNotStart as exc:
        pytest.fail(f"stack did not start:\n{exc}")
