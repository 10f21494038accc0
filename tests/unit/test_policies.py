"""The four scheduling policies over fleet snapshots: safety properties and preferences."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.telemetry import GpuInfo, GpuSample, NodeCapabilities, NodeTelemetry
from contracts.workers import WorkerState, WorkerStatus
from services.scheduler.policy import Candidate, Limits, Policy, Snapshot, choose, eligible, expected_cost

LIMITS = Limits(max_gpu_temp_c=90.0)


def candidate(
    wid: str,
    *,
    outstanding: int = 0,
    slots: int = 4,
    temp: float = 50.0,
    util: float = 0.0,
    mem_used: float = 1000.0,
    mem_total: float = 24000.0,
    tflops: float = 100.0,
    state: WorkerState = WorkerState.ready,
    loaded: bool = True,
    throttled: bool = False,
) -> Candidate:
    gpu = GpuSample(
        index=0,
        util_pct=util,
        mem_used_mb=mem_used,
        mem_total_mb=mem_total,
        temp_c=temp,
        throttle_reasons=("hw_thermal_slowdown",) if throttled else (),
    )
    return Candidate(
        worker=WorkerStatus(
            worker_id=wid,
            node=f"n-{wid}",
            engine="e",
            models=("m",),
            slots_total=slots,
            slots_free=max(0, slots - outstanding),
            outstanding=outstanding,
            state=state,
        ),
        telemetry=NodeTelemetry(node=f"n-{wid}", cpu_pct=10, mem_used_mb=1, mem_total_mb=2, gpus=(gpu,)),
        capabilities=NodeCapabilities(
            node=f"n-{wid}",
            arch="x86_64",
            cpu_cores=8,
            mem_total_mb=64000,
            gpus=(GpuInfo(index=0, name="g", vram_mb=mem_total, fp16_tflops=tflops),),
        ),
        model_loaded=loaded,
    )


candidates = st.lists(
    st.builds(
        lambda i, o, s, temp, util, used, tf, st_, loaded, thr: candidate(
            f"w{i}",
            outstanding=o,
            slots=s,
            temp=temp,
            util=util,
            mem_used=used,
            tflops=tf,
            state=st_,
            loaded=loaded,
            throttled=thr,
        ),
        st.integers(0, 30),
        st.integers(0, 12),
        st.integers(1, 8),
        st.floats(20, 100),
        st.floats(0, 100),
        st.floats(0, 24000),
        st.sampled_from([2.0, 25.0, 121.0, 989.0]),
        st.sampled_from([WorkerState.ready, WorkerState.ready, WorkerState.draining]),
        st.booleans(),
        st.booleans(),
    ),
    max_size=12,
    unique_by=lambda c: c.worker_id,
)


@settings(max_examples=300)
@given(candidates, st.sampled_from(list(Policy)), st.floats(0, 30000), st.text(max_size=8), st.integers(0, 100))
def test_never_picks_an_unhealthy_hot_or_too_small_node(
    cands: list[Candidate], policy: Policy, mem: float, rid: str, counter: int
) -> None:
    snap = Snapshot(tuple(cands), model_mem_mb=mem, limits=LIMITS)
    chosen = choose(policy, snap, request_id=rid, counter=counter)
    ok = [c for c in cands if eligible(c, snap)]
    if not ok:
        assert chosen is None
        return
    picked = next(c for c in cands if c.worker_id == chosen)
    assert picked.worker.state is WorkerState.ready
    assert picked.telemetry is not None and picked.telemetry.gpus[0].temp_c is not None
    assert picked.telemetry.gpus[0].temp_c < LIMITS.max_gpu_temp_c
    assert picked.model_loaded or picked.telemetry.gpus[0].mem_free_mb >= mem


@settings(max_examples=200)
@given(candidates, st.sampled_from(list(Policy)), st.text(max_size=8), st.integers(0, 100), st.randoms())
def test_deterministic_given_the_snapshot(
    cands: list[Candidate], policy: Policy, rid: str, counter: int, rnd: object
) -> None:
    shuffled = cands[:]
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    first = choose(policy, Snapshot(tuple(cands)), request_id=rid, counter=counter)
    again = choose(policy, Snapshot(tuple(shuffled)), request_id=rid, counter=counter)
    assert first == again


def test_weighted_prefers_the_faster_node_until_its_queue_outweighs_the_speed() -> None:
    fast, slow = candidate("fast", tflops=989.0), candidate("slow", tflops=25.0)
    assert choose(Policy.weighted, Snapshot((fast, slow))) == "fast"
    busy_fast = candidate("fast", tflops=989.0, outstanding=4 * 60, slots=4)
    assert choose(Policy.weighted, Snapshot((busy_fast, slow))) == "slow"


def test_thermal_throttling_and_vram_pressure_lower_the_score() -> None:
    base = candidate("a")
    assert expected_cost(candidate("a", throttled=True), Snapshot(())) > expected_cost(base, Snapshot(()))
    assert expected_cost(candidate("a", mem_used=23000), Snapshot(())) > expected_cost(base, Snapshot(()))
    assert expected_cost(candidate("a", temp=85), Snapshot(())) > expected_cost(base, Snapshot(()))


def test_round_robin_cycles_in_id_order() -> None:
    snap = Snapshot((candidate("b"), candidate("a"), candidate("c")))
    assert [choose(Policy.round_robin, snap, counter=i) for i in range(4)] == ["a", "b", "c", "a"]


def test_random_spreads_over_the_pool() -> None:
    snap = Snapshot(tuple(candidate(f"w{i}") for i in range(4)))
    picks = {choose(Policy.random, snap, request_id=f"r{i}") for i in range(200)}
    assert picks == {"w0", "w1", "w2", "w3"}


def test_least_outstanding_ignores_speed() -> None:
    snap = Snapshot((candidate("fast", tflops=989.0, outstanding=1), candidate("slow", tflops=2.0)))
    assert choose(Policy.least_outstanding, snap) == "slow"
