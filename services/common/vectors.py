"""Embedding vectors on the bus: little-endian float32 rows in a DataChunk, the dims in its type."""

from __future__ import annotations

import base64
from collections.abc import Iterable

import numpy as np

from contracts.results import AnyChunk, DataChunk


def vectors_content_type(dims: int) -> str:
    return f"application/x-float32;dims={dims}"


def encode_vectors(vectors: np.ndarray) -> bytes:
    return np.ascontiguousarray(vectors, dtype="<f4").tobytes()


def collect_vectors(chunks: Iterable[AnyChunk]) -> list[np.ndarray]:
    """The vectors the data chunks among `chunks` hold, in input order."""
    rows: dict[int, np.ndarray] = {}
    for chunk in chunks:
        if isinstance(chunk, DataChunk) and chunk.content_type.startswith("application/x-float32"):
            dims = int(chunk.content_type.rsplit("dims=", 1)[1])
            block = np.frombuffer(base64.b64decode(chunk.data_b64), dtype="<f4").reshape(-1, dims)
            rows.update({chunk.index + i: row for i, row in enumerate(block)})
    return [rows[i] for i in sorted(rows)]
