"""`python -m services.workers`: run one worker process with the engine its settings name."""

from __future__ import annotations

import logging

from services.common.bus import connect
from services.common.logs import setup_logging
from services.common.runtime import run
from services.common.shutdown import stop_event_on_signals
from services.workers.engine import Engine
from services.workers.runner import Worker
from services.workers.settings import WorkerSettings

log = logging.getLogger("services.workers")


def build_engine(settings: WorkerSettings) -> Engine:
    if settings.engine == "llama_cpp":
        from services.workers.engines.llama_cpp import LlamaCppConfig, LlamaCppEngine
        from services.workers.tiny_model import ensure_tiny_gguf

        return LlamaCppEngine(
            LlamaCppConfig(
                model_id=settings.model_id,
                model_path=settings.model_path or ensure_tiny_gguf(),
                slots=settings.slots,
                n_ctx=settings.n_ctx,
                n_threads=settings.n_threads,
                n_gpu_layers=settings.n_gpu_layers,
            )
        )
    raise SystemExit(f"MODALMESH_WORKER_ENGINE={settings.engine!r} is not a known engine (llama_cpp)")


async def main() -> None:
    settings = WorkerSettings()
    setup_logging(f"worker[{settings.worker_id}]", settings.log_level)
    stop = stop_event_on_signals()
    engine = build_engine(settings)
    try:
        await engine.start()
        bus = await connect(settings.nats_url, f"worker-{settings.worker_id}")
        try:
            await Worker(settings, engine, bus).run(stop)
        finally:
            await bus.close()
    finally:
        await engine.cleanup()


if __name__ == "__main__":
    run(main)
