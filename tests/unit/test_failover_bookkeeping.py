"""Which workers' work the scheduler still has to move: a death moves all of it, a restart what the
old process held, and a worker heard from again by the same process keeps its work (pure)."""

from __future__ import annotations

from typing import Any

from services.scheduler.failover import Died, Failover, Orphaned, Restarted

STARTED, RESTARTED = 1_700_000_000_000, 1_700_000_060_000


def failover(orphaned: dict[str, Orphaned]) -> Failover:
    bus: Any = None  # bookkeeping only: nothing here touches the bus
    return Failover(bus, choose=lambda request, exclude: None, orphaned=dict(orphaned))


def test_the_process_declared_dead_heartbeating_again_keeps_its_work() -> None:
    moving = failover({"cut-off": Died(STARTED), "other": Died(STARTED)})
    moving.worker_back("cut-off", STARTED)
    assert moving.orphaned == {"other": Died(STARTED)}


def test_a_dead_worker_restarted_under_its_id_still_has_all_its_old_work_moved() -> None:
    moving = failover({"dead": Died(STARTED)})
    moving.worker_back("dead", RESTARTED)  # a new process: it knows nothing of the old one's work
    assert moving.orphaned == {"dead": Died(STARTED)}


def test_a_restart_moves_what_the_old_process_held_whatever_the_new_one_says() -> None:
    moving = failover({"restarted": Restarted(RESTARTED)})
    moving.worker_back("restarted", RESTARTED)
    assert moving.orphaned == {"restarted": Restarted(RESTARTED)}


def test_a_death_moves_all_its_work_and_a_restart_only_what_the_old_process_was_given() -> None:
    assert Died(STARTED).moves(RESTARTED + 1) and Died(None).moves(STARTED)
    assert Restarted(RESTARTED).moves(RESTARTED - 1)
    assert not Restarted(RESTARTED).moves(RESTARTED)
