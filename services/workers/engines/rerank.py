"""Rerank with a sentence-transformers `CrossEncoder`: each document scored against the query in one
batched forward pass, the scores sent back in document order (the gateway sorts them).

Any cross-encoder folder serves (a BGE, Jina or MS MARCO reranker); with none configured, the tiny
random-weight BERT the project writes (`services/workers/tiny_cross_encoder.py`), so nothing is
downloaded.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from contracts.requests import AnyRequest, Modality, RerankRequest
from contracts.results import Timings, Usage
from services.common.gpu_share import limit_gpu_memory
from services.common.vectors import encode_vectors, vectors_content_type
from services.workers.engine import BlockingEngine, Data, Emit, Finished, check, expect
from services.workers.registry import EngineKind
from services.workers.settings import WorkerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RerankConfig:
    model_id: str
    model_path: Path
    device: str = "cpu"
    max_batch: int = 32
    threads: int | None = None


class RerankEngine(BlockingEngine):
    kind = "cross_encoder"

    def __init__(self, config: RerankConfig) -> None:
        super().__init__(config.model_id, (Modality.rerank,), slots=1)
        self.config = config
        self._model: Any = None

    def load(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import CrossEncoder

        if self.config.threads:
            torch.set_num_threads(self.config.threads)
        limit_gpu_memory(self.config.device, self.gpu_memory_fraction)
        self._model = CrossEncoder(str(self.config.model_path), device=self.config.device, local_files_only=True)
        log.info("loaded %s from %s", self.model_id, self.config.model_path)

    def run(self, request: AnyRequest, cancelled: threading.Event, emit: Emit) -> None:
        rerank = expect(request, RerankRequest, self.kind)
        started = time.perf_counter()
        pairs = [(rerank.query, document) for document in rerank.documents]
        check(cancelled)
        scores = self._model.predict(
            pairs, batch_size=self.config.max_batch, convert_to_numpy=True, show_progress_bar=False
        )
        queries, documents = [rerank.query] * len(rerank.documents), list(rerank.documents)
        tokens = sum(map(len, self._model.tokenizer(queries, documents, truncation=True)["input_ids"]))
        emit(Data(encode_vectors(np.asarray(scores, dtype=np.float32).reshape(-1, 1)), vectors_content_type(1)))
        emit(Finished("stop", Usage(prompt_tokens=tokens), Timings.since(started, None, time.perf_counter())))


def from_settings(settings: WorkerSettings) -> RerankEngine:
    """A cross-encoder of the settings' folder; unset, the tiny random-weight one."""
    from services.workers.tiny_cross_encoder import ensure_tiny_cross_encoder

    return RerankEngine(
        RerankConfig(
            model_id=settings.model_id or "tiny-reranker",
            model_path=settings.model_path or ensure_tiny_cross_encoder(),
            device="cpu" if settings.device == "auto" else settings.device,
            max_batch=settings.max_batch,
            threads=settings.n_threads,
        )
    )


ENGINE = EngineKind(RerankEngine.kind, from_settings)
