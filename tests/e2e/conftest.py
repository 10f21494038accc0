"""The whole stack as OS processes, started by the same launcher as `make run`."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.natsserver import free_port


@dataclass
class RunningStack:
    url: str
    nats_url: str
    data: Path
    launcher: subprocess.Popen[str]

    def service_pids(self, module: str) -> list[int]:
        """PIDs of this stack's processes running `python -m <module>` (children of its supervisord)."""
        sup = int((self.data / "supervisord.pid").read_text())
        pids = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if int(stat[1]) == sup and f"-m {module}" in cmd:
                pids.append(int(proc.name))
        return pids


@pytest.fixture(scope="session")
def running_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    data = Path(tmp_path_factory.mktemp("stack"))
    port, nats_port = free_port(), free_port()
    env = {**os.environ, "MODALMESH_DEAD_AFTER_S": "2", "MODALMESH_LOG_LEVEL": "INFO"}
    launcher = subprocess.Popen(
        [sys.executable, "-m", "services.run", "--port", str(port), "--nats-port", str(nats_port),
         "--data-dir", str(data), "--ready-timeout", "120"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    assert launcher.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in launcher.stdout], daemon=True).start()  # type: ignore[union-attr]
    seen: list[str] = []
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and not any("ModalMesh is up" in line for line in seen):
        try:
            seen.append(lines.get(timeout=1.0))
        except queue.Empty:
            if launcher.poll() is not None:
                break
    if not any(f"open http://127.0.0.1:{port}" in line for line in seen):
        launcher.kill()
        logs = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in (data / "logs").glob("*.log"))
        pytest.fail("stack did not start:\n" + "".join(seen) + logs)
    stack = RunningStack(f"http://127.0.0.1:{port}", f"nats://127.0.0.1:{nats_port}", data, launcher)
    try:
        yield stack
    finally:
        launcher.send_signal(signal.SIGINT)  # what Ctrl-C does
        try:
            launcher.wait(60)
        except subprocess.TimeoutExpired:
            launcher.kill()
