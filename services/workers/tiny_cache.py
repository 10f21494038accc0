"""The cache folder of a tiny model written on first use, atomically: a worker starting beside the
writer never sees a half-written folder, and two writers at once leave one copy."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from services.workers.tiny_model import cache_dir


def cached_folder(name: str, write: Callable[[Path], None], marker: str = "config.json") -> Path:
    """`<cache>/<name>`, built by `write` into a temporary folder and moved into place, unless
    `marker` shows it is there already."""
    folder = cache_dir() / name
    if (folder / marker).is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        write(building)
        try:
            os.replace(building, folder)
        except OSError:  # another process finished first: its copy is the same
            pass
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return folder
