"""The upstream engine in Ollama's own API (`/api/chat`) against a real `ollama serve` on the tiny GGUF.

Ollama is not on PyPI nor in Debian, so this runs where an `ollama` binary is on PATH and skips
elsewhere; the request and stream shapes are checked everywhere in tests/unit/test_upstream_wires.py.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, Sampling
from services.common.ports import free_port
from services.workers.engine import Finished
from services.workers.engines.upstream import UpstreamConfig, UpstreamEngine
from services.workers.managed import ManagedServer, ProcessState
from services.workers.tiny_model import ensure_tiny_gguf
from tests.engines.aborting import abort_after

OLLAMA = shutil.which("ollama")
pytestmark = pytest.mark.skipif(OLLAMA is None, reason="no `ollama` binary on PATH (not on PyPI or in Debian)")

MODELFILE = """FROM {gguf}
TEMPLATE \"\"\"{{{{ range .Messages }}}}<|im_start|>{{{{ .Role }}}}
{{{{ .Content }}}}<|im_end|>
{{{{ end }}}}<|im_start|>assistant
\"\"\"
PARAMETER stop <|im_end|>
"""


@pytest.fixture(scope="module")
async def ollama(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    port = free_port()
    home = Path(tmp_path_factory.mktemp("ollama"))
    server = ManagedServer(
        f"{OLLAMA} serve",
        port=port,
        health_path="/api/version",
        env={"OLLAMA_HOST": f"127.0.0.1:{port}", "OLLAMA_MODELS": str(home / "models")},
        log_path=home / "ollama.log",
    )
    await server.start()
    try:
        modelfile = home / "Modelfile"
        modelfile.write_text(MODELFILE.format(gguf=ensure_tiny_gguf()))
        create = await asyncio.create_subprocess_exec(
            str(OLLAMA), "create", "tiny", "-f", str(modelfile), env={"OLLAMA_HOST": f"127.0.0.1:{port}"}
        )
        assert await create.wait() == 0
        assert server.state is ProcessState.running
        yield server.base_url
    finally:
        await server.stop()


def _chat(rid: str, max_tokens: int) -> ChatRequest:
    return ChatRequest(
        request_id=rid,
        model="tiny:latest",
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content="Tell me a story"),),
        sampling=Sampling(max_tokens=max_tokens, temperature=0.0, seed=1),
    )


async def test_streams_counts_and_cancels_through_ollamas_own_api(ollama: str) -> None:
    engine = UpstreamEngine(UpstreamConfig(base_url=ollama, api="ollama"))
    await engine.start()
    try:
        assert "tiny:latest" in engine.models
        events = [e async for e in engine.generate(_chat("o1", 8))]
        final = events[-1]
        assert isinstance(final, Finished) and final.usage.prompt_tokens > 0
        assert final.finish_reason in ("length", "stop") and 0 < final.usage.completion_tokens <= 8
        texts, cut = await abort_after(engine, _chat("o2", 2000), deltas=2)
        assert cut is None or cut.finish_reason in ("cancelled", "stop")
        assert len(texts) < 50
        async with httpx.AsyncClient() as client:  # Ollama itself answers again at once
            assert (await client.get(f"{ollama}/api/version")).status_code == 200
    finally:
        await engine.cleanup()
