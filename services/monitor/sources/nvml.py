"""NVIDIA GPUs through NVML (`nvidia-ml-py`, imported as `pynvml`)."""

from __future__ import annotations

from typing import Any

from contracts.telemetry import GpuInfo, GpuSample
from services.monitor.gpus import estimate_fp16_tflops
from services.monitor.sources import Reading, StaticInfo

# NVML throttle-reason bits (nvml.h, nvmlClocksEventReason*), named as operators know them.
THROTTLE_BITS: dict[int, str] = {
    0x0000000000000002: "applications_clocks_setting",
    0x0000000000000004: "sw_power_cap",
    0x0000000000000008: "hw_slowdown",
    0x0000000000000010: "sync_boost",
    0x0000000000000020: "sw_thermal_slowdown",
    0x0000000000000040: "hw_thermal_slowdown",
    0x0000000000000080: "hw_power_brake_slowdown",
}


def throttle_names(mask: int) -> tuple[str, ...]:
    return tuple(name for bit, name in THROTTLE_BITS.items() if mask & bit)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class NvmlSource:
    name = "nvml"

    def __init__(self) -> None:
        self._nvml: Any = None
        self._handles: list[Any] = []

    def open(self) -> str | None:
        try:
            import pynvml

            pynvml.nvmlInit()
        except Exception as exc:  # no library, no driver or no GPU: all mean "not here"
            return f"{type(exc).__name__}: {exc}"
        self._nvml = pynvml
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
        return None if self._handles else "NVML found no GPU"

    def static(self) -> StaticInfo:
        n = self._nvml
        gpus = []
        for i, h in enumerate(self._handles):
            name = _text(n.nvmlDeviceGetName(h))
            major, minor = n.nvmlDeviceGetCudaComputeCapability(h)
            gpus.append(
                GpuInfo(
                    index=i,
                    name=name,
                    uuid=_text(n.nvmlDeviceGetUUID(h)),
                    vram_mb=n.nvmlDeviceGetMemoryInfo(h).total / 2**20,
                    compute_capability=f"{major}.{minor}",
                    fp16_tflops=estimate_fp16_tflops(name),
                )
            )
        return StaticInfo(gpus=gpus)

    def read(self) -> Reading:
        n = self._nvml
        samples = []
        for i, h in enumerate(self._handles):
            mem = n.nvmlDeviceGetMemoryInfo(h)
            samples.append(
                GpuSample(
                    index=i,
                    uuid=_text(n.nvmlDeviceGetUUID(h)),
                    name=_text(n.nvmlDeviceGetName(h)),
                    util_pct=float(n.nvmlDeviceGetUtilizationRates(h).gpu),
                    mem_used_mb=mem.used / 2**20,
                    mem_total_mb=mem.total / 2**20,
                    temp_c=float(n.nvmlDeviceGetTemperature(h, n.NVML_TEMPERATURE_GPU)),
                    power_w=_optional(lambda h=h: n.nvmlDeviceGetPowerUsage(h) / 1000.0),
                    sm_clock_mhz=_optional(lambda h=h: float(n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_SM))),
                    mem_clock_mhz=_optional(lambda h=h: float(n.nvmlDeviceGetClockInfo(h, n.NVML_CLOCK_MEM))),
                    throttle_reasons=throttle_names(
                        _optional(lambda h=h: n.nvmlDeviceGetCurrentClocksThrottleReasons(h)) or 0  # type: ignore[arg-type]
                    ),
                )
            )
        return Reading(gpus=samples)

    def close(self) -> None:
        if self._nvml is not None:
            self._nvml.nvmlShutdown()
            self._nvml = None


def _optional(read: Any) -> float | None:
    """Some boards do not support a query (power on many consumer GPUs): report it as unknown."""
    try:
        return float(read())
    except Exception:
        return None
