"""The monitor agent: picks the sources this node has, publishes telemetry and capabilities,
exports Prometheus metrics and raises threshold alerts."""

from __future__ import annotations

import asyncio
import logging
import os
import platform

from contracts import streams, subjects
from contracts.telemetry import NodeCapabilities, NodeTelemetry
from services.common.alert_rules import AlertKey, evaluate_thresholds
from services.common.alerts import publish_alert
from services.common.bus import Bus
from services.common.shutdown import wait_or_stop
from services.monitor.exporter import Exporter
from services.monitor.settings import MonitorSettings
from services.monitor.sources import Reading, Source

log = logging.getLogger(__name__)
CAPABILITIES_REFRESH_S = 30.0


def make_source(name: str) -> Source:
    if name == "nvml":
        from services.monitor.sources.nvml import NvmlSource

        return NvmlSource()
    if name == "jtop":
        from services.monitor.sources.jtop import JtopSource

        return JtopSource()
    if name == "psutil":
        from services.monitor.sources.host import HostSource

        return HostSource()
    raise ValueError(f"unknown telemetry source {name!r} (nvml, jtop, psutil)")


def open_sources(names: tuple[str, ...]) -> list[Source]:
    """Every source that works on this node; says in the log which ones and why the others do not."""
    opened = []
    for name in names:
        source = make_source(name)
        why_not = source.open()
        if why_not is None:
            opened.append(source)
            log.info("telemetry source %s: on", name)
        else:
            log.info("telemetry source %s: off (%s)", name, why_not)
    return opened


def merge(node: str, readings: list[Reading]) -> NodeTelemetry:
    host = next((r for r in readings if r.cpu_pct is not None), Reading(cpu_pct=0.0, mem_used_mb=0, mem_total_mb=0))
    return NodeTelemetry(
        node=node,
        cpu_pct=host.cpu_pct or 0.0,
        mem_used_mb=host.mem_used_mb or 0.0,
        mem_total_mb=host.mem_total_mb or 0.0,
        load1=host.load1 or 0.0,
        gpus=tuple(g for r in readings for g in r.gpus),
        power_rails_w={k: v for r in readings for k, v in r.power_rails_w.items()},
        temps_c={k: v for r in readings for k, v in r.temps_c.items()},
    )


def capabilities(settings: MonitorSettings, sources: list[Source], telemetry: NodeTelemetry) -> NodeCapabilities:
    static = [s.static() for s in sources]
    return NodeCapabilities(
        node=settings.node,
        arch=platform.machine(),
        cpu_cores=os.cpu_count() or 1,
        mem_total_mb=telemetry.mem_total_mb,
        gpus=tuple(g for info in static for g in info.gpus),
        jetson_model=next((i.jetson_model for i in static if i.jetson_model), None),
        labels=settings.labels,
        sources=tuple(s.name for s in sources),
    )


class MonitorAgent:
    def __init__(self, settings: MonitorSettings, bus: Bus, sources: list[Source], exporter: Exporter) -> None:
        self.settings = settings
        self.bus = bus
        self.sources = sources
        self.exporter = exporter
        self.rules = settings.rules()
        self.firing: frozenset[AlertKey] = frozenset()

    def sample(self) -> NodeTelemetry:
        return merge(self.settings.node, [s.read() for s in self.sources])

    async def run(self, stop: asyncio.Event) -> None:
        kv = await self.bus.js.key_value(streams.KV_NODES)
        loop = asyncio.get_running_loop()
        last_caps = -CAPABILITIES_REFRESH_S
        while not stop.is_set():
            telemetry = await asyncio.to_thread(self.sample)
            if loop.time() - last_caps >= CAPABILITIES_REFRESH_S:
                caps = capabilities(self.settings, self.sources, telemetry)
                await kv.put(self.settings.node, caps.encode())
                last_caps = loop.time()
            await self.bus.nc.publish(subjects.telemetry(self.settings.node), telemetry.encode())
            self.exporter.update(telemetry)
            alerts, self.firing = evaluate_thresholds(self.rules, telemetry, self.firing)
            for alert in alerts:
                await publish_alert(self.bus, alert, self.settings.webhook_url)
            await wait_or_stop(stop, self.settings.interval_s)
        for source in self.sources:
            source.close()
