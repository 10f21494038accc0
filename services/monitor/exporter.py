"""Prometheus metrics of a node. GPU figures carry DCGM-exporter's names and labels, so existing
DCGM dashboards work unchanged; node figures are `modalmesh_node_*`."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, start_http_server

from contracts.telemetry import NodeTelemetry

GPU_LABELS = ("gpu", "UUID", "modelName", "Hostname")


class Exporter:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry

        def gpu(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, GPU_LABELS, registry=r)

        self.gpu_util = gpu("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).")
        self.fb_used = gpu("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).")
        self.fb_free = gpu("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).")
        self.gpu_temp = gpu("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).")
        self.power = gpu("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).")
        self.sm_clock = gpu("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).")
        self.mem_clock = gpu("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).")
        self.throttled = gpu("modalmesh_gpu_thermal_throttled", "1 while the GPU is thermally throttled.")
        self.cpu = Gauge("modalmesh_node_cpu_percent", "CPU utilization (in %).", ["Hostname"], registry=r)
        self.mem_used = Gauge("modalmesh_node_memory_used_bytes", "RAM in use.", ["Hostname"], registry=r)
        self.mem_total = Gauge("modalmesh_node_memory_total_bytes", "RAM installed.", ["Hostname"], registry=r)
        self.load1 = Gauge("modalmesh_node_load1", "1-minute load average.", ["Hostname"], registry=r)
        self.gpus = Gauge("modalmesh_node_gpus", "GPUs seen on the node.", ["Hostname"], registry=r)

    def update(self, t: NodeTelemetry) -> None:
        self.cpu.labels(t.node).set(t.cpu_pct)
        self.mem_used.labels(t.node).set(t.mem_used_mb * 2**20)
        self.mem_total.labels(t.node).set(t.mem_total_mb * 2**20)
        self.load1.labels(t.node).set(t.load1)
        self.gpus.labels(t.node).set(len(t.gpus))
        for g in t.gpus:
            labels = (str(g.index), g.uuid, g.name, t.node)
            self.gpu_util.labels(*labels).set(g.util_pct)
            self.fb_used.labels(*labels).set(g.mem_used_mb)
            self.fb_free.labels(*labels).set(g.mem_free_mb)
            self.throttled.labels(*labels).set(1 if g.thermally_throttled else 0)
            for gauge, value in (
                (self.gpu_temp, g.temp_c),
                (self.power, g.power_w),
                (self.sm_clock, g.sm_clock_mhz),
                (self.mem_clock, g.mem_clock_mhz),
            ):
                if value is not None:
                    gauge.labels(*labels).set(value)

    def serve(self, port: int, addr: str = "0.0.0.0") -> None:
        start_http_server(port, addr=addr, registry=self.registry)
