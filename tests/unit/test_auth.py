"""API keys: hashed storage, scopes, and the OpenAI error shape of 401/403 (in process, no bus)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from contracts.requests import Priority
from services.gateway.app import create_app
from services.gateway.auth import KeyRing, key_hash
from services.gateway.settings import GatewaySettings


def test_a_gateway_without_keys_refuses_to_start() -> None:
    with pytest.raises(ValueError, match="MODALMESH_GATEWAY_API_KEYS"):
        create_app(GatewaySettings(api_keys=[]))


def test_key_file_holds_hashes_and_scopes(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"# team keys\n{key_hash('full-key')} ops full\n{key_hash('read-key')} dashboard read\n")
    ring = KeyRing.load([], keys)
    assert ring.find("full-key").name == "ops"  # type: ignore[union-attr]
    assert ring.find("read-key").scope == "read"  # type: ignore[union-attr]
    assert ring.find("other") is None
    assert "full-key" not in keys.read_text()


def test_malformed_key_file_fails_with_its_line(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("not-a-hash name\n")
    with pytest.raises(ValueError, match=":1:"):
        KeyRing.load([], keys)


def test_read_key_may_get_but_not_post(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"{key_hash('read-key')} dashboard read\n")
    app = create_app(GatewaySettings(api_keys_file=keys))
    client = TestClient(app)  # no lifespan: the checks happen before any route touches the bus
    denied = client.post(
        "/v1/chat/completions",
        headers={"Authorization": "Bearer read-key"},
        json={"model": "m", "messages": [{"role": "user", "content": "x"}]},
    )
    assert denied.status_code == 403
    assert denied.json()["error"] == {
        "message": "The key `dashboard` may only read",
        "type": "permission_error",
        "param": None,
        "code": "permission_denied",
    }
    unknown = client.get("/v1/models", headers={"Authorization": "Bearer nope"})
    assert unknown.status_code == 401 and unknown.json()["error"]["code"] == "invalid_api_key"


def test_key_file_may_give_a_default_priority_and_the_admin_scope(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"{key_hash('batch-key')} nightly full batch\n{key_hash('ops-key')} ops admin\n")
    ring = KeyRing.load(["env-key"], keys)
    assert ring.find("batch-key").priority is Priority.batch  # type: ignore[union-attr]
    assert ring.find("ops-key").scope == "admin" and ring.find("ops-key").priority is None  # type: ignore[union-attr]
    assert ring.find("env-key").scope == "admin"  # type: ignore[union-attr]  # the operator's own key
    keys.write_text(f"{key_hash('k')} name full urgent\n")
    with pytest.raises(ValueError, match="priority must be"):
        KeyRing.load([], keys)


def test_only_admin_keys_reach_the_admin_api(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"{key_hash('full-key')} app full\n")
    client = TestClient(create_app(GatewaySettings(api_keys_file=keys)))
    denied = client.get("/v1/admin/queues", headers={"Authorization": "Bearer full-key"})
    assert denied.status_code == 403
    assert denied.json()["error"]["message"] == "The key `app` may not use the admin API"
