"""Node telemetry (`telemetry.<node>`), node capabilities (`nodes` KV bucket) and alerts (`alert.<severity>.<node>`)."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

from contracts.base import Message, now_ms


class GpuSample(BaseModel):
    """One GPU at one instant."""

    model_config = ConfigDict(frozen=True)

    index: int
    uuid: str = ""
    name: str = ""
    util_pct: float = Field(ge=0, le=100)
    mem_used_mb: float = Field(ge=0)
    mem_total_mb: float = Field(ge=0)
    temp_c: float | None = None
    power_w: float | None = None
    sm_clock_mhz: float | None = None
    mem_clock_mhz: float | None = None
    throttle_reasons: tuple[str, ...] = Field(default=(), description="Active clock throttle reasons.")

    @property
    def mem_free_mb(self) -> float:
        return max(0.0, self.mem_total_mb - self.mem_used_mb)

    @property
    def mem_pct(self) -> float:
        return 100.0 * self.mem_used_mb / self.mem_total_mb if self.mem_total_mb else 0.0

    @property
    def thermally_throttled(self) -> bool:
        return any("thermal" in r for r in self.throttle_reasons)


class NodeTelemetry(Message):
    """What a node's monitor agent measured, published every `interval_s`."""

    node: str
    ts_ms: int = Field(default_factory=now_ms)
    cpu_pct: float = Field(ge=0, le=100)
    mem_used_mb: float = Field(ge=0)
    mem_total_mb: float = Field(ge=0)
    load1: float = 0.0
    gpus: tuple[GpuSample, ...] = ()
    power_rails_w: dict[str, float] = Field(default_factory=dict, description="Jetson power rails.")
    temps_c: dict[str, float] = Field(default_factory=dict, description="Board temperatures (Jetson).")


class GpuInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    index: int
    name: str
    uuid: str = ""
    vram_mb: float
    compute_capability: str = ""
    fp16_tflops: float | None = Field(default=None, description="Estimate from a table of known GPUs.")


class NodeCapabilities(Message):
    """A node's static description, kept in the `nodes` KV bucket under the node's name."""

    node: str
    arch: str
    cpu_cores: int
    mem_total_mb: float
    gpus: tuple[GpuInfo, ...] = ()
    jetson_model: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    sources: tuple[str, ...] = Field(default=(), description="Telemetry sources this node has.")
    ts_ms: int = Field(default_factory=now_ms)

    @property
    def vram_mb(self) -> float:
        return sum(g.vram_mb for g in self.gpus)

    @property
    def fp16_tflops(self) -> float:
        return sum(g.fp16_tflops or 0.0 for g in self.gpus)


class Severity(str, Enum):
    info = "info"
    warning = "warning"
    critical = "critical"


class AlertState(str, Enum):
    firing = "firing"
    resolved = "resolved"


class Alert(Message):
    """One transition of one alert: it fires once and resolves once (hysteresis in between)."""

    name: str
    node: str
    severity: Severity
    state: AlertState
    subject_key: str = Field(default="", description="What it is about within the node, e.g. gpu0.")
    value: float | None = None
    threshold: float | None = None
    message: str = ""
    ts_ms: int = Field(default_factory=now_ms)
