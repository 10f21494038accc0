"""The engine registry: each engine module declares its name and how it is built from settings."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts.requests import Modality
from contracts.workers import ModelEntry
from services.workers.engines.espeak import EspeakEngine
from services.workers.host import ModelHost
from services.workers.registry import build_engine, kinds, names
from services.workers.settings import WorkerSettings


def test_every_engine_module_declares_itself_under_its_engines_kind() -> None:
    assert {"llama_cpp", "vllm", "sentence_transformers", "diffusers", "host", "openai_upstream"} <= set(names())
    for name, kind in kinds().items():
        assert kind.name == name


def test_settings_refuse_an_engine_nothing_declares_and_name_those_that_are() -> None:
    with pytest.raises(ValidationError, match="'nope' is not a known engine") as refused:
        WorkerSettings(engine="nope")
    assert all(name in str(refused.value) for name in names())


def test_an_engine_is_built_from_the_settings_with_its_default_model() -> None:
    engine = build_engine(WorkerSettings(engine="espeak"))
    assert isinstance(engine, EspeakEngine)
    assert engine.models == ("espeak",)
    assert build_engine(WorkerSettings(engine="espeak", model_id="voice")).models == ("voice",)


@pytest.mark.parametrize(
    ("engine", "says"), [("piper", "needs a voice"), ("openai_upstream", "MODALMESH_WORKER_UPSTREAM_URL")]
)
def test_an_engine_whose_settings_lack_what_it_needs_stops_the_worker_saying_what(engine: str, says: str) -> None:
    with pytest.raises(SystemExit, match=says):
        build_engine(WorkerSettings(engine=engine))


def test_the_runner_learns_from_the_interface_whether_an_engine_hosts_catalog_models() -> None:
    fixed = build_engine(WorkerSettings(engine="espeak", slots=3))
    host = build_engine(WorkerSettings(engine="host", memory_mb=512))
    assert isinstance(host, ModelHost)
    assert (fixed.host(), fixed.memory_mb, fixed.held(), fixed.max_unacked) == (None, 0.0, {}, fixed.slots)
    assert (host.host(), host.memory_mb, host.held()) == (host, 512, {})
    assert host.max_unacked > host.slots  # its slots come with its models; the scheduler counts them


async def test_a_host_holds_each_engine_it_loads_to_its_own_gpu_share() -> None:
    host = build_engine(WorkerSettings(engine="host", memory_mb=512))
    assert isinstance(host, ModelHost)
    host.gpu_memory_fraction = 0.25  # as the worker sets it from the host's domain
    voice = ModelEntry(id="voice", modality=(Modality.speech,), engine="espeak", source="tiny")
    assert await host.load(voice)
    try:
        loaded = host.engine_of("voice")
        assert isinstance(loaded, EspeakEngine) and loaded.gpu_memory_fraction == 0.25
    finally:
        await host.cleanup()
