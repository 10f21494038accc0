"""NATS in `make run` mode: no connection without a password, and each service's user may only use the
subjects its job needs."""

from __future__ import annotations

import asyncio
import stat

import nats
import pytest

from services.devstack import LocalStack
from services.natsauth import NatsUsers

pytestmark = pytest.mark.e2e


def _users(stack: LocalStack) -> NatsUsers:
    return NatsUsers.load(stack.data / "nats-auth")


async def test_no_connection_without_a_valid_password(running_stack: LocalStack) -> None:
    for url in (
        f"nats://127.0.0.1:{running_stack.nats_port}",
        f"nats://gateway:wrong@127.0.0.1:{running_stack.nats_port}",
    ):
        with pytest.raises((nats.errors.Error, OSError)):
            await nats.connect(url, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)


def test_credentials_are_owner_only(running_stack: LocalStack) -> None:
    for name in ("nats-auth/users.json", "nats-auth/auth.conf", "supervisord.conf"):
        mode = stat.S_IMODE((running_stack.data / name).stat().st_mode)
        assert mode & 0o077 == 0, f"{name} is readable by others ({oct(mode)})"


@pytest.mark.parametrize(
    ("role", "allowed_pub", "denied_pub", "denied_sub"),
    [
        ("worker", "result.x", "req.chat", "req.>"),
        ("gateway", "req.chat", "assign.w1", "assign.>"),
        ("aggregator", "out.x", "result.x", "cancel.>"),
        ("monitor", "telemetry.n1", "out.x", "out.>"),
    ],
)
async def test_each_role_is_held_to_its_subjects(
    running_stack: LocalStack, role: str, allowed_pub: str, denied_pub: str, denied_sub: str
) -> None:
    violations: list[str] = []

    async def on_error(exc: Exception) -> None:
        violations.append(str(exc))

    nc = await nats.connect(
        _users(running_stack).url(role, "127.0.0.1", running_stack.nats_port),
        error_cb=on_error,
        max_reconnect_attempts=0,
    )
    try:
        await nc.publish(allowed_pub, b"{}")
        await nc.flush()
        await asyncio.sleep(0.2)
        assert violations == []
        await nc.publish(denied_pub, b"{}")
        await nc.subscribe(denied_sub)
        await nc.flush()
        for _ in range(50):
            if len(violations) >= 2:
                break
            await asyncio.sleep(0.05)
    finally:
        await nc.close()
    text = " ".join(violations).lower()
    assert "permissions violation" in text and denied_pub in " ".join(violations) and denied_sub in text
