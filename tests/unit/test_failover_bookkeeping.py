"""Which workers' work the scheduler still has to move: a death moves all of it, a restart what the
old process held, and a worker heard from again by the same process keeps its work (pure)."""

from __future__ import annotations

from typing import Any

from services.scheduler.failover import Failover

STARTED, RESTARTED = 1_700_000_000_000, 1_700_000_060_000


def failover(orphaned: dict[str, int | None], dead_process: dict[str, int | None]) -> Failover:
    bus: Any = None  # bookkeeping only: nothing here touches the bus
    return Failover(bus, choose=lambda request, exclude: None, orphaned=dict(orphaned), dead_process=dict(dead_process))


def test_the_process_declared_dead_heartbeating_again_keeps_its_work() -> None:
    moving = failover({"cut-off": None, "other": None}, {"cut-off": STARTED, "other": STARTED})
    moving.worker_back("cut-off", STARTED)
    assert moving.orphaned == {"other": None}


def test_a_dead_worker_restarted_under_its_id_still_has_all_its_old_work_moved() -> None:
    moving = failover({"dead": None}, {"dead": STARTED})
    moving.worker_back("dead", RESTARTED)  # a new process: it knows nothing of the old one's work
    assert moving.orphaned == {"dead": None}


def test_a_restart_moves_what_the_old_process_held_whatever_the_new_one_says() -> None:
    moving = failover({"restarted": RESTARTED}, {})
    moving.worker_back("restarted", RESTARTED)
    assert moving.orphaned == {"restarted": RESTARTED}
