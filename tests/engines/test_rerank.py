"""The cross-encoder rerank engine on the tiny random-weight BERT the project writes: one score per
document, in document order, the same for the same pair, and a different query scores differently."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest

from contracts.base import now_ms
from contracts.requests import RerankRequest
from services.workers.engine import Data, Finished
from services.workers.engines.rerank import RerankConfig, RerankEngine
from services.workers.tiny_cross_encoder import ensure_tiny_cross_encoder

DOCS = ("a cat sat on the mat", "stocks fell sharply today", "kittens are young cats")


@pytest.fixture(scope="module")
async def engine() -> AsyncIterator[RerankEngine]:
    running = RerankEngine(RerankConfig("tiny-reranker", ensure_tiny_cross_encoder(), threads=1))
    await running.start()
    yield running
    await running.cleanup()


async def scores(engine: RerankEngine, query: str, documents: tuple[str, ...]) -> tuple[list[float], Finished]:
    request = RerankRequest(
        request_id=f"r{now_ms()}",
        model="tiny-reranker",
        deadline_ms=now_ms() + 60_000,
        query=query,
        documents=documents,
    )
    events = [e async for e in engine.generate(request)]
    final = events[-1]
    assert isinstance(final, Finished)
    data = [e for e in events if isinstance(e, Data)]
    assert [d.content_type for d in data] == ["application/x-float32;dims=1"]
    return np.frombuffer(data[0].data, dtype="<f4").tolist(), final


async def test_one_score_per_document_in_order_and_repeatable(engine: RerankEngine) -> None:
    first, final = await scores(engine, "what is a cat", DOCS)
    assert len(first) == 3 and all(0.0 <= s <= 1.0 for s in first) and len(set(first)) == 3
    assert final.finish_reason == "stop" and final.usage.prompt_tokens > 3 * 4
    alone, _ = await scores(engine, "what is a cat", DOCS[2:])
    assert alone[0] == pytest.approx(first[2], abs=1e-5)  # a document's score does not depend on the others
    other, _ = await scores(engine, "market news", DOCS)
    assert other != first
