"""A server the worker owns: a `vllm serve`, `llama-server` or `python -m llama_cpp.server` process,
or the same in a Docker container (through the Docker SDK, where a Docker engine runs).

The worker starts it on a free port, waits until it answers, restarts it with growing back-off when
it exits, keeps its output in a log file, and stops it (SIGTERM, then SIGKILL) when the worker
stops, which frees its GPU memory. Its state (`starting / running / error / stopped`) goes out in the
worker's heartbeat, and the scheduler sends no work while it is not running.
"""

from __future__ import annotations

import abc
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
class Supervised(abc.ABC):
    """Start, health-check, restart with back-off and stop a server on `port`; how it runs (a
    process, a container) is the subclass's."""

    port: int
    health_path: str = "/v1/models"
    log_path: Path | None = None
    ready_timeout_s: float = 300.0  # big models take minutes to load
    backoff_s: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
    env: dict[str, str] = field(default_factory=dict)
    state: ProcessState = ProcessState.stopped
    detail: str = ""
    restarts: int = 0
    _watch: asyncio.Task[None] | None = None
    _stopping: bool = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @abc.abstractmethod
    async def _launch(self) -> None:
        """Start one run of the server."""

    @abc.abstractmethod
    def _exit_code(self) -> int | None:
        """The run's exit status once it ended, else None."""

    @abc.abstractmethod
    async def _wait_exit(self) -> int:
        """Wait for the run to end; its exit status."""

    @abc.abstractmethod
    async def _end(self, grace_s: float) -> None:
        """End the run: asked to stop, forced after `grace_s`. Also when it hangs (grace 0)."""

    async def start(self) -> None:
        """Start it and wait until it answers; from then on, a crash is restarted by itself."""
        self._stopping = False
        await self._begin()
        await self._wait_ready()
        self._watch = asyncio.create_task(self._supervise())

    async def _begin(self) -> None:
        self.state, self.detail = ProcessState.starting, ""
        await self._launch()

    async def _wait_ready(self) -> None:
        deadline = asyncio.get_running_loop().time() + self.ready_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while asyncio.get_running_loop().time() < deadline:
                if (code := self._exit_code()) is not None:
                    self._fail(f"exited with {code} while starting")
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
            code = await self._wait_exit()
            if self._stopping:
                return
            self._fail(f"exited with {code}")
            await asyncio.sleep(self.backoff_s[min(failures, len(self.backoff_s) - 1)])
            try:
                await self._begin()
                await self._wait_ready()
                self.restarts += 1
                failures = 0
            except (RuntimeError, OSError) as exc:
                failures += 1
                self._fail(f"restart failed: {exc}")
                if self._exit_code() is None:
                    await self._end(0.0)  # alive but not answering: start over

    async def stop(self, grace_s: float = 10.0) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
        await self._end(grace_s)
        self.state, self.detail = ProcessState.stopped, ""


@dataclass
class ManagedServer(Supervised):
    """A server process. `command` may hold `{port}`, filled with the port the server is given."""

    command: str = ""
    _process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def _launch(self) -> None:
        argv = shlex.split(self.command.format(port=self.port))
        output = self._log_file()
        try:
            self._process = await asyncio.create_subprocess_exec(
                *argv,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,  # its own group: stopping it stops what it started
            )
        finally:
            if not isinstance(output, int):
                output.close()
        log.info("started %s (pid %s)", argv[0], self._process.pid)

    def _log_file(self) -> Any:
        """Where the server's output goes: appended to `log_path`, kept across restarts."""
        return self.log_path.open("ab") if self.log_path else asyncio.subprocess.DEVNULL

    def _exit_code(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    async def _wait_exit(self) -> int:
        assert self._process is not None
        return await self._process.wait()

    async def _end(self, grace_s: float) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM if grace_s > 0 else signal.SIGKILL)
        try:
            await asyncio.wait_for(process.wait(), grace_s or None)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


@dataclass
class ContainerServer(Supervised):
    """A server in a Docker container: `image` run with `args` (`{port}` filled with the port inside
    it), that port published on 127.0.0.1:`port`, `gpus` ("all" or "0,1") passed through."""

    image: str = ""
    args: str = ""
    container_port: int = 8000
    gpus: str | None = None
    volumes: dict[str, str] = field(default_factory=dict)  # host path -> path inside
    name: str | None = None
    _container: Any = None
    _exited: asyncio.Future[int] | None = None  # the container's exit status, once it exits

    @property
    def container_id(self) -> str | None:
        return self._container.id if self._container is not None else None

    async def _launch(self) -> None:
        import docker
        from docker.types import DeviceRequest

        client = docker.from_env()
        devices = []
        if self.gpus:
            ids = None if self.gpus == "all" else self.gpus.split(",")
            devices = [DeviceRequest(count=-1 if ids is None else None, device_ids=ids, capabilities=[["gpu"]])]
        self._container = await asyncio.to_thread(
            client.containers.run,
            self.image,
            shlex.split(self.args.format(port=self.container_port)) or None,
            detach=True,
            name=self.name,
            environment=self.env,
            device_requests=devices,
            ports={f"{self.container_port}/tcp": ("127.0.0.1", self.port)},
            volumes={host: {"bind": inside, "mode": "ro"} for host, inside in self.volumes.items()},
            labels={"modalmesh.managed": "true"},
        )
        self._exited = asyncio.ensure_future(asyncio.to_thread(_exit_status, self._container))
        log.info("started container %s of %s", self._container.short_id, self.image)

    def _exit_code(self) -> int | None:
        return self._exited.result() if self._exited is not None and self._exited.done() else None

    async def _wait_exit(self) -> int:
        assert self._exited is not None
        code = await self._exited
        await self._keep_logs_and_remove()
        return code

    async def _end(self, grace_s: float) -> None:
        container = self._container
        if container is None:
            return
        with contextlib.suppress(Exception):  # already gone
            await asyncio.to_thread(container.stop, timeout=int(grace_s))
        await self._keep_logs_and_remove()

    async def _keep_logs_and_remove(self) -> None:
        container, self._container = self._container, None
        if container is None:
            return
        with contextlib.suppress(Exception):
            logs = await asyncio.to_thread(container.logs)
            if self.log_path is not None:
                with self.log_path.open("ab") as out:
                    out.write(logs)
            await asyncio.to_thread(container.remove, force=True)


def _exit_status(container: Any) -> int:
    """Block until `container` exits; its exit status (-1 when the daemon cannot say)."""
    try:
        return int(container.wait().get("StatusCode", -1))
    except Exception:  # removed under us, or the daemon went away
        return -1
