"""`docker compose up` of deploy/compose through testcontainers: the images build, every service
becomes healthy, and a chat goes through the gateway. Needs a Docker engine: skipped without one."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e
COMPOSE = Path(__file__).parents[2] / "deploy" / "compose"


def docker_engine_runs() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    if not docker_engine_runs():
        pytest.skip("no Docker engine here (docker info fails)")
    from testcontainers.compose import DockerCompose

    env = tmp_path_factory.mktemp("compose") / ".env"
    names = [
        line.split("=")[0]
        for line in (COMPOSE / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    values = {n: secrets.token_hex(16) for n in names if "PASSWORD" in n or "SECRET" in n or "KEY" in n}
    env.write_text("".join(f"{n}={v}\n" for n, v in values.items()))
    with DockerCompose(COMPOSE, compose_file_name="docker-compose.yml", env_file=str(env), build=True, wait=True):
        yield "http://127.0.0.1:8000", values["MODALMESH_API_KEY"]


def test_the_compose_fleet_answers_a_chat(fleet: tuple[str, str]) -> None:
    url, key = fleet
    res = httpx.post(
        f"{url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
        json={"model": "tiny-llama", "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert res.status_code == 200 and res.json()["choices"][0]["message"]["content"] is not None
