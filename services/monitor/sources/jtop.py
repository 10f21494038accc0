"""NVIDIA Jetson boards through jtop (`jetson-stats`): GPU load, shared RAM, temperatures, power rails."""

from __future__ import annotations

from typing import Any

from contracts.telemetry import GpuInfo, GpuSample
from services.monitor.gpus import estimate_fp16_tflops
from services.monitor.sources import Reading, StaticInfo


class JtopSource:
    name = "jtop"

    def __init__(self) -> None:
        self._jtop: Any = None

    def open(self) -> str | None:
        try:
            from jtop import jtop
        except ImportError:
            return "jetson-stats is not installed (Jetson images only)"
        try:
            handle = jtop()
            handle.start()
        except Exception as exc:  # the jtop service runs only on a Jetson
            return f"{type(exc).__name__}: {exc}"
        self._jtop = handle
        return None

    @property
    def _model(self) -> str:
        board = getattr(self._jtop, "board", {}) or {}
        return str(board.get("hardware", {}).get("Model", "Jetson"))

    def static(self) -> StaticInfo:
        mem = self._jtop.memory.get("RAM", {})
        # Jetson GPUs share system RAM: the whole RAM is what a model may use.
        gpu = GpuInfo(
            index=0,
            name=self._model,
            vram_mb=float(mem.get("tot", 0)) / 1024,
            fp16_tflops=estimate_fp16_tflops(self._model),
        )
        return StaticInfo(gpus=[gpu], jetson_model=self._model)

    def read(self) -> Reading:
        stats: dict[str, Any] = self._jtop.stats
        mem = self._jtop.memory.get("RAM", {})
        power = self._jtop.power.get("rail", {}) if isinstance(self._jtop.power, dict) else {}
        temps = {k: float(v.get("temp", 0)) for k, v in (self._jtop.temperature or {}).items() if v.get("online", True)}
        gpu = GpuSample(
            index=0,
            name=self._model,
            util_pct=float(stats.get("GPU", 0.0)),
            mem_used_mb=float(mem.get("used", 0)) / 1024,
            mem_total_mb=float(mem.get("tot", 0)) / 1024,
            temp_c=temps.get("gpu") or temps.get("GPU"),
            power_w=float(self._jtop.power.get("tot", {}).get("power", 0)) / 1000 if self._jtop.power else None,
        )
        return Reading(
            gpus=[gpu], temps_c=temps, power_rails_w={k: float(v.get("power", 0)) / 1000 for k, v in power.items()}
        )

    def close(self) -> None:
        if self._jtop is not None:
            self._jtop.close()
            self._jtop = None
