"""Telemetry sources. Each one says whether this node has it; the agent uses every one it has."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from contracts.telemetry import GpuInfo, GpuSample


@dataclass
class Reading:
    """What one source measured; the agent merges the readings of all its sources."""

    cpu_pct: float | None = None
    mem_used_mb: float | None = None
    mem_total_mb: float | None = None
    load1: float | None = None
    gpus: list[GpuSample] = field(default_factory=list)
    power_rails_w: dict[str, float] = field(default_factory=dict)
    temps_c: dict[str, float] = field(default_factory=dict)


@dataclass
class StaticInfo:
    gpus: list[GpuInfo] = field(default_factory=list)
    jetson_model: str | None = None


class Source(Protocol):
    name: str

    def open(self) -> str | None:
        """Start the source; return None if it works here, else why not (said once in the log)."""

    def static(self) -> StaticInfo: ...

    def read(self) -> Reading: ...

    def close(self) -> None: ...
