"""Monitor pieces that need no hardware: the TFLOPS table, throttle bits, DCGM-named metrics, merging."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from contracts.telemetry import GpuSample, NodeTelemetry
from services.monitor.agent import merge
from services.monitor.exporter import Exporter
from services.monitor.gpus import estimate_fp16_tflops
from services.monitor.sources import Reading
from services.monitor.sources.nvml import NvmlSource, throttle_names


def test_tflops_table_matches_the_longest_name() -> None:
    assert estimate_fp16_tflops("NVIDIA H100 PCIe") == 756.0
    assert estimate_fp16_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert estimate_fp16_tflops("NVIDIA GeForce RTX 3060") == 25.0
    assert estimate_fp16_tflops("Jetson AGX Orin") == 85.0
    assert estimate_fp16_tflops("Some Future GPU") is None


def test_throttle_reason_bits() -> None:
    assert throttle_names(0x40 | 0x4) == ("sw_power_cap", "hw_thermal_slowdown")
    assert throttle_names(0) == ()


def test_nvml_says_why_it_is_off_on_a_machine_without_gpu() -> None:
    source = NvmlSource()
    reason = source.open()
    if reason is None:  # a GPU machine: then it must see at least one GPU
        assert source.static().gpus
        source.close()
    else:
        assert reason  # a message for the log, not an exception


def test_exporter_uses_dcgm_names_and_labels() -> None:
    registry = CollectorRegistry()
    exporter = Exporter(registry)
    gpu = GpuSample(
        index=0,
        uuid="GPU-1",
        name="NVIDIA L4",
        util_pct=42,
        mem_used_mb=1000,
        mem_total_mb=23034,
        temp_c=61,
        power_w=70.5,
        throttle_reasons=("hw_thermal_slowdown",),
    )
    exporter.update(NodeTelemetry(node="n1", cpu_pct=12, mem_used_mb=100, mem_total_mb=200, gpus=(gpu,)))
    text = generate_latest(registry).decode()
    labels = 'Hostname="n1",UUID="GPU-1",gpu="0",modelName="NVIDIA L4"'
    assert f"DCGM_FI_DEV_GPU_UTIL{{{labels}}} 42.0" in text
    assert f"DCGM_FI_DEV_FB_FREE{{{labels}}} 22034.0" in text
    assert f"DCGM_FI_DEV_GPU_TEMP{{{labels}}} 61.0" in text
    assert f"modalmesh_gpu_thermal_throttled{{{labels}}} 1.0" in text
    assert 'modalmesh_node_cpu_percent{Hostname="n1"} 12.0' in text


def test_merge_takes_host_figures_and_every_gpu() -> None:
    g = GpuSample(index=0, util_pct=1, mem_used_mb=1, mem_total_mb=2)
    t = merge("n1", [Reading(gpus=[g]), Reading(cpu_pct=5, mem_used_mb=10, mem_total_mb=20, load1=0.5)])
    assert (t.cpu_pct, t.mem_total_mb, t.load1, t.gpus) == (5, 20, 0.5, (g,))
