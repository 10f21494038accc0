"""The console in Chromium on a stack of its own: its scheduler places a catalog model on a host worker
(unload, load, priority and pin from the Models page, each checked through the admin API), and the
test plays a GPU server's and a Jetson board's monitors on its bus (the Fleet page's GPU and Jetson
fields, an alert it sends moving the badge, and both nodes offline once silent)."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts import streams, subjects
from contracts.telemetry import Alert, AlertState, GpuInfo, GpuSample, NodeCapabilities, NodeTelemetry, Severity
from services.common.bus import connect
from services.devstack import LocalStack
from tests.browser.conftest import NEEDS_CHROMIUM, Console, open_console

pytestmark = [pytest.mark.e2e, NEEDS_CHROMIUM]
MODEL = "placed-chat"
CATALOG = f"models:\n  {MODEL}: {{engine: llama_cpp, source: tiny, modality: [chat], memory_mb: 80, min_replicas: 1}}\n"


@pytest.fixture(scope="module")
def placing_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    folder = tmp_path_factory.mktemp("console-models")
    (folder / "catalog.yaml").write_text(CATALOG)
    env = {
        "MODALMESH_HOST_MEMORY_MB": "100",
        "MODALMESH_SCHEDULER_CATALOG_FILE": str(folder / "catalog.yaml"),
        "MODALMESH_SCHEDULER_PLACEMENT_INTERVAL_S": "0.5",
    }
    with LocalStack(data=Path(folder / "stack"), env=env) as stack:
        yield stack


@pytest.fixture
def console(browser: Any, placing_stack: LocalStack) -> Iterator[Console]:
    with open_console(browser, placing_stack) as opened:
        yield opened


def model(stack: LocalStack) -> dict[str, Any]:
    rows = httpx.get(f"{stack.url}/v1/admin/models", headers=stack.headers, timeout=30).json()["data"]
    [row] = [r for r in rows if r["id"] == MODEL]
    return row


def until(stack: LocalStack, what: str, check: Any, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check(row := model(stack)):
            return row
        time.sleep(0.25)
    pytest.fail(f"{MODEL} never {what}: {model(stack)}")


def test_unload_load_priority_and_pin_from_the_page(console: Console) -> None:
    stack, page = console.stack, console.page
    until(stack, "ran", lambda r: r["state"] == "running")
    console.goto("models")
    row = f"#models tr[data-model='{MODEL}']"
    page.wait_for_selector(f"{row} .state.running")
    page.click(f"{row} button.unload")
    stopped = until(stack, "stopped", lambda r: r["state"] != "running" and r["min_replicas"] == 0)
    page.wait_for_selector(f"{row} .state.{stopped['state']}")  # the page follows the heartbeats
    assert not [r for r in stopped["replicas"] if r["state"] == "running"]
    page.click(f"{row} button.load")
    until(stack, "ran again", lambda r: r["state"] == "running" and r["min_replicas"] >= 1)
    page.wait_for_selector(f"{row} .state.running")
    page.fill(f"{row} input.priority", "8")
    page.click(f"{row} button:has-text('Set')")
    until(stack, "took priority 8", lambda r: r["priority"] == 8)
    page.check(f"{row} input.pin")
    until(stack, "was pinned", lambda r: r["pinned"])
    assert page.is_checked(f"{row} input.pin")
    console.shoot("models-placed")
    console.assert_clean()


class Monitors:
    """Plays the monitor agents of a GPU server and a Jetson board on the stack's bus (this machine has
    neither): their capabilities in the `nodes` bucket, then a telemetry sample every 0.5 s until stopped."""

    def __init__(self, stack: LocalStack) -> None:
        self.url = stack.nats_url
        self.stop = threading.Event()
        self.alerts: queue.Queue[Alert] = queue.Queue()
        self.thread = threading.Thread(target=lambda: asyncio.run(self.publish()), daemon=True)

    async def publish(self) -> None:
        bus = await connect(self.url, "test-monitors")
        try:
            nodes = await bus.js.key_value(streams.KV_NODES)
            for caps in (GPU_NODE, JETSON):
                await nodes.put(caps.node, caps.encode())
            while not self.stop.is_set():
                for sample in (gpu_sample(), jetson_sample()):
                    await bus.nc.publish(subjects.telemetry(sample.node), sample.encode())
                while not self.alerts.empty():
                    alert = self.alerts.get()
                    await bus.js.publish(subjects.alert(alert.severity.value, alert.node), alert.encode())
                await asyncio.sleep(0.5)
        finally:
            await bus.close()

    def alert(self, state: AlertState) -> None:
        """A GPU temperature alert from the GPU server, fired or resolved, sent with its next sample."""
        self.alerts.put(
            Alert(name="gpu_temp_high", node=GPU_NODE.node, severity=Severity.warning, state=state, subject_key="gpu0")
        )

    def __enter__(self) -> Monitors:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join(10)


H100 = "NVIDIA H100 80GB HBM3"
GPU_NODE = NodeCapabilities(
    node="dgx-test",
    arch="x86_64",
    cpu_cores=64,
    mem_total_mb=512_000,
    gpus=tuple(GpuInfo(index=i, name=H100, vram_mb=81_559) for i in range(2)),
)
JETSON = NodeCapabilities(node="orin-test", arch="aarch64", cpu_cores=12, mem_total_mb=61_000, jetson_model="AGX Orin")


def gpu_sample() -> NodeTelemetry:
    gpus = tuple(
        GpuSample(
            index=i, name=H100, util_pct=40 + i, mem_used_mb=20_000, mem_total_mb=81_559, temp_c=61, power_w=300 + i
        )
        for i in range(2)
    )
    return NodeTelemetry(node=GPU_NODE.node, cpu_pct=12, mem_used_mb=100_000, mem_total_mb=512_000, gpus=gpus)


def jetson_sample() -> NodeTelemetry:
    return NodeTelemetry(
        node=JETSON.node,
        cpu_pct=30,
        mem_used_mb=9_000,
        mem_total_mb=61_000,
        power_rails_w={"VDD_GPU_SOC": 7.5},
        temps_c={"tj": 48.0},
    )


def test_fleet_page_shows_gpus_and_jetson_fields_and_a_silent_node_offline(console: Console) -> None:
    page = console.page
    gpu_card = f".node-class[data-class='datacenter'] .node[data-node='{GPU_NODE.node}']"
    jetson_card = f".node-class[data-class='jetson'] .node[data-node='{JETSON.node}']"
    with Monitors(console.stack) as monitors:
        page.wait_for_selector(f"{gpu_card} .state.online")
        page.wait_for_selector(f"{jetson_card} .state.online")
        page.wait_for_selector(f"{gpu_card} .gpu[data-gpu='1'] canvas")
        gpu1 = page.text_content(f"{gpu_card} .gpu[data-gpu='1']") or ""
        jetson = page.text_content(jetson_card) or ""
        console.shoot("fleet-gpu-jetson", full_page=True)
        # An alert pushed over the events stream moves the badge on this page, with no reload or poll.
        before = page.text_content("#alerts-badge")
        monitors.alert(AlertState.firing)
        page.wait_for_selector(f"#alerts-badge:text-is('{int(before or 0) + 1}')")
        monitors.alert(AlertState.resolved)
        page.wait_for_selector(f"#alerts-badge:text-is('{before}')")
    assert page.locator(f"{gpu_card} .gpu").count() == 2
    assert all(text in gpu1 for text in ("41%", "19.5 GiB / 79.6 GiB", "61 °C", "301 W")), gpu1
    assert "VDD_GPU_SOC" in jetson and "7.5 W" in jetson and "48 °C" in jetson and "AGX Orin" in jetson
    # Silent past the gateway's dead_after_s: offline, while this machine's own node stays online.
    page.wait_for_selector(f"{gpu_card} .state.offline")
    page.wait_for_selector(f"{jetson_card} .state.offline")
    assert page.locator(".node-class[data-class='cpu'] .state.online").count() == 1
    console.assert_clean()
