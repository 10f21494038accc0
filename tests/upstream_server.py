"""A real OpenAI-compatible server for tests: `python -m llama_cpp.server` serving the tiny GGUF."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx

from services.devstack import free_port
from services.workers.tiny_model import ensure_tiny_gguf

ALIAS = "tiny-upstream"


@dataclass
class LlamaServer:
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 60.0) -> LlamaServer:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(ensure_tiny_gguf()), "--model_alias", ALIAS,
             "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", "2048"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:  # until it answers, not a fixed sleep
            if self.process.poll() is not None:
                raise RuntimeError("llama_cpp.server exited at start")
            try:
                if httpx.get(f"{self.url}/models", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("llama_cpp.server did not answer in time")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
