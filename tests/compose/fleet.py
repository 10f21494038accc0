"""A compose project driven from the tests: `docker compose` with a fresh `.env` (random secrets, free
host ports on 127.0.0.1), built, brought up and waited on, then taken down with its volumes."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from services.compose_env import env_text

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose"
PORTS = ("MODALMESH_GATEWAY_PORT", "MODALMESH_NATS_PORT", "MODALMESH_NATS_MONITOR_PORT", "MODALMESH_PROMETHEUS_PORT")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ComposeFleet:
    project: str
    workdir: Path
    files: tuple[str, ...] = ("docker-compose.yml",)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        text = env_text((COMPOSE / ".env.example").read_text())
        values = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
        values.update({name: str(free_port()) for name in PORTS})
        values["MODALMESH_BIND"] = "127.0.0.1"
        # The images the run script chose (local stand-ins here), and the build's CA bundle.
        for name in ("PYTHON_IMAGE", "NODE_IMAGE", "NATS_IMAGE", "PROMETHEUS_IMAGE", "BUILD_CA_FILE"):
            if os.environ.get(name):
                values[name] = os.environ[name]
        self.env = values
        self.env_file = self.workdir / ".env"
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        self.env_file.chmod(0o600)

    def compose(self, *args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        command = ["docker", "compose", "--env-file", str(self.env_file), "-p", self.project]
        for name in self.files:
            command += ["-f", str(COMPOSE / name)]
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, check=check, timeout=timeout, cwd=COMPOSE
        )

    def up(self, *services: str, scale: dict[str, int] | None = None) -> None:
        """Up and healthy. tests/compose/run.sh has built every image; compose builds one only if missing."""
        scaling = [arg for name, n in (scale or {}).items() for arg in ("--scale", f"{name}={n}")]
        up = self.compose("up", "-d", "--wait", "--wait-timeout", "300", *scaling, *services, check=False)
        if up.returncode:
            self.save_logs()
            raise RuntimeError(f"docker compose up failed:\n{up.stderr[-4000:]}\n(logs in {self.workdir})")

    def down(self) -> None:
        self.save_logs()
        self.compose("down", "-v", "--remove-orphans", "--timeout", "10", check=False)

    def save_logs(self) -> None:
        logs = self.compose("logs", "--no-color", "--timestamps", check=False)
        (self.workdir / "compose.log").write_text(logs.stdout + logs.stderr)

    def containers(self, service: str) -> list[str]:
        """Names of the running containers of a service."""
        out = self.compose("ps", "--format", "{{.Name}}", service).stdout
        return [line for line in out.split() if line]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.env['MODALMESH_GATEWAY_PORT']}/v1"

    @property
    def api_key(self) -> str:
        return self.env["MODALMESH_API_KEY"]

    def nats_url(self, user: str, password: str | None = None) -> str:
        secret = password if password is not None else self.env[f"NATS_{user.upper()}_PASSWORD"]
        return f"nats://{user}:{secret}@127.0.0.1:{self.env['MODALMESH_NATS_PORT']}"

    def wait_for_model(self, model: str, live: int = 1, within_s: float = 120) -> None:
        """Until the gateway lists the model with at least `live` workers (heartbeats seen)."""
        deadline = time.monotonic() + within_s
        headers = {"Authorization": f"Bearer {self.api_key}"}
        while True:
            try:
                workers = httpx.get(f"{self.api}/workers", headers=headers, timeout=5).json()["data"]
                serving = [w for w in workers if model in w["models"] and w["state"] == "ready"]
                if len(serving) >= live:
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{model}: fewer than {live} live workers after {within_s} s")
            time.sleep(1)
