"""Model weights a worker can trust: a sha256 manifest written when they are fetched, checked before
they are loaded, and copies for nodes that lack them: from the fleet's NATS object store (small
models) or from a shared path every node sees, such as an NFS mount (large ones).

A model is a file (a GGUF) or a folder (a diffusers pipeline, a sentence-transformers model). Its
manifest lists every file with its size and sha256: `<folder>/modalmesh-manifest.json`, or
`<file>.manifest.json` beside a single file. A file that is missing, shorter or different is
refused with its name, before any engine reads it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
from collections.abc import Awaitable, Callable
from io import BufferedWriter
from pathlib import Path

from nats.js.api import ObjectMeta
from pydantic import BaseModel, ConfigDict, Field

from contracts import streams
from contracts.errors import ModalMeshError
from services.common.bus import Bus

log = logging.getLogger(__name__)
FOLDER_MANIFEST = "modalmesh-manifest.json"
CHUNK = 1 << 20
Progress = Callable[[str, int, int], None]  # (what, done bytes, total bytes)


class WeightsError(ModalMeshError):
    """Weights that are missing, partial or not the ones the manifest names."""


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    size: int = Field(ge=0)
    sha256: str


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    model_id: str
    source: str = Field(default="", description="Where the files came from: a hub id and revision, a path.")
    files: dict[str, FileEntry] = Field(description="Path inside the model (the file's own name for a single file).")

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files.values())


def manifest_path(model: Path) -> Path:
    return model / FOLDER_MANIFEST if model.is_dir() else model.with_name(model.name + ".manifest.json")


def _root(model: Path) -> Path:
    """The folder the manifest's paths are relative to."""
    return model if model.is_dir() else model.parent


def _files(model: Path) -> dict[str, Path]:
    if model.is_file():
        return {model.name: model}
    return {
        p.relative_to(model).as_posix(): p
        for p in sorted(model.rglob("*"))
        if p.is_file() and p.name != FOLDER_MANIFEST and not p.name.startswith(".")
    }


def sha256_of(path: Path, progress: Progress | None = None) -> str:
    digest, done, total = hashlib.sha256(), 0, path.stat().st_size
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
            done += len(block)
            if progress is not None:
                progress(path.name, done, total)
    return digest.hexdigest()


def write_manifest(model: Path, model_id: str, source: str = "") -> Manifest:
    """Hash every file of `model` and write its manifest beside it."""
    files = {name: FileEntry(size=p.stat().st_size, sha256=sha256_of(p)) for name, p in _files(model).items()}
    if not files:
        raise WeightsError(f"no files under {model}")
    manifest = Manifest(model_id=model_id, source=source or str(model), files=files)
    manifest_path(model).write_text(manifest.model_dump_json(indent=1) + "\n")
    return manifest


def read_manifest(model: Path) -> Manifest | None:
    path = manifest_path(model)
    if not path.is_file():
        return None
    try:
        return Manifest.model_validate_json(path.read_text())
    except ValueError as exc:
        raise WeightsError(f"unreadable manifest {path}: {exc}") from None


def verify(model: Path, progress: Progress | None = None) -> Manifest | None:
    """Check `model` against its manifest; None when it has none. Sizes first (a partial download
    fails at once), then hashes."""
    manifest = read_manifest(model)
    if manifest is None:
        return None
    _check(manifest, _root(model), list(manifest.files), progress)
    return manifest


def _check(manifest: Manifest, root: Path, names: list[str], progress: Progress | None = None) -> None:
    """Raise WeightsError unless each of `names` under `root` matches `manifest`."""
    for name in names:
        path, entry = root / name, manifest.files[name]
        if not path.is_file():
            raise WeightsError(f"{manifest.model_id}: {name} is missing from {root}")
        if (size := path.stat().st_size) != entry.size:
            raise WeightsError(
                f"{manifest.model_id}: {name} has {size} bytes, the manifest says {entry.size} "
                "(a partial or changed file)"
            )
    for name in names:
        if sha256_of(root / name, progress) != manifest.files[name].sha256:
            raise WeightsError(f"{manifest.model_id}: {name} does not match its sha256 in the manifest (corrupt)")


def pull(repo_id: str, dest: Path | None = None, revision: str | None = None, allow: list[str] | None = None) -> Path:
    """Download a model from the Hugging Face hub (resuming partial files) into the hub's cache, or
    take it from the cache alone when `HF_HUB_OFFLINE=1`; then write and check its manifest.
    Returns the model's folder."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    offline = os.environ.get("HF_HUB_OFFLINE", "") in ("1", "true", "yes")
    try:
        folder = Path(
            snapshot_download(
                repo_id, revision=revision, cache_dir=dest, allow_patterns=allow, local_files_only=offline
            )
        )
    except LocalEntryNotFoundError:
        raise WeightsError(
            f"{repo_id} is not in the hub cache, and offline mode (HF_HUB_OFFLINE) forbids downloading it"
        ) from None
    source = f"hf:{repo_id}@{revision or 'main'}"
    if read_manifest(folder) is None:
        write_manifest(folder, repo_id, source)
    verify(folder)
    return folder


async def publish(bus: Bus, model: Path, model_id: str, progress: Progress | None = None) -> Manifest:
    """Put `model` (with its manifest, written if it has none) into the fleet's object store."""
    manifest = read_manifest(model) or write_manifest(model, model_id)
    verify(model)
    store = await bus.js.object_store(streams.OBJ_MODELS)
    root = _root(model)
    for name, entry in manifest.files.items():
        with (root / name).open("rb") as f:
            await store.put(f"{model_id}/{name}", f, meta=ObjectMeta(name=f"{model_id}/{name}"))
        if progress is not None:
            progress(name, entry.size, entry.size)
    await store.put(f"{model_id}/{FOLDER_MANIFEST}", manifest.model_dump_json().encode())
    return manifest


async def fetch(bus: Bus, model_id: str, dest: Path, progress: Progress | None = None) -> Path:
    """Copy a model the fleet holds into `dest/<model id>/` and check it; a complete, matching copy
    already there is kept. Returns the folder (or the single file for a one-file model)."""
    store = await bus.js.object_store(streams.OBJ_MODELS)
    try:
        manifest = Manifest.model_validate_json((await store.get(f"{model_id}/{FOLDER_MANIFEST}")).data or b"")
    except Exception as exc:  # nats' NotFound, or a manifest that does not decode
        raise WeightsError(f"the fleet holds no model {model_id!r} ({type(exc).__name__})") from None

    async def copy(name: str, into: BufferedWriter) -> None:
        await store.get(f"{model_id}/{name}", writeinto=into)

    return await _install(manifest, _local(dest, model_id), copy, progress)


async def copy_shared(model: Path, dest: Path, progress: Progress | None = None) -> Path:
    """Copy a model from a shared path every node sees (an NFS mount) into `dest/<model id>/` and
    check the copy against the manifest the shared model carries; a complete, matching copy already
    there is kept. Engines then read local disk, not the network. Returns what `fetch` does."""
    manifest = read_manifest(model)
    if manifest is None:
        raise WeightsError(
            f"{model} has no manifest to check a copy against (write one with "
            "`python -m services.workers.models manifest`)"
        )
    root = _root(model)

    async def copy(name: str, into: BufferedWriter) -> None:
        def copy_file() -> None:
            with (root / name).open("rb") as source:
                shutil.copyfileobj(source, into, CHUNK)

        try:
            await asyncio.to_thread(copy_file)
        except FileNotFoundError:
            raise WeightsError(f"{manifest.model_id}: {name} is missing from {root}") from None

    return await _install(manifest, _local(dest, manifest.model_id), copy, progress)


async def _install(
    manifest: Manifest, folder: Path, copy: Callable[[str, BufferedWriter], Awaitable[None]], progress: Progress | None
) -> Path:
    """Write each file of `manifest` that `folder` lacks (or holds damaged) through `copy`, by way of
    a `.partial` file, then check what was written (the rest was checked just before). Hashing runs
    in a thread: a host worker loading one model keeps serving (and heartbeating for) the others."""
    written = await asyncio.to_thread(_to_copy, manifest, folder)
    for name in written:
        partial = folder / f"{name}.partial"
        with partial.open("wb") as f:
            await copy(name, f)
        partial.replace(folder / name)
        if progress is not None:
            progress(name, manifest.files[name].size, manifest.files[name].size)
    await asyncio.to_thread(_check, manifest, folder, written)
    return folder / next(iter(manifest.files)) if _single(manifest) else folder


def _local(dest: Path, model_id: str) -> Path:
    """This node's folder for a fetched or copied model."""
    return dest / model_id.replace("/", "--")


def _to_copy(manifest: Manifest, folder: Path) -> list[str]:
    """Make `folder` ready for `manifest`'s files; the names of those it lacks or holds damaged."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FOLDER_MANIFEST).write_text(manifest.model_dump_json(indent=1) + "\n")
    names = []
    for name, entry in manifest.files.items():
        target = folder / name
        if not (target.is_file() and target.stat().st_size == entry.size and sha256_of(target) == entry.sha256):
            target.parent.mkdir(parents=True, exist_ok=True)
            names.append(name)
    return names


def _single(manifest: Manifest) -> bool:
    """A one-file model (a GGUF) is loaded as that file, not as its folder."""
    return len(manifest.files) == 1 and next(iter(manifest.files)).endswith(".gguf")
