"""What a run sends: request classes (kind, model, prompt source, sizes, parameters, SLOs) mixed at set
ratios, the load shape and the bounds; read from a YAML or JSON file or built from CLI flags."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

Kind = Literal["chat", "completion", "embedding", "image", "speech", "video", "vision"]
TEXT_KINDS = {"chat", "completion", "vision"}
DEFAULT_MODELS: dict[str, str] = {
    "chat": "tiny-llama",
    "completion": "tiny-llama",
    "vision": "tiny-llama",
    "embedding": "all-minilm-l6-v2",
    "image": "tiny-sd",
    "speech": "espeak",
    "video": "tiny-video",
}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PromptSource(_Frozen):
    """Where prompts come from: random words of a set token length, a JSONL file, or a ShareGPT file."""

    source: Literal["random", "jsonl", "sharegpt"] = "random"
    tokens: int = Field(default=32, ge=1, le=32768, description="Random prompts: words (about one token each).")
    path: Path | None = None
    field: str = Field(default="prompt", description="JSONL: the key holding the prompt text.")

    @model_validator(mode="after")
    def _needs_path(self) -> PromptSource:
        if self.source != "random" and self.path is None:
            raise ValueError(f"a {self.source} prompt source needs a path")
        return self


class Slo(_Frozen):
    """Targets a request must meet to count as good (goodput); None means no target on that figure."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    itl_ms: float | None = None
    e2e_ms: float | None = None
    first_byte_ms: float | None = None
    quantile: float = Field(default=99.0, gt=0, le=100, description="The SLO search holds this percentile.")


class RequestClass(_Frozen):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    kind: Kind
    model: str
    weight: float = Field(default=1.0, gt=0)
    prompt: PromptSource = PromptSource()
    max_tokens: int = Field(default=32, ge=1, description="Text kinds: tokens to generate.")
    inputs: int = Field(default=1, ge=1, description="Embeddings: texts per request.")
    size: str = Field(default="64x64", description="Images and video: WxH.")
    steps: int | None = Field(default=None, ge=1, description="Images and video: denoising steps (ModalMesh).")
    frames: int = Field(default=9, ge=1, description="Video: frames (1 + a multiple of the model's temporal ratio).")
    voice: str = "alloy"
    response_format: str = Field(default="wav", description="Speech: wav gives the real-time factor.")
    via_tasks: bool = Field(default=False, description="Images: through the task API, for time to first progress.")
    image_side: int = Field(default=32, ge=8, le=512, description="Vision: side of the PNG sent with the prompt.")
    params: dict[str, Any] = Field(default_factory=dict, description="Extra body fields sent as they are.")
    slo: Slo = Slo()


class Shape(_Frozen):
    """How requests are let out. `concurrency`: that many in flight. `rate`: arrivals per second, gamma
    distributed gaps (burstiness 1 is Poisson, lower is burstier). `ramp`: the rate goes linearly from
    `rate` to `end_rate` over the run's duration."""

    kind: Literal["concurrency", "rate", "ramp"] = "concurrency"
    concurrency: int = Field(default=1, ge=1, le=4096)
    rate: float = Field(default=1.0, gt=0)
    end_rate: float | None = Field(default=None, gt=0)
    burstiness: float = Field(default=1.0, gt=0)
    max_concurrency: int | None = Field(default=None, ge=1)


class RunSpec(_Frozen):
    target: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    classes: tuple[RequestClass, ...] = Field(min_length=1)
    shape: Shape = Shape()
    requests: int = Field(default=100, ge=1, le=1_000_000, description="Measured requests (warm-up excluded).")
    duration_s: float = Field(default=300.0, gt=0, le=86_400, description="Hard stop for the whole run.")
    warmup: int = Field(default=1, ge=0, description="Requests of each class sent first and left out of figures.")
    timeout_s: float = Field(default=300.0, gt=0, description="One request's limit.")
    seed: int = 0
    allow_hosts: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> RunSpec:
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise ValueError(f"class names must be unique: {names}")
        return self

    def with_shape(self, shape: Shape) -> RunSpec:
        return self.model_copy(update={"shape": shape})


class TargetNotAllowed(ValueError):
    """The target is neither on loopback nor among the hosts the user named."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_target(url: str, allow_hosts: tuple[str, ...]) -> None:
    """A load generator aimed at the wrong host is an attack: only loopback, or a host named on purpose."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise TargetNotAllowed(f"target must be an http(s) URL, not {url!r}")
    host = parts.hostname
    if is_loopback(host) or host in allow_hosts:
        return
    raise TargetNotAllowed(f"{host} is not loopback: name it with --allow-host {host} to load it")


def load_spec(path: Path, overrides: dict[str, Any] | None = None) -> RunSpec:
    """A spec from a YAML or JSON file (JSON is YAML), with CLI values laid over it."""
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a spec is a mapping")
    return RunSpec.model_validate({**data, **(overrides or {})})


def parse_class(text: str, defaults: dict[str, Any]) -> RequestClass:
    """`kind[:model][:weight]` from the command line, e.g. `chat:tiny-llama:3` or `embedding::1`."""
    kind, _, rest = text.partition(":")
    model, _, weight = rest.partition(":")
    fields = {k: v for k, v in defaults.items() if v is not None}
    return RequestClass(
        name=kind,
        kind=kind,  # type: ignore[arg-type]
        model=model or DEFAULT_MODELS.get(kind, ""),
        weight=float(weight or 1),
        **fields,
    )
