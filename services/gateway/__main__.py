"""`python -m services.gateway`: serve the HTTP API with uvicorn."""

from __future__ import annotations

import uvicorn

from services.common.logs import setup_logging
from services.common.tracing import setup_tracing
from services.gateway.app import create_app
from services.gateway.settings import GatewaySettings


def main() -> None:
    settings = GatewaySettings()
    setup_logging("gateway", settings.log_level)
    setup_tracing("gateway")
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level="warning", timeout_graceful_shutdown=10
    )


if __name__ == "__main__":
    main()
