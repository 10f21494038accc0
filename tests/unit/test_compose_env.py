"""`make compose-env`: every secret the compose file requires gets a fresh random value, the file is
owner-only, and an existing one is never overwritten."""

from __future__ import annotations

import re
import stat
from pathlib import Path

import pytest
import yaml

from contracts.streams import replicas_for
from services.compose_env import COMPOSE, STAND_INS, env_text, machine_values, main, write_env

REQUIRED = re.compile(r"\$\{(\w+):\?")


def values_of(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_every_required_variable_gets_a_fresh_url_safe_secret(tmp_path: Path) -> None:
    required = set(REQUIRED.findall((COMPOSE / "docker-compose.yml").read_text()))
    first, second = (
        values_of(env_text((COMPOSE / ".env.example").read_text())),
        values_of(env_text((COMPOSE / ".env.example").read_text())),
    )
    for name in required:
        assert re.fullmatch(r"[0-9a-f]{48}", first[name]), name
        assert first[name] != second[name], f"{name} is not random"
    assert first["MODALMESH_BIND"] == "127.0.0.1"  # the rest stays as the example has it


def test_the_file_is_owner_only_and_never_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / ".env"
    assert main([str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    before = path.read_text()
    assert main([str(path)]) == 1 and "exists" in capsys.readouterr().err
    assert path.read_text() == before
    with pytest.raises(FileExistsError):
        write_env(path)


def test_stand_ins_replace_only_missing_public_images_and_the_ca_comes_from_pip(tmp_path: Path) -> None:
    example = (COMPOSE / ".env.example").read_text()
    here = {STAND_INS["NATS_IMAGE"], STAND_INS["PYTHON_IMAGE"], "python:3.11-slim"}  # python's public image too
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    values = machine_values(example, here.__contains__, {"PIP_CERT": str(bundle), "SSL_CERT_FILE": "/nonexistent"})
    assert values == {"NATS_IMAGE": STAND_INS["NATS_IMAGE"], "BUILD_CA_FILE": str(bundle)}
    assert machine_values(example, lambda image: False, {}) == {}
    written = values_of(env_text(example, values))
    assert written["NATS_IMAGE"] == STAND_INS["NATS_IMAGE"] and written["PROMETHEUS_IMAGE"] == "prom/prometheus:v2.53.0"


def test_the_cluster_file_lists_every_server_for_every_service() -> None:
    cluster = yaml.safe_load((COMPOSE / "docker-compose.cluster.yml").read_text())["services"]
    members = [name for name, service in cluster.items() if name.startswith("nats")]
    assert len(members) == 3
    for name, service in cluster.items():
        url = service.get("environment", {}).get("MODALMESH_NATS_URL")
        if url is not None:
            assert [u.rsplit("@", 1)[1] for u in url.split(",")] == ["nats:4222", "nats-2:4222", "nats-3:4222"], name


@pytest.mark.parametrize(
    ("servers", "configured", "replicas"), [(1, 0, 1), (2, 0, 1), (3, 0, 3), (5, 0, 3), (3, 1, 1), (1, 2, 2)]
)
def test_replicas_follow_the_cluster_unless_configured(servers: int, configured: int, replicas: int) -> None:
    assert replicas_for(servers, configured) == replicas
