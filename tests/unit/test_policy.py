"""Scheduling policy and liveness: pure functions over a snapshot."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from contracts.workers import WorkerState, WorkerStatus
from services.common.liveness import WorkerTable
from services.scheduler.policy import least_outstanding


def worker(wid: str, outstanding: int = 0, slots: int = 2, models: tuple[str, ...] = ("m",)) -> WorkerStatus:
    return WorkerStatus(
        worker_id=wid,
        node="n",
        engine="llama_cpp",
        models=models,
        slots_total=slots,
        slots_free=max(0, slots - outstanding),
        outstanding=outstanding,
    )


def test_picks_fewest_outstanding() -> None:
    assert least_outstanding([worker("a", 2), worker("b", 0), worker("c", 1)], {}) == "b"


def test_counts_assignments_the_heartbeat_has_not_seen() -> None:
    assert least_outstanding([worker("a", 0), worker("b", 1)], {"a": 2}) == "b"


def test_no_candidates_means_no_choice() -> None:
    assert least_outstanding([], {}) is None


@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 4)), min_size=1, max_size=8), st.randoms())
def test_choice_is_deterministic_and_minimal(specs: list[tuple[int, int]], rnd: object) -> None:
    workers = [worker(f"w{i}", o, s) for i, (o, s) in enumerate(specs)]
    shuffled = workers[:]
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    chosen = least_outstanding(workers, {})
    assert chosen == least_outstanding(shuffled, {})
    assert min(w.outstanding for w in workers) == next(w for w in workers if w.worker_id == chosen).outstanding


def test_liveness_drops_silent_workers_and_takes_them_back() -> None:
    table = WorkerTable(dead_after_s=3.0)
    table.observe_status(worker("a"), now=0.0)
    table.observe_status(worker("b", models=("other",)), now=0.0)
    assert [w.worker_id for w in table.serving("m", now=2.9)] == ["a"]
    assert table.serving("m", now=3.1) == []
    table.observe_status(worker("a"), now=5.0)
    assert [w.worker_id for w in table.serving("m", now=5.5)] == ["a"]
    assert table.forget_dead(now=7.0) == ["b"]


def test_holding_a_table_keeps_the_live_alive_and_the_dead_dead() -> None:
    """While the listener is cut off, silence proves nothing: the live get a fresh window, the
    already silent do not come back."""
    table = WorkerTable(dead_after_s=1.0)
    table.observe_status(worker("a"), now=0.0)
    table.observe_status(worker("b"), now=0.9)
    table.hold(now=1.5)  # a went silent before the outage began: not held
    assert [w.worker_id for w in table.live(now=2.4)] == ["b"]
    assert table.forget_dead(now=2.4) == ["a"]
    assert table.forget_dead(now=2.6) == ["b"]  # held until 1.5, then silent for more than 1 s


def test_draining_workers_get_no_new_work() -> None:
    table = WorkerTable(dead_after_s=3.0)
    table.observe_status(worker("a").model_copy(update={"state": WorkerState.draining}), now=0.0)
    assert table.serving("m", now=0.1) == []


def test_weighted_prefers_the_batching_engine_with_kv_cache_room() -> None:
    from contracts.workers import BatchLoad
    from services.scheduler.policy import Candidate, Policy, Snapshot, choose

    def vllm(wid: str, usage: float, outstanding: int) -> Candidate:
        status = worker(wid, outstanding, slots=64).model_copy(
            update={"engine": "vllm", "batch": BatchLoad(kv_cache_usage=usage, running=outstanding, waiting=0)}
        )
        return Candidate(status)

    # same requests in hand: the one whose KV cache is nearly full waits longer for room
    assert choose(Policy.weighted, Snapshot((vllm("a", 0.95, 4), vllm("b", 0.10, 4)))) == "b"
    # a few more requests but far more room still wins over a full cache
    assert choose(Policy.weighted, Snapshot((vllm("a", 0.98, 4), vllm("b", 0.05, 6)))) == "b"
    # with equal room the request count decides, as before
    assert choose(Policy.weighted, Snapshot((vllm("a", 0.5, 9), vllm("b", 0.5, 3)))) == "b"
    round_trip = WorkerStatus.model_validate_json(vllm("c", 0.25, 1).worker.model_dump_json())
    assert round_trip.batch == BatchLoad(kv_cache_usage=0.25, running=1, waiting=0)
