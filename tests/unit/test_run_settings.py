"""`make run`'s settings (services/run.py's RunSettings) and the cache's, read from MODALMESH_*
through settings classes, and the worker programs they make."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.run import RunSettings, programs
from services.workers.tiny_model import cache_dir


def test_extra_workers_come_from_the_settings_each_with_its_engine_and_own_metrics_port(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODALMESH_PIPER_VOICE", "/voices/en.onnx")
    monkeypatch.setenv("MODALMESH_HOST_MEMORY_MB", "2048")
    monkeypatch.setenv("MODALMESH_WORKER_SLOTS", "3")
    progs = {p.name: p for p in programs(tmp_path, 8000, 4222, "127.0.0.1", 9101, workers=2, modalities=("text",))}
    workers = sorted(name for name in progs if name.startswith("worker-"))
    assert workers == ["worker-host-1", "worker-llm-1", "worker-llm-2", "worker-speech-piper"]
    assert progs["worker-llm-2"].env["MODALMESH_WORKER_SLOTS"] == "3"
    assert "MODALMESH_WORKER_ENGINE" not in progs["worker-llm-1"].env  # the workers' default engine
    piper = progs["worker-speech-piper"].env
    assert (piper["MODALMESH_WORKER_ENGINE"], piper["MODALMESH_WORKER_MODEL_PATH"]) == ("piper", "/voices/en.onnx")
    assert progs["worker-host-1"].env["MODALMESH_WORKER_MEMORY_MB"] == "2048"
    ports = [p.env["MODALMESH_METRICS_PORT"] for p in progs.values() if "MODALMESH_METRICS_PORT" in p.env]
    assert len(ports) == len(set(ports))
    assert all(progs[w].env["MODALMESH_WORKER_LOGS_DIR"] == str(tmp_path / "logs") for w in workers)


def test_no_extra_workers_without_their_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODALMESH_PIPER_VOICE", "MODALMESH_HOST_MEMORY_MB", "MODALMESH_UPSTREAM_URL"):
        monkeypatch.delenv(name, raising=False)
    names = [p.name for p in programs(tmp_path, 8000, 4222, "127.0.0.1", 9101, modalities=("text",))]
    assert [n for n in names if n.startswith("worker-")] == ["worker-llm-1"]


def test_a_bad_setting_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALMESH_HOST_MEMORY_MB", "-5")
    with pytest.raises(ValueError, match="host_memory_mb"):
        RunSettings()


def test_the_tiny_models_cache_follows_modalmesh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODALMESH_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path / "models"
    monkeypatch.delenv("MODALMESH_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "modalmesh" / "models"
