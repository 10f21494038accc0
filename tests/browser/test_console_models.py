"""The Models page's actions in Chromium on a stack whose scheduler places a catalog model on a host
worker: unload, load, priority and pin from the page, each checked through the admin API."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

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
