"""`python -m services.monitor`: run the monitor agent of this node."""

from __future__ import annotations

from services.common.bus import connect
from services.common.logs import setup_logging
from services.common.runtime import run
from services.common.shutdown import stop_event_on_signals
from services.monitor.agent import MonitorAgent, open_sources
from services.monitor.exporter import Exporter
from services.monitor.settings import MonitorSettings


async def main() -> None:
    settings = MonitorSettings()
    setup_logging(f"monitor[{settings.node}]", settings.log_level)
    stop = stop_event_on_signals()
    sources = open_sources(settings.sources)
    exporter = Exporter()
    if settings.metrics_port:
        exporter.serve(settings.metrics_port, settings.metrics_addr)
    bus = await connect(settings.nats_url, f"monitor-{settings.node}", settings.nats_replicas)
    try:
        await MonitorAgent(settings, bus, sources, exporter).run(stop)
    finally:
        await bus.close()


if __name__ == "__main__":
    run(main)
