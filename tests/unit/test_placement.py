"""The placement planner on random fleets: never over-commit memory, never preempt an equal or
higher priority, respect labels and replica bounds, and converge without flapping."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.workers import HeldModel, ModelState
from services.scheduler.placement import (
    Action,
    Command,
    Held,
    Host,
    Load,
    Reason,
    Unload,
    Wanted,
    command_settled,
    plan,
)

NOW = 1000.0


def apply(hosts: list[Host], actions: list[Action], now: float = NOW) -> list[Host]:
    """The fleet after the workers carried `actions` out."""
    held = {h.worker_id: dict(h.held) for h in hosts}
    for a in actions:
        if isinstance(a, Unload):
            assert a.model in held[a.worker_id], f"{a} unloads what is not there"
            del held[a.worker_id][a.model]
        else:
            assert a.model not in held[a.worker_id], f"{a} loads a second copy on one worker"
            held[a.worker_id][a.model] = Held(memory_mb=0, last_used_s=now)  # memory filled in below
    return [Host(h.worker_id, h.capacity_mb, h.labels, held[h.worker_id], h.cached) for h in hosts]


def with_memory(hosts: list[Host], catalog: Mapping[str, Wanted]) -> list[Host]:
    return [
        Host(
            h.worker_id,
            h.capacity_mb,
            h.labels,
            {
                m: Held(catalog[m].memory_mb if m in catalog else x.memory_mb, x.last_used_s, x.in_flight, x.pinned)
                for m, x in h.held.items()
            },
            h.cached,
        )
        for h in hosts
    ]


@st.composite
def fleets(draw: st.DrawFn) -> tuple[list[Host], list[Wanted], dict[str, int]]:
    models = [f"m{i}" for i in range(draw(st.integers(1, 6)))]
    wanted = []
    for m in models:
        low = draw(st.integers(0, 2))
        wanted.append(
            Wanted(
                model=m,
                memory_mb=draw(st.sampled_from([500.0, 2000.0, 4000.0, 8000.0, 14000.0])),
                priority=draw(st.integers(1, 10)),
                min_replicas=low,
                max_replicas=low + draw(st.integers(0, 2)) or 1,
                idle_unload_s=draw(st.one_of(st.none(), st.sampled_from([1.0, 60.0, 600.0]))),
                node_labels=draw(st.sampled_from([{}, {}, {"gpu": "true"}, {"jetson": "true"}])),
            )
        )
    catalog = {w.model: w for w in wanted}
    hosts = []
    for i in range(draw(st.integers(1, 4))):
        capacity = draw(st.sampled_from([4000.0, 8000.0, 16000.0, 24000.0]))
        held: dict[str, Held] = {}
        for m in draw(st.lists(st.sampled_from(models), unique=True, max_size=3)):
            if sum(x.memory_mb for x in held.values()) + catalog[m].memory_mb <= capacity:
                held[m] = Held(
                    catalog[m].memory_mb,
                    last_used_s=draw(st.sampled_from([0.0, 990.0, NOW])),
                    in_flight=draw(st.integers(0, 1)),
                    pinned=draw(st.booleans()) and draw(st.booleans()),
                )
        labels = draw(st.sampled_from([{}, {"gpu": "true"}, {"jetson": "true"}]))
        hosts.append(Host(f"w{i}", capacity, labels, held, cached=frozenset(draw(st.lists(st.sampled_from(models))))))
    waiting = {m: draw(st.integers(0, 3)) for m in models}
    return hosts, wanted, waiting


@settings(max_examples=300, deadline=None)
@given(fleets())
def test_no_plan_over_commits_memory_or_preempts_an_equal_or_higher_priority(
    fleet: tuple[list[Host], list[Wanted], dict[str, int]],
) -> None:
    hosts, wanted, waiting = fleet
    catalog = {w.model: w for w in wanted}
    actions = plan(hosts, wanted, waiting, NOW)
    after = with_memory(apply(hosts, actions), catalog)
    for h in after:
        assert h.used_mb <= h.capacity_mb, f"{h.worker_id} over-committed: {h.used_mb} > {h.capacity_mb}"
    pinned = {(h.worker_id, m) for h in hosts for m, x in h.held.items() if x.pinned}
    for a in actions:
        if isinstance(a, Unload):
            assert (a.worker_id, a.model) not in pinned, f"{a} unloads a pinned model"
            if a.reason is Reason.preempted:
                assert a.by is not None and catalog[a.model].priority < catalog[a.by].priority, a
        else:
            host = next(h for h in hosts if h.worker_id == a.worker_id)
            assert all(host.labels.get(k) == v for k, v in catalog[a.model].node_labels.items()), a


@settings(max_examples=300, deadline=None)
@given(fleets())
def test_a_preemption_pushes_out_no_model_it_could_spare(
    fleet: tuple[list[Host], list[Wanted], dict[str, int]],
) -> None:
    hosts, wanted, waiting = fleet
    catalog = {w.model: w for w in wanted}
    held = {h.worker_id: {m: x.memory_mb for m, x in h.held.items()} for h in hosts}
    capacity = {h.worker_id: h.capacity_mb for h in hosts}
    actions = plan(hosts, wanted, waiting, NOW)
    i = 0
    while i < len(actions):
        a = actions[i]
        group = [a]
        if isinstance(a, Unload) and a.reason is Reason.preempted:  # the victims for one load
            while (
                i + len(group) < len(actions)
                and isinstance(nxt := actions[i + len(group)], Unload)
                and (nxt.reason is Reason.preempted and (nxt.by, nxt.worker_id) == (a.by, a.worker_id))
            ):
                group.append(nxt)
            free = capacity[a.worker_id] - sum(held[a.worker_id].values())
            freed = sum(held[a.worker_id][v.model] for v in group)
            need = catalog[a.by or ""].memory_mb
            for v in group:
                assert free + freed - held[a.worker_id][v.model] < need, f"{v} was not needed for {a.by}"
        for b in group:
            if isinstance(b, Unload):
                del held[b.worker_id][b.model]
            else:
                held[b.worker_id][b.model] = catalog[b.model].memory_mb
        i += len(group)


def test_a_preemption_spares_a_small_model_when_a_big_one_makes_room() -> None:
    host = Host("w", 100, held={"big-p9": Held(80, NOW), "small-p5": Held(10, NOW)})
    wanted = [
        Wanted("big-p9", 80, priority=9, min_replicas=1),
        Wanted("small-p5", 10, priority=5),
        Wanted("new-p10", 80, priority=10, min_replicas=1),
    ]
    assert plan([host], wanted, {}, NOW) == [
        Unload("big-p9", "w", Reason.preempted, by="new-p10"),
        Load("new-p10", "w", Reason.warm),
    ]


@settings(max_examples=300, deadline=None)
@given(fleets())
def test_planning_again_converges_and_never_undoes_its_own_loads(
    fleet: tuple[list[Host], list[Wanted], dict[str, int]],
) -> None:
    hosts, wanted, waiting = fleet
    catalog = {w.model: w for w in wanted}
    loaded_by_plan: set[tuple[str, str]] = set()
    for _ in range(12):
        actions = plan(hosts, wanted, waiting, NOW)
        if not actions:
            break
        for a in actions:
            if isinstance(a, Load):
                loaded_by_plan.add((a.worker_id, a.model))
            elif a.reason is not Reason.preempted:
                assert (a.worker_id, a.model) not in loaded_by_plan, f"flapping: {a} after loading it"
        hosts = with_memory(apply(hosts, actions), catalog)
    else:
        raise AssertionError("the plan never settled")
    for w in wanted:  # settled within the replica bounds (pinned copies may exceed them)
        copies = [h for h in hosts if w.model in h.held]
        assert len([h for h in copies if not h.held[w.model].pinned]) <= w.max_replicas


def test_a_priority_9_model_arriving_on_a_full_gpu_pushes_out_the_priority_3_model() -> None:
    gpu = Host("gpu-worker", capacity_mb=24_000, held={"chat-p3": Held(20_000, last_used_s=NOW - 5, in_flight=2)})
    wanted = [
        Wanted("chat-p3", 20_000, priority=3, min_replicas=1),
        Wanted("vision-p9", 16_000, priority=9, min_replicas=1),
    ]
    actions = plan([gpu], wanted, {}, NOW)
    assert actions == [
        Unload("chat-p3", "gpu-worker", Reason.preempted, by="vision-p9"),
        Load("vision-p9", "gpu-worker", Reason.warm),
    ]
    # ... and the priority-3 model, wanting its warm copy back, cannot push the priority-9 one out.
    after = with_memory(apply([gpu], actions), {w.model: w for w in wanted})
    assert plan(after, wanted, {"chat-p3": 5}, NOW) == []


def test_models_load_where_they_fit_tightest_and_where_their_files_are() -> None:
    roomy, snug = Host("roomy", 24_000), Host("snug", 5_000)
    assert plan([roomy, snug], [Wanted("m", 4_000, min_replicas=1)], {}, NOW) == [Load("m", "snug", Reason.warm)]
    cached = Host("cached", 24_000, cached=frozenset({"m"}))
    assert plan([cached, snug], [Wanted("m", 4_000, min_replicas=1)], {}, NOW) == [Load("m", "cached", Reason.warm)]


def test_idle_replicas_beyond_the_minimum_unload_and_waiting_work_adds_one() -> None:
    hosts = [
        Host("a", 8_000, held={"m": Held(2_000, last_used_s=NOW - 700)}),
        Host("b", 8_000, held={"m": Held(2_000, last_used_s=NOW - 10)}),
        Host("c", 8_000),
    ]
    m = Wanted("m", 2_000, min_replicas=1, max_replicas=3, idle_unload_s=600)
    assert plan(hosts, [m], {}, NOW) == [Unload("m", "a", Reason.idle)]
    assert plan(hosts, [m], {"m": 4}, NOW) == [Load("m", "c", Reason.demand)]  # busy: no idle unload, one more


def record(state: ModelState, since_ms: int) -> HeldModel:
    return HeldModel(memory_mb=80, last_used_ms=since_ms, state=state, since_ms=since_ms)


def test_a_command_is_under_way_until_the_heartbeat_shows_it_done() -> None:
    stopped = record(ModelState.stopped, 100)
    load = Command("load", sent_s=NOW, record_since_ms=100)
    assert not command_settled(stopped, load)  # the host has not acted yet
    assert not command_settled(None, Command("load", NOW, None))
    assert command_settled(record(ModelState.starting, 200), load)
    assert command_settled(record(ModelState.running, 200), load)
    unload = Command("unload", sent_s=NOW, record_since_ms=100)
    assert not command_settled(record(ModelState.running, 100), unload)
    assert not command_settled(record(ModelState.stopping, 200), unload)  # its memory is not free yet
    assert command_settled(record(ModelState.preempted, 300), unload)
    assert command_settled(None, unload)


def test_a_load_undone_between_two_heartbeats_is_settled_but_a_failed_one_waits_out_the_grace() -> None:
    load = Command("load", sent_s=NOW, record_since_ms=100)
    # Loaded, then unloaded by an operator before a heartbeat showed it loaded: its memory is free.
    assert command_settled(record(ModelState.stopped, 300), load)
    assert not command_settled(record(ModelState.error, 300), load)  # not retried every round
