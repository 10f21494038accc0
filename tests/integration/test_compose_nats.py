"""The compose file's NATS configuration on a real nats-server: the generated users file is the one
checked in, passwords come from the environment, and each role is held to its subjects."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
import pytest

from services.devstack import NatsServer
from services.natsauth import ADMIN, ROLES, compose_conf, password_variable

NATS_DIR = Path(__file__).parents[2] / "deploy" / "compose" / "nats"


def test_the_checked_in_users_file_is_the_generated_one() -> None:
    assert (NATS_DIR / "auth.conf").read_text() == compose_conf(), (
        "deploy/compose/nats/auth.conf is stale: python -m services.natsauth compose > deploy/compose/nats/auth.conf"
    )


async def test_each_role_logs_in_with_its_password_from_the_environment_and_keeps_to_its_subjects(
    tmp_path: Path,
) -> None:
    passwords = {user: f"pw-{user}-0123456789" for user in (ADMIN, *ROLES)}
    config = tmp_path / "nats.conf"  # the compose file's, with its store here rather than in /data
    config.write_text((NATS_DIR / "nats.conf").read_text().replace("store_dir: /data", f"store_dir: {tmp_path}/js"))
    (tmp_path / "auth.conf").write_text((NATS_DIR / "auth.conf").read_text())
    server = NatsServer(
        store=tmp_path, config=config, env={password_variable(user): pw for user, pw in passwords.items()}
    ).start()
    errors: list[Exception] = []

    async def on_error(exc: Exception) -> None:
        errors.append(exc)

    try:
        url = f"127.0.0.1:{server.port}"
        with pytest.raises(nats.errors.Error, match="Authorization"):  # a wrong password is refused
            await nats.connect(
                f"nats://gateway:wrong@{url}", allow_reconnect=False, max_reconnect_attempts=0, connect_timeout=2
            )
        gateway = await nats.connect(f"nats://gateway:{passwords['gateway']}@{url}", error_cb=on_error)
        js = gateway.jetstream()
        await js.add_stream(name="PROBE", subjects=["req.probe"])
        assert (await js.publish("req.probe", b"x")).seq == 1  # its own subject: allowed
        await gateway.publish("assign.someone", b"x")  # the scheduler's: refused
        await gateway.flush()
        for _ in range(50):
            if errors:
                break
            await asyncio.sleep(0.02)
        assert any("permissions violation" in str(e).lower() for e in errors), errors
        await gateway.close()
        admin = await nats.connect(f"nats://admin:{passwords['admin']}@{url}")
        await admin.publish("assign.someone", b"x")  # the admin may
        await admin.flush()
        await admin.close()
    finally:
        server.stop()
