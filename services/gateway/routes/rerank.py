"""`POST /v1/rerank` in the Cohere and Jina shape that Xinference, GPUStack and LocalAI serve: documents
ordered by their relevance to a query, each with its index in the request and its score."""

from __future__ import annotations

from contextlib import aclosing
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from contracts.errors import EngineError
from contracts.requests import Priority, RerankRequest
from contracts.results import FinalChunk
from services.common.vectors import collect_vectors
from services.gateway.intake import Take, chunks_of

router = APIRouter(prefix="/v1", tags=["rerank"])


class Document(BaseModel):
    model_config = ConfigDict(extra="ignore")

    text: str = Field(min_length=1)


class RerankBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    query: str = Field(min_length=1, max_length=32_000)
    documents: list[str | Document] = Field(min_length=1, max_length=1000)
    top_n: int | None = Field(default=None, ge=1, description="Only the best this many (all when unset).")
    return_documents: bool = Field(default=False, description="Include each document's text in its result.")
    priority: Priority | None = None

    @field_validator("documents")
    @classmethod
    def _not_empty(cls, value: list[str | Document]) -> list[str | Document]:
        if any(isinstance(d, str) and not d for d in value):
            raise ValueError("documents must not be empty")
        return value

    @property
    def texts(self) -> tuple[str, ...]:
        return tuple(d if isinstance(d, str) else d.text for d in self.documents)

    def to_contract(self, request_id: str, deadline_ms: int) -> RerankRequest:
        return RerankRequest(
            request_id=request_id, model=self.model, deadline_ms=deadline_ms, query=self.query, documents=self.texts
        )


@router.post("/rerank")
async def rerank(body: RerankBody, take: Take) -> dict[str, Any]:
    request = body.to_contract(take.request_id("rerank"), take.deadline_ms)
    async with aclosing(chunks_of(*await take.submit(request, body.priority))) as chunks:
        received = [chunk async for chunk in chunks]
    scores = [float(v[0]) for v in collect_vectors(received)]
    if len(scores) != len(request.documents):
        raise EngineError(f"the engine scored {len(scores)} of {len(request.documents)} documents")
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[: body.top_n]
    results = [
        {
            "index": i,
            "relevance_score": scores[i],
            **({"document": {"text": request.documents[i]}} if body.return_documents else {}),
        }
        for i in order
    ]
    final = received[-1]
    tokens = final.usage.prompt_tokens if isinstance(final, FinalChunk) else 0
    return {
        "id": request.request_id,
        "object": "rerank",
        "model": final.model or body.model,
        "results": results,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "meta": {"billed_units": {"search_units": 1}, "tokens": {"input_tokens": tokens, "output_tokens": 0}},
    }
