"""The catalog file: what it may say, memory estimates, and the entries it becomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.requests import Modality, Priority
from services.scheduler.catalog import Catalog, estimate_memory_mb

CATALOG = """\
models:
  big-chat:
    engine: llama_cpp
    source: /models/big.gguf
    modality: [chat, completion]
    params_b: 7.0
    quantization: q4_k_m
    context: 4096
    priority: 9
    min_replicas: 1
    max_replicas: 2
    node_labels: {gpu: "true"}
    fallback: small-chat
  small-chat:
    engine: llama_cpp
    source: /models/small.gguf
    modality: [chat]
    memory_mb: 900
  painter:
    engine: diffusers
    source: /models/sd-turbo
    modality: [image]
"""


def test_memory_is_weights_at_the_quantization_plus_a_kv_cache_plus_a_margin() -> None:
    # 7e9 parameters at 0.61 bytes (q4_k_m) = 4072 MiB; 0.07 MB x 7 x 4096 tokens = 2007 MB; x 1.1.
    assert estimate_memory_mb(7.0, "q4_k_m", 4096) == pytest.approx((4072.3 + 2007.0) * 1.1, rel=1e-3)
    assert estimate_memory_mb(1.0, "f16", 1) > estimate_memory_mb(1.0, "q8_0", 1) > estimate_memory_mb(1.0, "q4_0", 1)
    with pytest.raises(ValueError, match="unknown quantization"):
        estimate_memory_mb(7.0, "q9_z")


def test_the_file_becomes_declared_entries_with_defaults_filled_in(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG)
    entries = Catalog.read(path).entries()
    big, small, painter = entries["big-chat"], entries["small-chat"], entries["painter"]
    assert big.declared and big.priority == 9 and big.fallback == "small-chat" and big.node_labels == {"gpu": "true"}
    assert big.memory_mb == estimate_memory_mb(7.0, "q4_k_m", 4096) and small.memory_mb == 900
    assert big.domain == "llm" and big.priority_class is Priority.interactive
    assert painter.domain == "image" and painter.priority_class is Priority.batch and painter.memory_mb is None
    assert painter.modality == (Modality.image,) and painter.min_replicas == 0 and painter.max_replicas == 1


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (lambda t: t.replace("fallback: small-chat", "fallback: nowhere"), "fallback 'nowhere'"),
        (lambda t: t.replace("min_replicas: 1", "min_replicas: 3"), "min_replicas is above"),
        (lambda t: t.replace("priority: 9", "priority: 11"), "less than or equal to 10"),
        (lambda t: t.replace("engine: diffusers", "engine: diffusers\n    colour: blue"), "colour"),
    ],
)
def test_a_wrong_catalog_is_refused_with_the_reason(tmp_path: Path, edit, says: str) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "catalog.yaml"
    path.write_text(edit(CATALOG))
    with pytest.raises(ValueError, match=says):
        Catalog.read(path)
