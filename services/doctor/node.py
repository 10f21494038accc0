"""The node's own checks: its GPUs as the monitor reads them, driver and CUDA versions, the memory
shares its domains file gives, torch's per-process GPU memory cap, and disk for the model cache."""

from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.telemetry import GpuInfo, GpuSample
from services.common.confinement import ram_mb
from services.common.domains import DOMAINS_FILE_ENV, Domains
from services.doctor.report import Check, Status
from services.monitor.agent import make_source
from services.monitor.sources import Reading, Source

GPU_SOURCES = ("nvml", "jtop")
HOT_C = 85.0  # the monitor's default gpu_temperature alert
# Throttling that costs speed under load; power-cap and application-clock reasons show on idle GPUs too.
SLOWING = frozenset({"hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"})


@dataclass
class GpuView:
    """What the monitor's sources see on this node, read once; the GPU checks share it."""

    source: str | None = None
    static: list[GpuInfo] = field(default_factory=list)
    samples: list[GpuSample] = field(default_factory=list)
    why_not: dict[str, str] = field(default_factory=dict)
    host: Reading = field(default_factory=Reading)

    @property
    def vram_mb(self) -> list[float]:
        return [g.vram_mb for g in self.static]


def look(sources: tuple[str, ...] = GPU_SOURCES) -> GpuView:
    """Open the monitor's GPU sources in its order (NVML, then jtop) and psutil for the host; the
    first GPU source that works is the node's, as in the monitor agent."""
    view = GpuView()
    for name in sources:
        source: Source = make_source(name)
        why_not = source.open()
        if why_not is not None:
            view.why_not[name] = why_not
            continue
        try:
            view.source, view.static, view.samples = name, source.static().gpus, source.read().gpus
        except Exception as exc:  # a driver that opens and then fails a query: say so, try the next
            view.why_not[name] = f"opened, then {type(exc).__name__}: {exc}"
            continue
        finally:
            source.close()
        break
    host = make_source("psutil")
    if host.open() is None:
        view.host = host.read()
        host.close()
    return view


def check_gpus(view: GpuView) -> Check:
    if not view.samples:
        tried = "; ".join(f"{name}: {why}" for name, why in view.why_not.items())
        host = view.host
        cpu = f"{host.mem_total_mb / 1024:.1f} GB RAM" if host.mem_total_mb else "RAM unknown"
        return Check(
            name="gpu",
            status=Status.warn,
            reason=f"no GPU: this node serves on CPU only ({cpu}); {tried}",
            details={"gpus": [], "why_not": view.why_not, "host": _host(host)},
        )
    rows, worries = [], []
    for g in view.samples:
        rows.append(
            f"{g.index}: {g.name} {g.mem_used_mb:.0f}/{g.mem_total_mb:.0f} MB, {g.util_pct:.0f}% busy, "
            f"{_or_unknown(g.temp_c, '°C')}, {_or_unknown(g.power_w, 'W')}"
        )
        if g.temp_c is not None and g.temp_c >= HOT_C:
            worries.append(f"GPU {g.index} at {g.temp_c:.0f} °C (the monitor alerts at {HOT_C:.0f})")
        if slowed := SLOWING.intersection(g.throttle_reasons):
            worries.append(f"GPU {g.index} throttled: {', '.join(sorted(slowed))}")
    reason = f"{len(view.samples)} GPU(s) through {view.source}: " + "; ".join(rows)
    return Check(
        name="gpu",
        status=Status.warn if worries else Status.ok,
        reason=reason + ("; " + "; ".join(worries) if worries else ""),
        details={
            "source": view.source,
            "gpus": [g.model_dump(mode="json") for g in view.static],
            "readings": [s.model_dump(mode="json") for s in view.samples],
            "host": _host(view.host),
        },
    )


def _host(reading: Reading) -> dict[str, Any]:
    return {"cpu_pct": reading.cpu_pct, "mem_used_mb": reading.mem_used_mb, "mem_total_mb": reading.mem_total_mb}


def _or_unknown(value: float | None, unit: str) -> str:
    return f"{value:.0f} {unit}" if value is not None else f"? {unit}"


def nvml_versions() -> dict[str, str]:
    """The driver's version and the newest CUDA it supports, from NVML ({} where NVML is not)."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return {}
    try:
        cuda = int(pynvml.nvmlSystemGetCudaDriverVersion_v2())
        driver = pynvml.nvmlSystemGetDriverVersion()
        return {
            "driver": driver.decode() if isinstance(driver, bytes) else str(driver),
            "driver_cuda": f"{cuda // 1000}.{cuda % 1000 // 10}",
        }
    finally:
        pynvml.nvmlShutdown()


@dataclass(frozen=True)
class TorchView:
    version: str | None  # None: torch is not installed
    cuda_build: str | None  # torch.version.cuda: None for a CPU build
    cuda_devices: int


def look_torch() -> TorchView:
    if importlib.util.find_spec("torch") is None:
        return TorchView(None, None, 0)
    import torch

    devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return TorchView(str(torch.__version__), torch.version.cuda, devices)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:2] if part.isdigit())


def check_driver(view: GpuView, versions: dict[str, str], torch_view: TorchView) -> Check:
    details: dict[str, Any] = {**versions, "torch": torch_view.version, "torch_cuda": torch_view.cuda_build}
    details["torch_cuda_devices"] = torch_view.cuda_devices
    torch_says = (
        "torch is not installed (the torch engines cannot run)"
        if torch_view.version is None
        else f"torch {torch_view.version} built for CUDA {torch_view.cuda_build}"
        if torch_view.cuda_build
        else f"torch {torch_view.version}, a CPU build"
    )
    if not versions and view.source == "jtop":  # Jetson's integrated GPU has no NVML; CUDA is what counts
        status = Status.ok if torch_view.cuda_devices else Status.fail
        seen = "sees the GPU" if torch_view.cuda_devices else "sees no CUDA device: a Jetson needs NVIDIA's torch wheel"
        return Check(
            name="driver", status=status, reason=f"Jetson (no NVML there); {torch_says}, {seen}", details=details
        )
    if not versions:
        status = Status.fail if torch_view.cuda_devices else Status.warn
        return Check(name="driver", status=status, reason=f"no NVIDIA driver (NVML does not load); {torch_says}")
    reason = f"driver {versions['driver']} supports CUDA up to {versions['driver_cuda']}; {torch_says}"
    if view.samples and torch_view.version is not None:
        if torch_view.cuda_build is None:
            return Check(name="driver", status=Status.fail, reason=reason + ": it cannot use the GPU", details=details)
        if _version_tuple(torch_view.cuda_build) > _version_tuple(versions["driver_cuda"]):
            return Check(
                name="driver", status=Status.fail, reason=reason + ": newer than the driver supports", details=details
            )
        if torch_view.cuda_devices == 0:
            return Check(
                name="driver", status=Status.fail, reason=reason + ", yet it finds no CUDA device", details=details
            )
        reason += f", and sees {torch_view.cuda_devices} CUDA device(s)"
    return Check(name="driver", status=Status.ok, reason=reason, details=details)


def check_domains(view: GpuView, path: Path | None) -> Check:
    """What each domain's memory shares come to on this node."""
    named = path or _env_path()
    if named is None:
        return Check(
            name="domains",
            status=Status.ok,
            reason=f"no domains file ({DOMAINS_FILE_ENV} unset): each worker may use all of its GPU and RAM",
        )
    try:
        domains = Domains.load(named)
    except SystemExit as exc:  # Domains.load fails loudly with the variable's name
        return Check(name="domains", status=Status.fail, reason=str(exc))
    ram = ram_mb()
    shares, lines = {}, []
    for name, spec in sorted(domains.domains.items()):
        share: dict[str, Any] = {}
        if spec.gpu_memory_fraction is not None:
            share["gpu_memory_fraction"] = spec.gpu_memory_fraction
            share["gpu_mb"] = [round(spec.gpu_memory_fraction * v) for v in view.vram_mb]
            lines.append(
                f"{name}: {spec.gpu_memory_fraction:g} of each GPU = "
                + ", ".join(f"{mb / 1024:.1f} GB" for mb in share["gpu_mb"])
                if view.vram_mb
                else f"{name}: gpu_memory_fraction {spec.gpu_memory_fraction:g}, but no GPU here to share"
            )
        if spec.ram_fraction is not None:
            share["ram_fraction"] = spec.ram_fraction
            share["ram_mb"] = round(spec.ram_fraction * ram)
            lines.append(f"{name}: {spec.ram_fraction:g} of {ram / 1024:.1f} GB RAM = {share['ram_mb'] / 1024:.1f} GB")
        shares[name] = share
    reason = f"{named}: " + ("; ".join(lines) if lines else "no memory shares")
    return Check(name="domains", status=Status.ok, reason=reason, details={"file": str(named), "domains": shares})


def _env_path() -> Path | None:
    import os

    value = os.environ.get(DOMAINS_FILE_ENV)
    return Path(value) if value else None


def check_torch_cap(torch_view: TorchView, fraction: float = 0.05) -> Check:
    """Where CUDA answers: with the cap a domain share sets (`limit_gpu_memory`), an allocation over
    it is refused and one under it is served. Runs in this process, and lifts the cap after."""
    if torch_view.cuda_devices == 0:
        return Check(name="torch-cap", status=Status.ok, reason="no CUDA device here: no GPU memory to cap")
    import torch

    from services.common.gpu_share import limit_gpu_memory

    total = torch.cuda.get_device_properties(0).total_memory
    over, under = int(total * fraction * 1.5), int(total * fraction * 0.5)
    try:
        limit_gpu_memory("cuda:0", fraction)
        refused = _allocates(torch, over) is False
        served = _allocates(torch, under) is True
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, 0)
        torch.cuda.empty_cache()
    details = {"fraction": fraction, "over_mb": over // 2**20, "under_mb": under // 2**20, "refused": refused}
    details["served"] = served
    if refused and served:
        return Check(
            name="torch-cap",
            status=Status.ok,
            reason=f"a {fraction:g} share of GPU 0 refused {over / 2**30:.1f} GB and served {under / 2**30:.1f} GB",
            details=details,
        )
    return Check(
        name="torch-cap",
        status=Status.fail,
        reason=f"a {fraction:g} share of GPU 0 {'served' if not refused else 'refused'} {over / 2**30:.1f} GB "
        f"and {'served' if served else 'refused'} {under / 2**30:.1f} GB: the share is not in force",
        details=details,
    )


def _allocates(torch: Any, size: int) -> bool:
    try:
        block = torch.empty(size, dtype=torch.uint8, device="cuda:0")
    except torch.cuda.OutOfMemoryError:
        return False
    del block
    torch.cuda.empty_cache()
    return True


def check_disk(folders: list[Path], warn_below_gb: float, fail_below_gb: float) -> Check:
    """Free space where models are kept: each folder, or the nearest existing folder above it."""
    seen: dict[str, dict[str, Any]] = {}
    for folder in folders:
        existing = next(p for p in (folder, *folder.parents) if p.exists())
        usage = shutil.disk_usage(existing)
        seen[str(folder)] = {"checked_at": str(existing), "free_gb": round(usage.free / 2**30, 2)}
    least = min(seen.items(), key=lambda item: item[1]["free_gb"])
    free = least[1]["free_gb"]
    reason = "; ".join(f"{path}: {info['free_gb']:.1f} GB free" for path, info in seen.items())
    if free < fail_below_gb:
        status, reason = Status.fail, f"{reason}: under {fail_below_gb:g} GB, no model fits"
    elif free < warn_below_gb:
        status, reason = Status.warn, f"{reason}: under {warn_below_gb:g} GB, a 7B model in fp16 needs about 14"
    else:
        status = Status.ok
    return Check(name="disk", status=status, reason=reason, details={"folders": seen})
