"""`python -m services.workers`: run one worker process with the engine its settings name."""

from __future__ import annotations

import logging

from services.common.bus import connect
from services.common.confinement import confine, memory_limit_note
from services.common.domains import Domains, DomainSpec, default_domain
from services.common.gpu_share import share_budget_mb
from services.common.logs import setup_logging
from services.common.metrics import serve_metrics
from services.common.runtime import run
from services.common.shutdown import stop_event_on_signals
from services.common.tracing import setup_tracing
from services.workers.loading import trusted_weights
from services.workers.registry import build_engine
from services.workers.runner import Worker
from services.workers.settings import WorkerSettings

log = logging.getLogger("services.workers")


def host_memory_mb(settings: WorkerSettings, spec: DomainSpec) -> float:
    """The memory a host worker fills with models: MEMORY_MB, held within its domain's share."""
    share = share_budget_mb(spec, settings.device)
    if share is None:
        if not settings.memory_mb:
            raise SystemExit(
                "a host worker needs MODALMESH_WORKER_MEMORY_MB (the memory it may fill with models) "
                "or a domain with a memory share (ram_fraction, gpu_memory_fraction)"
            )
        return settings.memory_mb
    if settings.memory_mb > share:
        log.warning("MEMORY_MB %.0f is more than the domain's share leaves: %.0f MB", settings.memory_mb, share)
    return min(settings.memory_mb or share, share)


async def main() -> None:
    settings = WorkerSettings()
    setup_logging(f"worker[{settings.worker_id}]", settings.log_level)
    serve_metrics(settings.metrics_port)
    setup_tracing(f"worker {settings.worker_id}")
    stop = stop_event_on_signals()
    settings = await trusted_weights(settings)
    engine = build_engine(settings)
    domain = settings.domain or default_domain(engine.modalities)
    spec = Domains.load(settings.domains_file).spec(domain)
    confine(spec)  # before the engine starts its threads, which inherit it
    engine.gpu_memory_fraction = spec.gpu_memory_fraction
    if (host := engine.host()) is not None:
        host.memory_mb = host_memory_mb(settings, spec)
    try:
        try:
            await engine.start()
        except Exception:
            log.error("the engine did not start%s", memory_limit_note())
            raise
        bus = await connect(settings.nats_url, f"worker-{settings.worker_id}", settings.nats_replicas)
        try:
            await Worker(settings, engine, bus, domain=domain).run(stop)
        finally:
            await bus.close()
    finally:
        await engine.cleanup()


if __name__ == "__main__":
    run(main)
