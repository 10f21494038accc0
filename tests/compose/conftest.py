"""The compose fleet, brought up once for the suite (tests/compose/run.sh sets the images)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.compose.fleet import ROOT, ComposeFleet

WORKDIR = ROOT / ".data" / "compose"


@pytest.fixture(scope="session")
def fleet() -> Iterator[ComposeFleet]:
    workdir = WORKDIR / "core"
    workdir.mkdir(parents=True, exist_ok=True)
    fleet = ComposeFleet(project="modalmesh-test", workdir=Path(workdir))
    fleet.compose("down", "-v", "--remove-orphans", check=False)  # what an interrupted run left
    try:
        fleet.up(scale={"worker-cpu": 2})
        fleet.wait_for_model("tiny-llama", live=2)
        yield fleet
    finally:
        fleet.down()
