"""Upstream servers as catalog models, placed on a host worker and used through the gateway:
one entry points at a running `python -m llama_cpp.server`, another has the host start and manage its
own server process, with the command and arguments from the catalog."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from services.devstack import LocalStack, StackDidNotStart
from services.workers.tiny_model import ensure_tiny_gguf
from tests.upstream_server import ALIAS, LlamaServer

pytestmark = pytest.mark.e2e
NO_EOS = {"2": -100, "4": -100}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    server = LlamaServer().start()
    managed = (
        f"{sys.executable} -m llama_cpp.server --model {{source}} --model_alias managed --host 127.0.0.1 "
        "--port {port}"
    )
    catalog = (
        "models:\n"
        f"  remote-llama: {{engine: openai_upstream, source: '{server.url}', modality: [chat, completion],\n"
        f"                 memory_mb: 1, min_replicas: 1, options: {{upstream_model: {ALIAS}}}}}\n"
        f"  managed-llama: {{engine: openai_upstream, source: '{ensure_tiny_gguf()}', modality: [chat],\n"
        f"                  memory_mb: 40, min_replicas: 1, options: {{upstream_command: '{managed}'}}}}\n"
        "  broken-llama: {engine: openai_upstream, source: tiny, modality: [chat], memory_mb: 1, min_replicas: 1,\n"
        "                 options: {worker_id: stolen}}\n"
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "catalog.yaml"
        path.write_text(catalog)
        env = {
            "MODALMESH_HOST_MEMORY_MB": "100",
            "MODALMESH_SCHEDULER_CATALOG_FILE": str(path),
            "MODALMESH_SCHEDULER_PLACEMENT_INTERVAL_S": "0.5",
        }
        try:
            with LocalStack(data=tmp_path_factory.mktemp("upstream-catalog"), modalities="", env=env) as running:
                yield running
        except StackDidNotStart as exc:
            pytest.fail(f"stack did not start:\n{exc}")
        finally:
            server.stop()


def _state(stack: LocalStack, model: str) -> dict[str, object]:
    listing = httpx.get(f"{stack.url}/v1/admin/models", headers=stack.headers, timeout=10).json()["data"]
    return next(m for m in listing if m["id"] == model)


def _until_running(stack: LocalStack, model: str) -> None:
    import time

    for _ in range(240):
        if _state(stack, model)["state"] == "running":
            return
        time.sleep(0.25)
    pytest.fail(f"{model} never ran: {_state(stack, model)}")


def test_a_catalog_entry_pointing_at_a_running_server_is_served(stack: LocalStack) -> None:
    _until_running(stack, "remote-llama")
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.api_key, max_retries=0)
    stream = client.chat.completions.create(
        model="remote-llama", messages=[{"role": "user", "content": "hi"}], stream=True, max_tokens=6, logit_bias=NO_EOS
    )
    chunks = [c for c in stream]
    assert all(c.model == "remote-llama" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    whole = client.completions.create(model="remote-llama", prompt="Once", max_tokens=5, logit_bias=NO_EOS)
    assert whole.usage is not None and whole.usage.completion_tokens == 5


def test_a_catalog_entry_with_a_command_gets_a_server_of_its_own(stack: LocalStack) -> None:
    _until_running(stack, "managed-llama")
    client = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=stack.api_key, max_retries=0)
    answer = client.chat.completions.create(
        model="managed-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=4, logit_bias=NO_EOS
    )
    assert answer.choices[0].finish_reason == "length" and answer.usage and answer.usage.completion_tokens == 4


def test_options_a_model_may_not_set_leave_it_in_error_with_the_reason(stack: LocalStack) -> None:
    import time

    for _ in range(120):
        broken = _state(stack, "broken-llama")
        if broken["state"] == "error":
            break
        time.sleep(0.25)
    assert broken["state"] == "error" and "worker_id" in str(broken["reason"])
