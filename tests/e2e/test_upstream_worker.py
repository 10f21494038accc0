"""A worker whose engine is a running OpenAI-compatible server (`python -m llama_cpp.server`), used
through the gateway like any other model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from services.devstack import LocalStack, StackDidNotStart
from tests.upstream_server import ALIAS, LlamaServer

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    server = LlamaServer().start()
    try:
        with LocalStack(
            data=Path(tmp_path_factory.mktemp("upstream")), modalities="", env={"MODALMESH_UPSTREAM_URL": server.url}
        ) as running:
            yield running
    except StackDidNotStart as exc:
        pytest.fail(f"stack did not start:\n{exc}")
    finally:
        server.stop()


def test_the_servers_model_is_served_through_the_gateway(stack: LocalStack) -> None:
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.api_key, max_retries=0)
    [model] = [m for m in client.models.list().model_dump()["data"] if m["id"] == ALIAS]
    assert model["live"] and model["engine"] == "openai_upstream"
    stream = client.chat.completions.create(
        model=ALIAS,
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        max_tokens=10,
        logit_bias={"2": -100, "4": -100},
    )
    pieces = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len([p for p in pieces if p]) >= 2
    whole = client.completions.create(model=ALIAS, prompt="Once", max_tokens=5, logit_bias={"2": -100, "4": -100})
    assert whole.choices[0].text and whole.usage and whole.usage.completion_tokens == 5
