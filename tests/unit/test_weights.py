"""Model weights: the sha256 manifest, a worker refusing a corrupt or partial model, and `pull`
offline from the hub's cache alone (no hub is ever reached)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from contracts.requests import Modality
from contracts.workers import ModelEntry
from services.workers.loading import entry_settings, trusted_weights
from services.workers.models import main as models_cli
from services.workers.settings import WorkerSettings
from services.workers.weights import WeightsError, copy_shared, manifest_path, pull, verify, write_manifest


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    model = tmp_path / "tiny-model"
    (model / "unet").mkdir(parents=True)
    (model / "model_index.json").write_text('{"_class_name": "Tiny"}')
    (model / "unet" / "weights.bin").write_bytes(bytes(range(256)) * 64)
    return model


def test_a_manifest_lists_every_file_and_checks_out(folder: Path) -> None:
    manifest = write_manifest(folder, "tiny-model")
    assert set(manifest.files) == {"model_index.json", "unet/weights.bin"}
    weights = (folder / "unet" / "weights.bin").read_bytes()
    assert manifest.files["unet/weights.bin"].sha256 == hashlib.sha256(weights).hexdigest()
    assert verify(folder) == manifest
    assert models_cli(["verify", str(folder)]) == 0


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda p: p.write_bytes(p.read_bytes()[:-100]), "partial"),
        (lambda p: p.write_bytes(b"\xff" + p.read_bytes()[1:]), "corrupt"),
        (lambda p: p.unlink(), "missing"),
    ],
)
def test_a_damaged_model_is_refused_naming_the_file(folder: Path, damage, says: str) -> None:  # type: ignore[no-untyped-def]
    write_manifest(folder, "tiny-model")
    damage(folder / "unet" / "weights.bin")
    with pytest.raises(WeightsError, match=f"unet/weights.bin.*{says}|unet/weights.bin is {says}"):
        verify(folder)
    assert models_cli(["verify", str(folder)]) == 2


async def test_a_worker_will_not_load_a_gguf_that_does_not_match_its_manifest(tmp_path: Path) -> None:
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"GGUF" + bytes(4096))
    write_manifest(gguf, "m")
    assert manifest_path(gguf).name == "model.gguf.manifest.json"
    settings = WorkerSettings(model_path=gguf)
    assert (await trusted_weights(settings)).model_path == gguf  # intact: loads
    gguf.write_bytes(b"GGUF" + bytes(4095) + b"\x01")
    with pytest.raises(SystemExit, match=r"refusing to load the model: m: model\.gguf does not match"):
        await trusted_weights(settings)
    assert (await trusted_weights(WorkerSettings(model_path=gguf, verify_weights=False))).model_path == gguf


def test_pull_offline_takes_the_model_from_the_hub_cache_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The hub cache's own layout, as a download would have left it.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--acme--tiny"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"hidden_size": 8}')
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = pull("acme/tiny", dest=tmp_path / "hub")
    assert folder == snapshot
    manifest = verify(folder)
    assert manifest is not None and manifest.source == "hf:acme/tiny@main" and set(manifest.files) == {"config.json"}
    with pytest.raises(WeightsError, match="acme/absent is not in the hub cache"):
        pull("acme/absent", dest=tmp_path / "hub")


async def test_a_model_on_a_shared_path_is_copied_to_local_disk_and_checked(folder: Path, tmp_path: Path) -> None:
    manifest = write_manifest(folder, "acme/tiny")
    copied = await copy_shared(folder, tmp_path / "node")
    assert copied == tmp_path / "node" / "acme--tiny"
    assert verify(copied) == manifest
    assert (copied / "unet" / "weights.bin").read_bytes() == (folder / "unet" / "weights.bin").read_bytes()

    (copied / "unet" / "weights.bin").write_bytes(b"damaged")  # a damaged local copy is replaced
    assert verify(await copy_shared(folder, tmp_path / "node")) == manifest


async def test_a_shared_model_that_is_damaged_or_has_no_manifest_is_refused(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="has no manifest to check a copy against"):
        await copy_shared(folder, tmp_path / "node")
    write_manifest(folder, "acme/tiny")
    weights = folder / "unet" / "weights.bin"
    weights.write_bytes(b"\xff" + weights.read_bytes()[1:])
    with pytest.raises(WeightsError, match=r"unet/weights\.bin does not match its sha256"):
        await copy_shared(folder, tmp_path / "node")
    weights.unlink()
    with pytest.raises(WeightsError, match=r"unet/weights\.bin is missing from"):
        await copy_shared(folder, tmp_path / "node")


async def test_a_catalog_model_on_a_shared_path_is_loaded_from_its_local_copy(tmp_path: Path) -> None:
    shared = tmp_path / "nfs" / "model.gguf"
    shared.parent.mkdir()
    shared.write_bytes(b"GGUF" + bytes(4096))
    write_manifest(shared, "acme/model")
    entry = ModelEntry(id="acme/model", engine="llama_cpp", source=f"shared:{shared}", modality=(Modality.chat,))
    settings = entry_settings(WorkerSettings(models_dir=tmp_path / "local"), entry)
    assert settings.model_copy_from == shared and settings.model_path is None
    loaded = (await trusted_weights(settings)).model_path
    assert loaded == tmp_path / "local" / "acme--model" / "model.gguf" and loaded.read_bytes() == shared.read_bytes()


def test_the_copy_command_copies_and_names_a_damaged_file(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_manifest(folder, "acme/tiny")
    assert models_cli(["copy", str(folder), "--dest", str(tmp_path / "node")]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "node" / "acme--tiny")
    (folder / "model_index.json").write_text('{"_class_name": "Other"}')
    assert models_cli(["copy", str(folder), "--dest", str(tmp_path / "elsewhere")]) == 2
    assert "model_index.json" in capsys.readouterr().err
