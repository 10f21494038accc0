"""For tests and benchmarks: the whole embedded stack (`python -m services.run`) as a context manager,
and a bare nats-server with JetStream on a free port."""

from __future__ import annotations

import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from services.common.ports import free_port
from services.natsauth import ADMIN, NatsUsers
from services.run import nats_server_binary
from services.workers.tiny_model import ensure_tiny_gguf


class StackDidNotStart(RuntimeError):
    pass


@dataclass
class LocalStack:
    """Starts the launcher on free ports under `data`, waits for its "ModalMesh is up" line, and on
    exit sends SIGINT as Ctrl-C would."""

    data: Path
    env: dict[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 150.0
    workers: int = 1
    modalities: str = "text"  # the launcher's --modalities; "text,embedding,image,speech" for all
    port: int = field(default_factory=free_port)
    nats_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    api_key: str = field(default_factory=lambda: "test-" + secrets.token_hex(16))
    output: list[str] = field(default_factory=list)
    _launcher: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    @property
    def nats_url(self) -> str:
        """The stack's NATS as its admin user (the launcher made the users when it started)."""
        return NatsUsers.load(self.data / "nats-auth").url(ADMIN, "127.0.0.1", self.nats_port)

    def __enter__(self) -> LocalStack:
        self._launcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.run",
                "--port",
                str(self.port),
                "--nats-port",
                str(self.nats_port),
                "--metrics-port",
                str(self.metrics_port),
                "--data-dir",
                str(self.data),
                "--ready-timeout",
                str(self.ready_timeout_s),
                "--workers",
                str(self.workers),
                "--modalities",
                self.modalities,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "MODALMESH_API_KEY": self.api_key, **self.env},
        )
        lines: queue.Queue[str] = queue.Queue()
        stdout = self._launcher.stdout
        assert stdout is not None

        def pump() -> None:
            for line in stdout:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + self.ready_timeout_s + 10
        while time.monotonic() < deadline:
            try:
                self.output.append(lines.get(timeout=1.0))
            except queue.Empty:
                if self._launcher.poll() is not None:
                    break
                continue
            if f"open {self.url}" in self.output[-1]:
                return self
        self.__exit__(None, None, None)
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in (self.data / "logs").glob("*.log"))
        raise StackDidNotStart("".join(self.output) + logs)

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._launcher is None:
            return
        self._launcher.send_signal(signal.SIGINT)
        try:
            self._launcher.wait(60)
        except subprocess.TimeoutExpired:
            self._launcher.kill()

    def service_pids(self, module: str) -> list[int]:
        """PIDs of this stack's processes running `python -m <module>` (children of its supervisord)."""
        return self.child_pids(f"-m {module}")

    def worker_pid(self, worker_id: str) -> int | None:
        """PID of the worker process with this id."""
        for pid in self.service_pids("services.workers"):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"MODALMESH_WORKER_WORKER_ID={worker_id}".encode() in env:
                return pid
        return None

    def child_pids(self, fragment: str) -> list[int]:
        """PIDs of this stack's processes whose command line contains `fragment`."""
        sup = int((self.data / "supervisord.pid").read_text())
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if parent == sup and fragment in cmd:
                pids.append(int(proc.name))
        return pids


@dataclass
class NatsServer:
    store: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    config: Path | None = None  # a config file with its own JetStream store (and users, say)
    env: dict[str, str] | None = None  # the server's environment, for `$VAR`s in the config

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 15.0) -> NatsServer:
        self.port = self.port or free_port()
        log = self.store / "nats.log"
        self.store.mkdir(parents=True, exist_ok=True)
        log.unlink(missing_ok=True)  # a restart waits for this run's "ready", not the last run's
        # With a config file, its monitoring port moves to a free one too; its store stays its own.
        store = (
            ["-c", str(self.config), "-m", str(free_port())]
            if self.config is not None
            else ["-js", "-sd", str(self.store)]
        )
        self.process = subprocess.Popen(
            [nats_server_binary(), *store, "-a", "127.0.0.1", "-p", str(self.port), "-l", str(log)],
            env={**os.environ, **(self.env or {})},
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


ALIAS = "tiny-upstream"


@dataclass
class LlamaServer:
    """A real OpenAI-compatible server: `python -m llama_cpp.server` on a GGUF (the tiny one by default)."""

    model: Path | None = None
    alias: str = ALIAS
    threads: int | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, timeout_s: float = 60.0) -> LlamaServer:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(self.model or ensure_tiny_gguf()),
                "--model_alias",
                self.alias,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--n_ctx",
                "2048",
                *(["--n_threads", str(self.threads)] if self.threads else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
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
