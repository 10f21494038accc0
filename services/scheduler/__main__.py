"""`python -m services.scheduler`: run the scheduler process."""

from __future__ import annotations

from services.common.bus import connect
from services.common.logs import setup_logging
from services.common.metrics import serve_metrics
from services.common.runtime import run
from services.common.shutdown import stop_event_on_signals
from services.common.tracing import setup_tracing
from services.scheduler.app import Scheduler
from services.scheduler.settings import SchedulerSettings


async def main() -> None:
    settings = SchedulerSettings()
    setup_logging("scheduler", settings.log_level)
    serve_metrics(settings.metrics_port)
    setup_tracing("scheduler")
    stop = stop_event_on_signals()
    bus = await connect(settings.nats_url, "scheduler", settings.nats_replicas)
    try:
        await Scheduler(settings, bus).run(stop)
    finally:
        await bus.close()


if __name__ == "__main__":
    run(main)
