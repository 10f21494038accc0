"""Monitor agent settings (env prefix MODALMESH_MONITOR_)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.telemetry import Severity
from services.common.alert_rules import ThresholdRule
from services.common.settings import ServiceSettings


class MonitorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MODALMESH_MONITOR_", extra="ignore")

    interval_s: float = Field(default=1.0, gt=0, description="How often telemetry is published.")
    sources: tuple[str, ...] = Field(default=("nvml", "jtop", "psutil"), description="Sources to try.")
    metrics_port: int = Field(default=9101, ge=0, le=65535, description="Prometheus port; 0 turns it off.")
    metrics_addr: str = "127.0.0.1"
    labels: dict[str, str] = Field(default_factory=dict, description='Node labels, JSON: {"zone": "lab"}.')
    webhook_url: str | None = Field(default=None, description="POST every alert here as JSON.")
    gpu_temp_fire_c: float = 85.0
    gpu_temp_clear_c: float = 80.0
    vram_fire_pct: float = 95.0
    vram_clear_pct: float = 90.0
    ram_fire_pct: float = 95.0
    ram_clear_pct: float = 90.0

    def rules(self) -> list[ThresholdRule]:
        return [
            ThresholdRule(
                "gpu_temperature", "gpu_temp_c", self.gpu_temp_fire_c, self.gpu_temp_clear_c, Severity.critical
            ),
            ThresholdRule("vram_pressure", "gpu_mem_pct", self.vram_fire_pct, self.vram_clear_pct, Severity.warning),
            ThresholdRule("ram_pressure", "mem_pct", self.ram_fire_pct, self.ram_clear_pct, Severity.warning),
        ]
