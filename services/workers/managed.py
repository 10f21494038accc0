"""A server process the worker owns: `vllm serve`, `llama-server`, `python -m llama_cpp.server`.

The worker starts it on a free port, waits until it answers, restarts it with growing back-off when
it exits, keeps its output in a log file, and stops it (SIGTERM, then SIGKILL) when the worker
stops, which frees its GPU memory. Its state (`starting / running / error / stopped`) goes out in the
worker's heartbeat, and the scheduler sends no work while it is not running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger(__name__)


class ProcessState(str, Enum):
    starting = "starting"
    running = "running"
    error = "error"
    stopped = "stopped"


@dataclass
class ManagedServer:
    """`command` may hold `{port}`, filled with the port the server is given."""

    command: str
    port: int
    health_path: str = "/v1/models"
    log_path: Path | None = None
    ready_timeout_s: float = 300.0  # big models take minutes to load
    backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
    env: dict[str, str] = field(default_factory=dict)
    state: ProcessState = ProcessState.stopped
    detail: str = ""
    restarts: int = 0
    _process: asyncio.subprocess.Process | None = None
    _watch: asyncio.Task[None] | None = None
    _stopping: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def start(self) -> None:
        """Start it and wait until it answers; from then on, a crash is restarted by itself."""
        await self._launch()
        await self._wait_ready()
        self._watch = asyncio.create_task(self._supervise())

    async def _launch(self) -> None:
        self.state, self.detail = ProcessState.starting, ""
        argv = shlex.split(self.command.format(port=self.port))
        output = self._log_file()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *argv, stdout=output, stderr=asyncio.subprocess.STDOUT, env={**os.environ, **self.env},
                start_new_session=True,  # its own group: stopping it stops what it started
            )
        finally:
            if not isinstance(output, int):
                output.close()
        log.info("started %s (pid %s)", argv[0], self._process.pid)

    def _log_file(self) -> Any:
        """Where the server's output goes: appended to `log_path`, kept across restarts."""
        return self.log_path.open("ab") if self.log_path else asyncio.subprocess.DEVNULL

    async def _wait_ready(self) -> None:
        deadline = asyncio.get_running_loop().time() + self.ready_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while asyncio.get_running_loop().time() < deadline:
                if self._process is not None and self._process.returncode is not None:
                    self._fail(f"exited with {self._process.returncode} while starting")
                    raise RuntimeError(self.detail)
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(self.base_url + self.health_path)).status_code == 200:
                        self.state, self.detail = ProcessState.running, ""
                        return
                await asyncio.sleep(0.2)
        self._fail(f"did not answer {self.health_path} within {self.ready_timeout_s:.0f} s")
        raise RuntimeError(self.detail)

    def _fail(self, why: str) -> None:
        self.state, self.detail = ProcessState.error, why
        log.warning("managed server: %s", why)

    async def _supervise(self) -> None:
        """Restart the server whenever it exits, waiting longer after each failure in a row."""
        failures = 0
        while not self._stopping:
            assert self._process is not None
            code = await self._process.wait()
            if self._stopping:
                return
            self._fail(f"exited with {code}")
            delay = self.backoff_s[min(failures, len(self.backoff_s) - 1)]
            await asyncio.sleep(delay)
            try:
                await self._launch()
                await self._wait_ready()
                self.restarts += 1
                failures = 0
            except (RuntimeError, OSError) as exc:
                failures += 1
                self._fail(f"restart failed: {exc}")
                if self._process is not None and self._process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(self._process.pid, signal.SIGKILL)  # alive but not answering: start over

    async def stop(self, grace_s: float = 10.0) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace_s)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
        self.state, self.detail = ProcessState.stopped, ""
