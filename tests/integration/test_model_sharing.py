"""A node that lacks a model gets it from the fleet: published into the NATS object store by one
node, fetched and checked by another. A real NATS server and the project's tiny GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.bus import Bus
from services.workers.tiny_model import ensure_tiny_gguf
from services.workers.weights import WeightsError, fetch, publish, sha256_of, verify


async def test_a_published_model_is_fetched_whole_and_checked(bus: Bus, tmp_path: Path) -> None:
    original = tmp_path / "src" / "tiny.gguf"
    original.parent.mkdir()
    original.write_bytes(ensure_tiny_gguf().read_bytes())
    seen: list[str] = []
    manifest = await publish(bus, original, "share-test/tiny", lambda name, done, total: seen.append(name))
    assert seen == ["tiny.gguf"] and manifest.total_bytes == original.stat().st_size

    fetched = await fetch(bus, "share-test/tiny", tmp_path / "node-b")
    assert fetched == tmp_path / "node-b" / "share-test--tiny" / "tiny.gguf"  # a GGUF loads as its file
    assert sha256_of(fetched) == sha256_of(original)
    assert verify(fetched.parent) == manifest

    fetched.write_bytes(b"damaged")  # a damaged local copy is replaced on the next fetch
    again = await fetch(bus, "share-test/tiny", tmp_path / "node-b")
    assert sha256_of(again) == sha256_of(original)


async def test_fetching_a_model_the_fleet_lacks_says_so(bus: Bus, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="the fleet holds no model 'nobody/has-this'"):
        await fetch(bus, "nobody/has-this", tmp_path)
