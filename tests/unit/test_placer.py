"""The placement loop's pure half (services/scheduler/placer.py): the host workers as the planner
sees them, from the fleet's heartbeats and the commands still under way."""

from __future__ import annotations

from contracts.requests import Modality
from contracts.telemetry import NodeCapabilities
from contracts.workers import HeldModel, ModelEntry, ModelOverride, ModelState, WorkerState, WorkerStatus
from services.common.fleet import FleetView
from services.scheduler.placement import Command, Held, Host
from services.scheduler.placer import hosts, wanted

NOW, WALL = 1000.0, 5_000_000


def status(
    wid: str, held: dict[str, HeldModel], memory_mb: float = 4000.0, state: WorkerState = WorkerState.ready
) -> WorkerStatus:
    return WorkerStatus(
        worker_id=wid,
        node=f"node-{wid}",
        engine="host",
        models=tuple(m for m, h in held.items() if h.state is ModelState.running),
        slots_total=1,
        slots_free=1,
        outstanding=0,
        state=state,
        memory_mb=memory_mb,
        held=held,
    )


def fleet(*workers: WorkerStatus) -> FleetView:
    view = FleetView(dead_after_s=10.0)
    for w in workers:
        view.workers.observe_status(w, NOW)
    view.catalog["big"] = ModelEntry(
        id="big", modality=(Modality.chat,), engine="llama_cpp", source="tiny", declared=True, memory_mb=1500.0
    )
    return view


def running(memory_mb: float, used_ms_ago: int = 0, since_ms: int = WALL - 60_000) -> HeldModel:
    return HeldModel(memory_mb=memory_mb, last_used_ms=WALL - used_ms_ago, since_ms=since_ms)


def test_a_host_holds_what_its_heartbeat_says_with_its_node_labels_and_last_use_on_our_clock() -> None:
    view = fleet(status("h", {"a": running(500, used_ms_ago=2000)}), status("fixed", {}, memory_mb=0))
    view.capabilities["node-h"] = NodeCapabilities(
        node="node-h", arch="x86_64", cpu_cores=2, mem_total_mb=8000, labels={"zone": "edge"}
    )
    found, under_way = hosts(view, {}, NOW, WALL)
    assert found == [Host("h", 4000.0, {"zone": "edge"}, {"a": Held(500, last_used_s=NOW - 2.0)})]
    assert under_way == {}


def test_a_draining_host_and_ended_models_are_left_out() -> None:
    stopped = HeldModel(memory_mb=0, last_used_ms=WALL, state=ModelState.stopped)
    view = fleet(status("h", {"a": running(500), "gone": stopped}), status("d", {}, state=WorkerState.draining))
    found, _ = hosts(view, {}, NOW, WALL)
    assert [(h.worker_id, set(h.held)) for h in found] == [("h", {"a"})]


def test_a_load_under_way_holds_its_memory_and_an_unload_under_way_frees_it() -> None:
    view = fleet(status("h", {"a": running(500)}))
    commands = {("big", "h"): Command("load", NOW - 1, None), ("a", "h"): Command("unload", NOW - 1, WALL - 60_000)}
    found, under_way = hosts(view, commands, NOW, WALL)
    assert found[0].held == {"big": Held(1500.0, last_used_s=NOW)}
    assert under_way == commands  # the heartbeat does not show either done yet


def test_a_command_the_heartbeat_shows_done_is_no_longer_under_way() -> None:
    view = fleet(status("h", {"big": running(1500)}))
    commands = {("big", "h"): Command("load", NOW - 1, None), ("other", "elsewhere"): Command("load", NOW - 1, None)}
    found, under_way = hosts(view, commands, NOW, WALL)
    assert found[0].held["big"].memory_mb == 1500
    assert under_way == {("other", "elsewhere"): commands[("other", "elsewhere")]}
    assert len(commands) == 2  # the caller's record is not changed


def test_a_pinned_model_stays_pinned_and_the_wanted_are_the_placed_models_with_their_overrides() -> None:
    view = fleet(status("h", {"big": running(1500)}))
    view.overrides["big"] = ModelOverride(model="big", pinned=True, priority=9)
    view.catalog["own"] = ModelEntry(id="own", modality=(Modality.chat,), engine="llama_cpp", source="tiny")
    found, _ = hosts(view, {}, NOW, WALL)
    assert found[0].held["big"].pinned
    assert [(w.model, w.memory_mb, w.priority) for w in wanted(view)] == [("big", 1500.0, 9)]
