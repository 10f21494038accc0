"""A real nats-server with JetStream, on a free port in a temp dir, for tests and benchmarks."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from services.devstack import free_port
from services.run import nats_server_binary


@dataclass
class NatsServer:
    store: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> NatsServer:
        self.port = self.port or free_port()
        log = self.store / "nats.log"
        self.store.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [nats_server_binary(), "-js", "-sd", str(self.store), "-a", "127.0.0.1", "-p", str(self.port),
             "-l", str(log)],
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # wait for its own word, not a fixed sleep
            if log.exists() and "Server is ready" in log.read_text(errors="ignore"):
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited: {log.read_text(errors='ignore')}")
            time.sleep(0.02)
        raise TimeoutError("nats-server did not become ready")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
