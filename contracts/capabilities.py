"""Which OpenAI request fields each text engine honours: the one table the gateway refuses by and
docs/engines.md shows (a test holds the two together).

A field in use that the serving engine does not honour is refused with a 400 naming the field and
the model, never dropped. Fields the gateway serves itself (several choices, the token limit's
newer name, the end-user id, usage in the stream) are honoured whatever the engine.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.errors import InvalidRequest
from contracts.requests import ChatRequest, TextRequest

# Served by the gateway for every engine: `n` by sending one request per choice.
GATEWAY_FIELDS: frozenset[str] = frozenset({"n", "max_completion_tokens", "user", "stream_options"})

# Every OpenAI chat or completions field that changes what the engine does.
ENGINE_FIELD_NAMES: tuple[str, ...] = (
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "seed",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "logprobs",
    "top_logprobs",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
)

_BASIC = frozenset({"temperature", "top_p", "max_tokens", "stop", "seed", "logit_bias"})
_PENALTIES = frozenset({"presence_penalty", "frequency_penalty"})
_TOOLS = frozenset({"tools", "tool_choice", "parallel_tool_calls"})

ENGINE_FIELDS: dict[str, frozenset[str]] = {
    "llama_cpp": _BASIC | _PENALTIES | _TOOLS | {"logprobs", "top_logprobs", "response_format"},
    "vllm": _BASIC | _PENALTIES | {"logprobs", "top_logprobs", "response_format"},
    "openai_upstream": _BASIC | _PENALTIES | _TOOLS | {"logprobs", "top_logprobs", "response_format"},
    "simulated": frozenset({"temperature", "top_p", "max_tokens"}),
}

# OpenAI fields no engine here serves (audio out, predicted outputs, hosted tools ...): refused.
REFUSED_FIELDS: frozenset[str] = frozenset(
    {
        "audio",
        "modalities",
        "prediction",
        "reasoning_effort",
        "web_search_options",
        "functions",
        "function_call",
        "best_of",
        "echo",
        "suffix",
        "store",
        "verbosity",
        "service_tier",
    }
)
# What a refused field may say and still be served: its neutral value (store: false, service_tier: auto ...).
NEUTRAL_VALUES: tuple[object, ...] = (None, False, 1, "", [], {}, ["text"], "auto", "default")


def is_neutral(value: object) -> bool:
    """Whether `value` is one of NEUTRAL_VALUES, of its type too (true is not 1)."""
    return any(type(value) is type(v) and value == v for v in NEUTRAL_VALUES)


def unhonoured(engine: str, fields: Iterable[str]) -> list[str]:
    """The fields of `fields` that `engine` (an engine kind) does not honour, in table order; an
    engine the table does not know honours only what the gateway serves itself."""
    served = ENGINE_FIELDS.get(engine, frozenset()) | GATEWAY_FIELDS
    wanted = set(fields)
    order = {name: i for i, name in enumerate(ENGINE_FIELD_NAMES)}
    return sorted((f for f in wanted if f not in served), key=lambda f: (order.get(f, len(order)), f))


def fields_in_use(request: TextRequest) -> set[str]:
    """The fields beyond plain sampling that `request` uses (set to other than their neutral value)."""
    s = request.sampling
    used = {
        name
        for name, on in (
            ("stop", bool(s.stop)),
            ("seed", s.seed is not None),
            ("logit_bias", bool(s.logit_bias)),
            ("presence_penalty", s.presence_penalty != 0),
            ("frequency_penalty", s.frequency_penalty != 0),
            ("logprobs", s.logprobs),
            ("top_logprobs", s.top_logprobs > 0),
        )
        if on
    }
    if isinstance(request, ChatRequest):
        if request.tools:
            used |= {"tools", "tool_choice", "parallel_tool_calls"}
        if request.response_format.type != "text":
            used.add("response_format")
    return used


def check_fields(engine: str, request: TextRequest) -> None:
    """Refuse `request` (400, naming the field and the model) if `engine` cannot honour a field it uses."""
    missing = unhonoured(engine, fields_in_use(request))
    if missing:
        raise InvalidRequest(
            f"`{missing[0]}` is not supported by model `{request.model}` (engine {engine}); "
            f"unsupported here: {', '.join(missing)}",
            param=missing[0],
        )
