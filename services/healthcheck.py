"""`python -m services.healthcheck`: a container's health check. Exit 0 when the service answers at
`MODALMESH_HEALTH_URL` (its /metrics, or the gateway's /healthz), 1 otherwise; standard library
only, so it runs in every image."""

from __future__ import annotations

import os
import sys
import urllib.request

DEFAULT_URL = "http://127.0.0.1:9100/metrics"


def main() -> int:
    url = os.environ.get("MODALMESH_HEALTH_URL", DEFAULT_URL)
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
