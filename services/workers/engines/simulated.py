"""SIMULATION ONLY: an engine that sleeps for as long as a real GPU would take, for benchmarking the
control plane at fleet scale on a machine without those GPUs. Never a serving default: it is used only
where a benchmark asks for it by name, and every model it serves is called `sim-*`.

Speed profiles are single-stream figures for a 7-8B chat model, rounded from public measurements:
- h100: vLLM / TensorRT-LLM on H100 SXM, Llama-2-7B FP16, batch 1 (~140 tok/s decode, ~25 ms TTFT for
  a 512-token prompt) - NVIDIA TensorRT-LLM performance overview and vLLM's published benchmarks.
- rtx3060: llama.cpp CUDA on RTX 3060 12 GB, LLaMA-7B Q4_0 (~55 tok/s, ~150 ms TTFT) - llama.cpp's
  CUDA benchmark thread (ggerganov/llama.cpp discussion #4167).
- orin: llama.cpp on Jetson AGX Orin 64 GB, Llama-2-7B Q4 (~20 tok/s, ~400 ms TTFT) - NVIDIA Jetson AI
  Lab benchmarks.
- cpu: llama.cpp on a 16-core x86 server CPU, LLaMA-7B Q4_0 (~8 tok/s, ~1.5 s TTFT) - llama.cpp CPU
  results in the same discussion.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import cast

from contracts.requests import AnyRequest, ChatRequest, CompletionRequest, Modality, TextRequest
from contracts.results import Timings, Usage
from services.workers.engine import Engine, EngineEvent, Finished, TextDelta, expect


@dataclass(frozen=True)
class SpeedProfile:
    name: str
    gpu_name: str  # as NVML would report it, so the TFLOPS table recognises it
    tokens_per_s: float
    ttft_s: float  # for a 512-token prompt
    slots: int
    vram_mb: float


PROFILES: dict[str, SpeedProfile] = {
    p.name: p
    for p in (
        SpeedProfile("h100", "NVIDIA H100 80GB HBM3", 140.0, 0.025, 8, 81559),
        SpeedProfile("rtx3060", "NVIDIA GeForce RTX 3060", 55.0, 0.15, 2, 12288),
        SpeedProfile("orin", "Jetson AGX Orin", 20.0, 0.40, 1, 65536),
        SpeedProfile("cpu", "", 8.0, 1.5, 1, 0),
    )
}
EMIT_EVERY_S = 0.05  # tokens come out in small batches, as a real stream's chunks do


def prompt_tokens(request: TextRequest) -> int:
    text = " ".join(m.content for m in request.messages) if isinstance(request, ChatRequest) else request.prompt
    return max(1, len(text.split()))


class SimulatedEngine(Engine):
    kind = "simulated"

    def __init__(self, profile: SpeedProfile, model_id: str = "sim-llm", time_scale: float = 1.0) -> None:
        self.profile = profile
        self.model_id = model_id
        self.time_scale = time_scale  # >1 runs faster than real time; figures are reported rescaled
        self._cancelled: set[str] = set()
        self.busy = 0

    @property
    def models(self) -> tuple[str, ...]:
        return (self.model_id,)

    @property
    def modalities(self) -> tuple[Modality, ...]:
        return (Modality.chat, Modality.completion)

    @property
    def slots(self) -> int:
        return self.profile.slots

    async def start(self) -> None:
        pass

    async def generate(self, any_request: AnyRequest, resume_text: str = "") -> AsyncIterator[EngineEvent]:
        request = cast(TextRequest, expect(any_request, (ChatRequest, CompletionRequest), self.kind))
        started = time.perf_counter()
        n_prompt = prompt_tokens(request)
        self.busy += 1
        try:
            await asyncio.sleep(self.profile.ttft_s * (0.5 + n_prompt / 1024) / self.time_scale)
            ttft = time.perf_counter() - started
            produced = 0
            per_batch = max(1, round(self.profile.tokens_per_s * EMIT_EVERY_S))
            while produced < request.sampling.max_tokens and request.request_id not in self._cancelled:
                n = min(per_batch, request.sampling.max_tokens - produced)
                await asyncio.sleep(n / self.profile.tokens_per_s / self.time_scale)
                produced += n
                yield TextDelta(" tok" * n, tokens=n)
            reason = "cancelled" if request.request_id in self._cancelled else "length"
            yield Finished(
                reason,
                Usage(prompt_tokens=n_prompt, completion_tokens=produced),
                Timings(engine_ttft_ms=ttft * 1000, engine_total_ms=(time.perf_counter() - started) * 1000),
            )
        finally:
            self.busy -= 1
            self._cancelled.discard(request.request_id)

    async def abort(self, request_id: str) -> None:
        self._cancelled.add(request_id)

    async def cleanup(self) -> None:
        self._cancelled.clear()
