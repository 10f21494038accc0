"""llama.cpp through llama-cpp-python: any GGUF model, streamed token by token on CPU or GPU.

llama-cpp-python's `Llama` runs one generation at a time, so the engine keeps one `Llama` per slot.
Chat messages are rendered with the model's own chat template (GGUF `tokenizer.chat_template`).
"""

from __future__ import annotations

import asyncio
import codecs
import json
import logging
import secrets
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from contracts.capabilities import check_fields, fields_in_use
from contracts.errors import EngineError, InvalidRequest
from contracts.requests import AnyRequest, ChatRequest, CompletionRequest, TextRequest
from contracts.results import Timings, TokenLogprob, TopLogprob, Usage
from services.workers import constrain
from services.workers.chat_format import openai_messages, openai_tools
from services.workers.engine import (
    CancelFlags,
    EngineEvent,
    Finished,
    TextDelta,
    TextEngine,
    expect,
    iterate_in_thread,
)
from services.workers.registry import EngineKind
from services.workers.settings import WorkerSettings
from services.workers.stops import StopScanner

log = logging.getLogger(__name__)

_FALLBACK_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@dataclass(frozen=True)
class LlamaCppConfig:
    model_id: str
    model_path: Path
    slots: int = 1
    n_ctx: int = 2048
    n_threads: int | None = None
    n_gpu_layers: int = 0
    clip_model_path: Path | None = None  # a vision projector (mmproj GGUF): the model sees images


@dataclass(frozen=True)
class _Prompt:
    tokens: list[int]
    stop: tuple[str, ...]
    constraint: constrain.Constraint = constrain.FREE_TEXT
    resumed: tuple[int, ...] = ()  # the delivered answer's tokens, which a grammar must have seen
    may_call: bool = False  # tools offered and not required: the reply may turn out to be a call


class LlamaCppEngine(CancelFlags, TextEngine):
    kind = "llama_cpp"

    def __init__(self, config: LlamaCppConfig) -> None:
        self.config = config
        self._instances: list[Any] = []
        self._free: asyncio.Queue[Any] = asyncio.Queue()
        CancelFlags.__init__(self)
        self._formatter: Any = None
        self._native_tools = False
        # One long-lived thread per slot: starting a thread per request costs time before the first token.
        self._threads = ThreadPoolExecutor(max_workers=config.slots, thread_name_prefix="llama")

    @property
    def slots(self) -> int:
        return self.config.slots

    @property
    def inputs(self) -> tuple[str, ...]:
        return ("text", "image") if self.config.clip_model_path else ("text",)

    async def start(self) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter, MTMDChatHandler

        for path in (self.config.model_path, self.config.clip_model_path):
            if path is not None and not path.is_file():
                raise EngineError(f"model file not found: {path}")
        for _ in range(self.config.slots):
            # llama.cpp's multimodal library, with the model's own chat template, for messages with images.
            vision = (
                MTMDChatHandler(
                    clip_model_path=str(self.config.clip_model_path),
                    verbose=False,
                    use_gpu=self.config.n_gpu_layers != 0,
                )
                if self.config.clip_model_path
                else None
            )
            llm = await asyncio.to_thread(
                Llama,
                model_path=str(self.config.model_path),
                n_ctx=self.config.n_ctx,
                n_threads=self.config.n_threads,
                n_gpu_layers=self.config.n_gpu_layers,
                chat_handler=vision,
                verbose=False,
            )
            self._instances.append(llm)
            self._free.put_nowait(llm)
        first = self._instances[0]
        template = first.metadata.get("tokenizer.chat_template") or _FALLBACK_TEMPLATE
        self._native_tools = "tool_calls" in template and "tools" in template
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=first.detokenize([first.token_eos()], special=True).decode(errors="ignore"),
            bos_token=first.detokenize([first.token_bos()], special=True).decode(errors="ignore"),
            stop_token_ids=[first.token_eos()],
        )
        log.info("loaded %s from %s in %d slot(s)", self.config.model_id, self.config.model_path, self.slots)

    def _prompt(self, llm: Any, request: TextRequest, resume_text: str) -> _Prompt:
        rule = constrain.FREE_TEXT
        may_call = False
        if isinstance(request, ChatRequest):
            tools = openai_tools(request.tools) if request.calls_tools and self._native_tools else None
            messages = constrain.template_messages(request, self._native_tools)
            rendered = self._formatter(messages=messages, tools=tools)
            text, stop = rendered.prompt, tuple(_as_list(rendered.stop))
            rule = constrain.constraint(request)
            beyond = constrain.unenforced(rule.schema)
            if beyond:
                field = "tools" if rule.tool_reply else "response_format"
                raise InvalidRequest(
                    f"`{request.model}` (llama.cpp) cannot enforce these JSON schema keywords: {', '.join(beyond)}",
                    param=field,
                )
            may_call = request.calls_tools and not rule.tool_reply
        else:
            text, stop = request.prompt, ()
        tokens = llm.tokenize((text + resume_text).encode(), add_bos=True, special=True)
        # A resumed answer may fill the context with what it said already: it ends there (in _run).
        if len(tokens) >= self.config.n_ctx and not resume_text:
            raise EngineError(f"prompt of {len(tokens)} tokens exceeds the context of {self.config.n_ctx}")
        resumed = _resumed(llm, text, tokens, resume_text) if resume_text and rule.schema is not None else ()
        return _Prompt(
            tokens=tokens, stop=tuple(request.sampling.stop) + stop, constraint=rule, resumed=resumed, may_call=may_call
        )

    async def generate(self, any_request: AnyRequest, resume_text: str = "") -> AsyncIterator[EngineEvent]:
        request = cast(TextRequest, expect(any_request, (ChatRequest, CompletionRequest), self.kind))
        check_fields(self.kind, request)
        cancel = self.flag(request.request_id)
        llm = await self._free.get()
        try:
            # The engine's own time to first token starts here, as a direct caller would see it.
            started = time.perf_counter()
            if isinstance(request, ChatRequest) and request.has_images:
                if not self.config.clip_model_path:
                    raise InvalidRequest(f"{self.config.model_id} cannot see images (no vision projector)")
                beyond = fields_in_use(request) & _NOT_WITH_IMAGES
                if beyond:
                    field = sorted(beyond)[0]
                    raise InvalidRequest(f"`{field}` is not supported with images by `{request.model}`", param=field)
                run = lambda: self._run_with_images(llm, request, resume_text, cancel, started)  # noqa: E731
            else:
                prompt = self._prompt(llm, request, resume_text)
                run = lambda: self._run(llm, request, prompt, cancel, started)  # noqa: E731
            async for event in iterate_in_thread(run, self._threads):
                yield event
        finally:
            self.drop(request.request_id)
            self._free.put_nowait(llm)

    def _run(
        self, llm: Any, request: TextRequest, prompt: _Prompt, cancel: threading.Event, started: float
    ) -> Iterator[EngineEvent]:
        """Sample token by token. Each token is detokenized alone (with the one before it for
        spacing) and decoded incrementally: llama-cpp-python's own streaming would detokenize the
        whole prompt and answer again for every token, which grows quadratically.

        A reply that must be a tool call is held back and sent as calls once whole; in `auto`, a
        reply is held back only while it may still be the start of a call."""
        s = request.sampling
        # Without a seed, llama.cpp would repeat the same sample every time; OpenAI's is random.
        llm.set_seed(s.seed if s.seed is not None else secrets.randbelow(2**31))
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        stops = StopScanner(prompt.stop)
        previous = prompt.tokens[-1:]
        sampled = reported = 0
        first_token_at: float | None = None
        finish_reason = "length"
        held: list[str] = []
        holding = prompt.constraint.tool_reply or prompt.may_call
        logprobs: list[TokenLogprob] = []
        if len(prompt.tokens) >= llm.n_ctx():  # a resumed answer that said all the context holds
            yield Finished(
                finish_reason,
                Usage(prompt_tokens=len(prompt.tokens), completion_tokens=0),
                Timings.since(started, None, time.perf_counter()),
            )
            return
        for token, logits in _sample(llm, prompt, s, self._bias(s.logit_bias)):
            if cancel.is_set():
                finish_reason = "cancelled"
                break
            if token is None:
                finish_reason = "stop"
                break
            sampled += 1
            if s.logprobs:
                logprobs.append(_logprob(llm, token, logits, s.top_logprobs))
            text = stops.feed(decoder.decode(llm.detokenize([token], prev_tokens=previous)))
            previous = [token]
            if holding:
                held.append(text)
                holding = prompt.constraint.tool_reply or constrain.may_be_call("".join(held))
                text = "" if holding else "".join(held)
            if text:
                first_token_at = first_token_at or time.perf_counter()
                yield TextDelta(text, tokens=sampled - reported, logprobs=tuple(logprobs))
                reported, logprobs = sampled, []
            if stops.stopped:
                finish_reason = "stop"
                break
            if sampled >= s.max_tokens or len(prompt.tokens) + sampled >= llm.n_ctx():
                break  # the context is full: the answer ends there, as at max_tokens
        tail = stops.feed(decoder.decode(b"", final=True)) + stops.flush()
        calls = None
        if holding:
            calls = constrain.tool_calls(prompt.constraint, "".join(held) + tail)
            tail = "" if calls else "".join(held) + tail
        if calls:
            first_token_at = first_token_at or time.perf_counter()
            yield TextDelta("", tokens=sampled - reported, tool_calls=calls, logprobs=tuple(logprobs))
            finish_reason = "tool_calls" if finish_reason != "cancelled" else finish_reason
        elif tail or logprobs:
            first_token_at = first_token_at or time.perf_counter()
            yield TextDelta(tail, tokens=sampled - reported, logprobs=tuple(logprobs))
        yield Finished(
            finish_reason=finish_reason,
            usage=Usage(prompt_tokens=len(prompt.tokens), completion_tokens=sampled),
            timings=Timings.since(started, first_token_at, time.perf_counter()),
        )

    def _run_with_images(
        self, llm: Any, request: ChatRequest, resume_text: str, cancel: threading.Event, started: float
    ) -> Iterator[EngineEvent]:
        """A chat with images, through llama.cpp's multimodal library: the handler encodes each image
        into embeddings the model reads in place of its marker, then samples as usual. After a
        failover, the delivered text is the start of the assistant's turn."""
        messages = openai_messages(request, resume_text)
        s = request.sampling
        sampled, finish_reason = 0, "length"
        first_token_at: float | None = None
        stream = llm.create_chat_completion(
            messages=messages,
            stream=True,
            max_tokens=s.max_tokens,
            temperature=s.temperature,
            top_p=s.top_p,
            seed=s.seed,
            stop=list(s.stop) or None,
            logit_bias={str(k): v for k, v in s.logit_bias.items()} or None,
        )
        prompt_tokens: int | None = None
        for chunk in stream:
            # The first chunk comes once the prompt (text and image embeddings) is in the context.
            prompt_tokens = llm.n_tokens if prompt_tokens is None else prompt_tokens
            if cancel.is_set():
                finish_reason = "cancelled"
                break
            choice = chunk["choices"][0]
            text = choice.get("delta", {}).get("content")
            if text:
                sampled += 1
                first_token_at = first_token_at or time.perf_counter()
                yield TextDelta(text)
            if choice.get("finish_reason"):
                finish_reason = choice["finish_reason"]
        yield Finished(
            finish_reason=finish_reason,
            usage=Usage(prompt_tokens=prompt_tokens or 0, completion_tokens=sampled),
            timings=Timings.since(started, first_token_at, time.perf_counter()),
        )

    @staticmethod
    def _bias(logit_bias: dict[int, float]) -> Any:
        """OpenAI's logit_bias as a llama-cpp-python logits processor (None when there is none)."""
        if not logit_bias:
            return None
        import numpy as np
        from llama_cpp import LogitsProcessorList

        ids = np.array(list(logit_bias), dtype=np.intc)
        values = np.array(list(logit_bias.values()), dtype=np.single)

        def add(_input_ids: Any, scores: Any) -> Any:
            scores[ids] += values
            return scores

        return LogitsProcessorList([add])

    async def cleanup(self) -> None:
        self.abort_all()
        # Let running generations see their cancel and end before their model is freed under them.
        await asyncio.to_thread(self._threads.shutdown, wait=True, cancel_futures=True)
        instances, self._instances = self._instances, []
        for llm in instances:
            close = getattr(llm, "close", None)
            if close is not None:
                await asyncio.to_thread(close)
        self._free = asyncio.Queue()


_NOT_WITH_IMAGES = frozenset({"tools", "tool_choice", "parallel_tool_calls", "response_format", "logprobs"})


def _sample(llm: Any, prompt: _Prompt, s: Any, bias: Any) -> Iterator[tuple[int | None, Any]]:
    """Tokens sampled after `prompt`, each with the logits it was drawn from; None at the model's end
    of turn. Written out (rather than `Llama.generate`) so that a grammar first reads the delivered
    answer of a failed-over request: the continuation keeps the constraint where it was."""
    import llama_cpp
    import numpy as np

    grammar = None
    if prompt.constraint.schema is not None:
        from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

        try:
            grammar = LlamaGrammar.from_string(json_schema_to_gbnf(json.dumps(prompt.constraint.schema)))
        except Exception as exc:  # the converter's own complaint about a schema it cannot express
            raise InvalidRequest(f"the JSON schema cannot constrain decoding: {exc}", param="response_format") from exc
    sampler = llm._init_sampler(
        temp=s.temperature,
        top_p=s.top_p,
        presence_penalty=s.presence_penalty,
        frequency_penalty=s.frequency_penalty,
        logits_processor=bias,
        grammar=grammar,
    )
    for token in prompt.resumed:
        sampler.accept(token)
    tokens = _reuse_cache(llm, prompt.tokens)
    vocab = llm._model.vocab
    n_vocab = llm.n_vocab()
    try:
        while True:
            llm.eval(tokens)
            token = sampler.sample(llm._ctx, -1)
            logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,))
            if llama_cpp.llama_vocab_is_eog(vocab, token):
                yield None, logits
                return
            yield token, logits
            tokens = [token]
    finally:
        sampler.close()


def _resumed(llm: Any, prompt_text: str, tokens: list[int], resume_text: str) -> tuple[int, ...]:
    """The delivered answer as tokens whose pieces spell exactly it, for the grammar to read first.
    A token the grammar would refuse (a tokenizer's added space prefix) aborts llama.cpp itself, so
    a spelling that does not match is an error here, before the grammar sees it."""
    alone = llm.tokenize(resume_text.encode(), add_bos=False, special=False)
    head = llm.tokenize(prompt_text.encode(), add_bos=True, special=True)
    in_context = tokens[len(head) :] if tokens[: len(head)] == head else []
    for candidate in (in_context, alone):
        if candidate and b"".join(llm.detokenize([t]) for t in candidate).decode(errors="replace") == resume_text:
            return tuple(candidate)
    raise EngineError("the delivered reply does not tokenize back to itself: its constraint cannot be resumed")


def _reuse_cache(llm: Any, tokens: list[int]) -> list[int]:
    """What of `tokens` must still be evaluated: a prefix the context holds from the last request is
    kept (as `Llama.generate` does), the rest dropped from it."""
    common = 0
    for held, wanted in zip(llm._input_ids, tokens[:-1], strict=False):
        if held != wanted:
            break
        common += 1
    if common and llm._ctx.kv_cache_seq_rm(-1, common, -1):
        llm.n_tokens = common
        return tokens[common:]
    llm.reset()
    return tokens


def _logprob(llm: Any, token: int, logits: Any, top: int) -> TokenLogprob:
    """The sampled token's log probability under the model's own distribution, and the `top` most likely."""
    import numpy as np

    shifted = logits - logits.max()
    logp = shifted - np.log(np.exp(shifted).sum())

    def entry(t: int) -> TopLogprob:
        piece = llm.detokenize([t], special=True)
        return TopLogprob(token=piece.decode(errors="replace"), logprob=float(logp[t]), bytes=tuple(piece))

    best = np.argpartition(-logp, top)[:top] if top else np.array([], dtype=np.intc)
    alternatives = tuple(entry(int(t)) for t in sorted(best, key=lambda t: -logp[t]))
    own = entry(token)
    return TokenLogprob(token=own.token, logprob=own.logprob, bytes=own.bytes, top=alternatives)


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def from_settings(settings: WorkerSettings) -> LlamaCppEngine:
    """A llama.cpp engine of the settings' GGUF; unset, the tiny model and its vision projector."""
    from services.workers.tiny_model import ensure_tiny_gguf, ensure_tiny_mmproj

    tiny = settings.model_path is None
    return LlamaCppEngine(
        LlamaCppConfig(
            model_id=settings.model_id or "tiny-llama",
            model_path=settings.model_path or ensure_tiny_gguf(),
            clip_model_path=settings.clip_model_path or (ensure_tiny_mmproj() if tiny else None),
            slots=settings.slots or 1,
            n_ctx=settings.n_ctx,
            n_threads=settings.n_threads,
            n_gpu_layers=settings.n_gpu_layers,
        )
    )


ENGINE = EngineKind(LlamaCppEngine.kind, from_settings)
