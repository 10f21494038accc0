"""The console's gateway side without a bus: node classes and states, the CSP header, the unbuilt console."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from contracts.telemetry import GpuInfo, GpuSample, NodeCapabilities, NodeTelemetry
from contracts.workers import WorkerState, WorkerStatus
from services.gateway.app import create_app
from services.gateway.routes import console
from services.gateway.settings import GatewaySettings


def caps(*gpus: str, jetson: str | None = None, **labels: str) -> NodeCapabilities:
    return NodeCapabilities(
        node="n",
        arch="x86_64",
        cpu_cores=8,
        mem_total_mb=1024,
        gpus=tuple(GpuInfo(index=i, name=name, vram_mb=1024) for i, name in enumerate(gpus)),
        jetson_model=jetson,
        labels=labels,
    )


@pytest.mark.parametrize(
    ("capabilities", "cls"),
    [
        (caps(), "cpu"),
        (caps("NVIDIA A100-SXM4-80GB"), "datacenter"),
        (caps("NVIDIA H100 80GB HBM3", "NVIDIA H100 80GB HBM3"), "datacenter"),
        (caps("Tesla T4"), "datacenter"),
        (caps("NVIDIA RTX A4000"), "workstation"),  # not an A40
        (caps("NVIDIA GeForce RTX 4090"), "workstation"),
        (caps("Orin (nvgpu)", jetson="NVIDIA Jetson AGX Orin"), "jetson"),
        (caps("NVIDIA GeForce RTX 4090", **{"class": "datacenter"}), "datacenter"),  # the operator's word wins
        (caps(**{"class": "nonsense"}), "cpu"),
    ],
)
def test_node_class(capabilities: NodeCapabilities, cls: str) -> None:
    assert console.node_class(capabilities, None) == cls


def test_node_class_from_telemetry_when_capabilities_are_missing() -> None:
    gpu = GpuSample(index=0, name="NVIDIA L4", util_pct=1, mem_used_mb=1, mem_total_mb=2)
    telemetry = NodeTelemetry(node="n", cpu_pct=1, mem_used_mb=1, mem_total_mb=2, gpus=(gpu,))
    assert console.node_class(None, telemetry) == "datacenter"
    assert console.node_class(None, None) == "cpu"


def worker(state: WorkerState) -> WorkerStatus:
    return WorkerStatus(
        worker_id="w", node="n", engine="e", models=(), slots_total=1, slots_free=1, outstanding=0, state=state
    )


def test_node_state() -> None:
    assert console.node_state(False, [worker(WorkerState.ready)]) == "offline"
    assert console.node_state(True, []) == "online"
    assert console.node_state(True, [worker(WorkerState.draining)]) == "draining"
    assert console.node_state(True, [worker(WorkerState.draining), worker(WorkerState.ready)]) == "online"


@pytest.fixture
def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """The gateway's app without its lifespan (no bus), serving a console build from `tmp_path`."""
    monkeypatch.setattr(console, "DIST", tmp_path)
    return TestClient(create_app(GatewaySettings(api_keys=["k"])))


def test_every_response_carries_a_self_only_csp_but_the_api_docs(client: TestClient, tmp_path: Path) -> None:
    (tmp_path / "assets").mkdir()
    (tmp_path / "index.html").write_text("<!doctype html><title>console</title>")
    (tmp_path / "assets" / "app.js").write_text("export {}")
    page = client.get("/")
    assert page.status_code == 200 and "console" in page.text
    assert page.headers["content-security-policy"] == "default-src 'self'"
    assert page.headers["cache-control"] == "no-cache"
    asset = client.get("/assets/app.js")
    assert asset.status_code == 200 and asset.headers["content-security-policy"] == "default-src 'self'"
    assert client.get("/v1/models").headers["content-security-policy"] == "default-src 'self'"  # a 401 too
    assert "content-security-policy" not in client.get("/docs").headers  # Swagger UI: inline script, CDN


def test_an_unbuilt_console_says_how_to_build_it(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 503 and "make console" in page.text


def test_history_refuses_a_range_it_does_not_offer(client: TestClient) -> None:
    client.app.state.relay = None  # type: ignore[attr-defined]  # refused before the bus is asked
    res = client.get("/v1/console/history?range_s=60", headers={"Authorization": "Bearer k"})
    assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_request"
