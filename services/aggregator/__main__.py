"""`python -m services.aggregator`: run the aggregator process."""

from __future__ import annotations

from services.aggregator.app import Aggregator
from services.common.bus import connect
from services.common.logs import setup_logging
from services.common.metrics import serve_metrics
from services.common.runtime import run
from services.common.settings import ServiceSettings
from services.common.shutdown import stop_event_on_signals
from services.common.tracing import setup_tracing


async def main() -> None:
    settings = ServiceSettings()
    setup_logging("aggregator", settings.log_level)
    serve_metrics(settings.metrics_port)
    setup_tracing("aggregator")
    stop = stop_event_on_signals()
    bus = await connect(settings.nats_url, "aggregator", settings.nats_replicas)
    try:
        await Aggregator(bus).run(stop)
    finally:
        await bus.close()


if __name__ == "__main__":
    run(main)
