"""vLLM in process: its V1 async engine (`AsyncLLM`, vLLM 0.10 and later) batches
every request the worker holds on one GPU (or several, with tensor parallelism).

Chat messages are rendered with the model's own chat template (its processor's, for a model that
sees images); images travel as PIL images in the prompt's `multi_modal_data`. Outputs come as deltas
(`RequestOutputKind.DELTA`). A cancel aborts the request inside vLLM. The engine's scheduler stats
(KV-cache use, running and waiting requests) reach the heartbeat through a stat logger of ours.

Installed only where a GPU is: `pip install modalmesh[vllm]` (vLLM brings its own torch).
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, cast

from contracts.capabilities import check_fields
from contracts.errors import EngineError, InvalidRequest
from contracts.requests import AnyRequest, ChatRequest, CompletionRequest, TextRequest
from contracts.results import Timings, TokenLogprob, TopLogprob, Usage
from contracts.workers import BatchLoad
from services.workers.engine import EngineEvent, Finished, StopEvents, TextDelta, TextEngine, expect, until_set
from services.workers.registry import EngineKind
from services.workers.settings import WorkerSettings

log = logging.getLogger(__name__)
_FINISH = {"stop": "stop", "length": "length", "abort": "cancelled"}


@dataclass(frozen=True)
class VllmConfig:
    model_id: str
    model: str  # a model folder, or a hub id where the node may download
    max_num_seqs: int = 64  # requests batched at once: the worker's slots
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None  # share of the GPU it may fill; None: its domain's share, or 0.9
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    images_per_prompt: int = 0  # > 0: a model that sees images, this many per prompt at most
    engine_args: dict[str, Any] = field(default_factory=dict)  # any other AsyncEngineArgs field


def engine_args(c: VllmConfig, domain_share: float | None = None) -> dict[str, Any]:
    """vLLM's AsyncEngineArgs for `c`: the GPU share its domain gives the worker (`domain_share`)
    unless the config names one, and any `engine_args` over the rest (the operator's word wins)."""
    return {
        "model": c.model,
        "served_model_name": [c.model_id],
        "max_num_seqs": c.max_num_seqs,
        "max_model_len": c.max_model_len,
        "tensor_parallel_size": c.tensor_parallel_size,
        "dtype": c.dtype,
        "gpu_memory_utilization": c.gpu_memory_utilization or domain_share or 0.9,
        **({"limit_mm_per_prompt": {"image": c.images_per_prompt}} if c.images_per_prompt else {}),
        **c.engine_args,
    }


class VllmEngine(StopEvents, TextEngine):
    kind = "vllm"

    def __init__(self, config: VllmConfig) -> None:
        self.config = config
        self._llm: Any = None
        self._template: Any = None  # the tokenizer or processor whose chat template renders chats
        StopEvents.__init__(self)
        self._load: BatchLoad | None = None

    @property
    def slots(self) -> int:
        return self.config.max_num_seqs

    @property
    def inputs(self) -> tuple[str, ...]:
        return ("text", "image") if self.config.images_per_prompt else ("text",)

    def batch_load(self) -> BatchLoad | None:
        return self._load

    def health(self) -> tuple[bool, str]:
        if self._llm is not None and getattr(self._llm, "errored", False):
            return False, "vLLM engine died"
        return True, ""

    async def start(self) -> None:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        c = self.config
        args = AsyncEngineArgs(**engine_args(c, self.gpu_memory_fraction))
        self._llm = AsyncLLM.from_engine_args(args, stat_loggers=[_stat_logger(self._record)])
        self._template = await asyncio.to_thread(self._load_template)
        log.info("vLLM serves %s from %s (%d sequences at once)", c.model_id, c.model, c.max_num_seqs)

    def _load_template(self) -> Any:
        if self.config.images_per_prompt:
            from transformers import AutoProcessor

            return AutoProcessor.from_pretrained(self.config.model)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.config.model)

    def _record(self, stats: Any) -> None:
        """From vLLM's output loop: its scheduler's stats after a step."""
        usage = float(getattr(stats, "kv_cache_usage", 0.0))
        self._load = BatchLoad(
            kv_cache_usage=min(1.0, max(0.0, usage)),
            running=int(stats.num_running_reqs),
            waiting=int(stats.num_waiting_reqs),
        )

    def _prompt(self, request: TextRequest, resume_text: str) -> dict[str, Any]:
        """vLLM's prompt: text (a chat rendered by its template, the delivered text appended after a
        failover) and the chat's images."""
        if isinstance(request, CompletionRequest):
            return {"prompt": request.prompt + resume_text}
        chat = cast(ChatRequest, request)
        payloads = [data for m in chat.messages for data in m.images_base64]
        if payloads and not self.config.images_per_prompt:
            raise InvalidRequest(f"{self.config.model_id} cannot see images")
        if len(payloads) > self.config.images_per_prompt > 0:
            raise InvalidRequest(
                f"{self.config.model_id} takes at most {self.config.images_per_prompt} "
                f"image(s) per prompt, not {len(payloads)}"
            )
        images = [_image(data) for data in payloads]
        messages = [
            {"role": m.role, "content": [*({"type": "image"} for _ in m.images), {"type": "text", "text": m.content}]}
            if m.images
            else {"role": m.role, "content": m.content}
            for m in chat.messages
        ]
        text = self._template.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt: dict[str, Any] = {"prompt": text + resume_text}
        if images:
            prompt["multi_modal_data"] = {"image": images if len(images) > 1 else images[0]}
        return prompt

    def _params(self, request: TextRequest) -> Any:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        s = request.sampling
        return SamplingParams(
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            seed=s.seed,
            stop=list(s.stop) or None,
            output_kind=RequestOutputKind.DELTA,
            presence_penalty=s.presence_penalty,
            frequency_penalty=s.frequency_penalty,
            **({"logprobs": s.top_logprobs} if s.logprobs else {}),
            **({"logit_bias": dict(s.logit_bias)} if s.logit_bias else {}),
            **_structured(structured_spec(request)),
        )

    async def generate(self, any_request: AnyRequest, resume_text: str = "") -> AsyncIterator[EngineEvent]:
        request = cast(TextRequest, expect(any_request, (ChatRequest, CompletionRequest), self.kind))
        check_fields(self.kind, request)
        if self._llm is None:
            raise EngineError("the vLLM engine is not started")
        started = time.perf_counter()
        prompt, params = self._prompt(request, resume_text), self._params(request)
        cancelled = self.flag(request.request_id)
        first_at: float | None = None
        finish, prompt_tokens, completion_tokens = "length", 0, 0
        outputs = self._llm.generate(prompt, params, request_id=request.request_id)
        # vLLM's structured decoding cannot resume a grammar mid-reply: a constrained reply is sent
        # whole, so a failover before its end starts it over rather than continuing unconstrained.
        held: list[TextDelta] | None = [] if structured_spec(request) else None
        try:
            async for output in until_set(cancelled, outputs):
                if output is None:
                    finish = "cancelled"
                    break
                prompt_tokens = len(output.prompt_token_ids or ()) or prompt_tokens
                for choice in output.outputs[:1]:
                    completion_tokens += len(choice.token_ids)
                    if choice.text:
                        first_at = first_at or time.perf_counter()
                        delta = TextDelta(
                            choice.text,
                            tokens=max(1, len(choice.token_ids)),
                            logprobs=_logprobs(choice, request.sampling.top_logprobs),
                        )
                        if held is None:
                            yield delta
                        else:
                            held.append(delta)
                    if output.finished:
                        finish = _FINISH.get(choice.finish_reason or "", "stop")
            if held:
                whole = held[0]
                for delta in held[1:]:
                    whole = whole + delta
                yield whole
        finally:
            self.drop(request.request_id)
            await outputs.aclose()  # closing vLLM's generator aborts the request inside the engine
            if finish == "cancelled":
                await self._llm.abort(request.request_id)
        yield Finished(
            finish_reason=finish,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
            timings=Timings.since(started, first_at, time.perf_counter()),
        )

    async def cleanup(self) -> None:
        self.abort_all()
        llm, self._llm = self._llm, None
        if llm is not None:
            llm.shutdown()


def structured_spec(request: TextRequest) -> dict[str, Any]:
    """vLLM's structured-output spec for the request's response_format ({} when free text)."""
    if not isinstance(request, ChatRequest) or request.response_format.type == "text":
        return {}
    if request.response_format.type == "json_object":
        return {"json_object": True}
    return {"json": request.response_format.json_schema or {"type": "object"}}


def _structured(spec: dict[str, Any]) -> dict[str, Any]:
    """The SamplingParams argument for `spec`: `structured_outputs` (vLLM 0.11 and later) or
    `guided_decoding` (0.10)."""
    if not spec:
        return {}
    try:
        from vllm.sampling_params import StructuredOutputsParams

        return {"structured_outputs": StructuredOutputsParams(**spec)}
    except ImportError:
        from vllm.sampling_params import GuidedDecodingParams

        return {"guided_decoding": GuidedDecodingParams(**spec)}


def _logprobs(choice: Any, top: int) -> tuple[TokenLogprob, ...]:
    """vLLM's per-token logprob maps (token id to Logprob, the sampled one among them) in OpenAI's terms."""

    def entry(e: Any) -> TopLogprob:
        text = e.decoded_token or ""
        return TopLogprob(token=text, logprob=e.logprob, bytes=tuple(text.encode()))

    out = []
    for token_id, entries in zip(choice.token_ids, choice.logprobs or (), strict=False):
        own = entry(entries[token_id])
        best = sorted((e for e in entries.values() if e.rank is not None and e.rank <= top), key=lambda e: e.rank)
        out.append(TokenLogprob(token=own.token, logprob=own.logprob, bytes=own.bytes, top=tuple(map(entry, best))))
    return tuple(out)


def _image(payload: str) -> Any:
    """An image's base64 payload (the gateway checked the image) as a PIL image."""
    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(payload))).convert("RGB")


def _stat_logger(record: Any) -> Any:
    """A vLLM stat logger factory that hands each step's scheduler stats to `record`."""
    from vllm.v1.metrics.loggers import StatLoggerBase

    class Heartbeat(StatLoggerBase):
        def __init__(self, vllm_config: Any, engine_index: int = 0) -> None:
            self.engine_index = engine_index

        def record(self, scheduler_stats: Any, iteration_stats: Any, *args: Any, **kwargs: Any) -> None:
            if scheduler_stats is not None:
                record(scheduler_stats)

        def log_engine_initialized(self) -> None:
            pass

    return Heartbeat


def from_settings(settings: WorkerSettings) -> VllmEngine:
    """A vLLM engine of the settings' model folder; unset, the tiny Hugging Face llama."""
    from services.workers.tiny_hf import ensure_tiny_hf

    return VllmEngine(
        VllmConfig(
            model_id=settings.model_id or "tiny-hf-llama",
            model=str(settings.model_path or ensure_tiny_hf()),
            max_num_seqs=settings.slots or 64,
            max_model_len=settings.n_ctx,
            images_per_prompt=settings.images_per_prompt,
            engine_args=settings.engine_args,
        )
    )


ENGINE = EngineKind(VllmEngine.kind, from_settings)
