"""The scheduler's waiting room: strict priority classes, aging, domain caps and free slots (pure)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.base import now_ms
from contracts.requests import ChatMessage, ChatRequest, Priority
from services.scheduler.queues import Queues, Waiting, effective_rank, plan, service_order

AGING_S = 10.0


def waiting(
    rid: str,
    priority: Priority,
    since: float,
    model: str = "m",
    domain: str = "llm",
    deadline_ms: int | None = None,
    handed_back: int = 0,
) -> Waiting[str]:
    request = ChatRequest(
        request_id=rid,
        model=model,
        priority=priority,
        deadline_ms=deadline_ms or now_ms() + 600_000,
        messages=(ChatMessage(role="user", content="hi"),),
    )
    return Waiting(request, domain, handle=f"msg-{rid}", since=since, handed_back=handed_back)


entries = st.lists(
    st.tuples(
        st.sampled_from(list(Priority)),
        st.floats(0, 100),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["llm", "image"]),
    ),
    max_size=30,
)


@given(entries, st.floats(0, 200), st.sets(st.integers(0, 29)))
def test_service_order_is_by_aged_class_then_continuations_then_arrival(
    items: list[tuple[Priority, float, str, str]],
    now: float,
    continuations: set[int],
) -> None:
    queue = [
        waiting(f"r{i}", p, since, model, domain, handed_back=2 if i in continuations else 0)
        for i, (p, since, model, domain) in enumerate(items)
    ]
    ordered = service_order(queue, now, AGING_S)
    keys = [(effective_rank(w.request.priority, now - w.since, AGING_S), w.handed_back == 0, w.since) for w in ordered]
    assert keys == sorted(keys)
    assert sorted(w.request_id for w in ordered) == sorted(w.request_id for w in queue)


def test_a_continuation_goes_before_new_work_of_its_class_but_not_before_a_better_class() -> None:
    queue = [
        waiting("new", Priority.interactive, 0.0),
        waiting("resumed", Priority.interactive, 5.0, handed_back=2),
        waiting("realtime", Priority.realtime, 6.0),
    ]
    assert [w.request_id for w in service_order(queue, 6.0, AGING_S)] == ["realtime", "resumed", "new"]


def test_without_waiting_the_classes_are_strict() -> None:
    queue = [
        waiting("batch", Priority.batch, 0.0),
        waiting("interactive", Priority.interactive, 1.0),
        waiting("realtime", Priority.realtime, 2.0),
    ]
    assert [w.request_id for w in service_order(queue, 2.0, AGING_S)] == ["realtime", "interactive", "batch"]


def test_a_batch_request_that_waited_two_aging_periods_goes_before_newer_realtime_work() -> None:
    old_batch = waiting("old-batch", Priority.batch, since=0.0)
    fresh = [waiting(f"rt-{i}", Priority.realtime, since=19.0 + i * 0.1) for i in range(5)]
    assert service_order([*fresh, old_batch], now=19.9, aging_s=AGING_S)[-1].request_id == "old-batch"  # 1 period
    assert service_order([*fresh, old_batch], now=20.0, aging_s=AGING_S)[0].request_id == "old-batch"  # 2 periods


@given(st.sampled_from(list(Priority)), st.floats(0, 1000))
def test_aging_only_ever_lifts_a_class(priority: Priority, waited: float) -> None:
    assert 0 <= effective_rank(priority, waited, AGING_S) <= priority.rank
    assert effective_rank(priority, waited, 0) == priority.rank  # aging off


@settings(max_examples=300)
@given(
    entries,
    st.dictionaries(st.sampled_from(["a", "b", "c"]), st.integers(0, 4)),
    st.dictionaries(st.sampled_from(["llm", "image"]), st.one_of(st.none(), st.integers(-1, 5))),
)
def test_plan_respects_free_slots_domain_caps_and_class_order(
    items: list[tuple[Priority, float, str, str]],
    free_by_model: dict[str, int],
    room: dict[str, int | None],
) -> None:
    queue = [waiting(f"r{i}", p, since, model, domain) for i, (p, since, model, domain) in enumerate(items)]
    order = service_order(queue, 50.0, AGING_S)
    free = Counter(free_by_model)

    def pick(w: Waiting[str]) -> str | None:  # one worker per model, reserving the slot it gives
        if free[w.request.model] <= 0:
            return None
        free[w.request.model] -= 1
        return f"worker-{w.request.model}"

    chosen = plan(order, room, pick)
    per_model = Counter(w.request.model for w, _ in chosen)
    per_domain = Counter(w.domain for w, _ in chosen)
    for model, n in per_model.items():
        assert n <= free_by_model.get(model, 0)
    for domain, n in per_domain.items():
        if room.get(domain) is not None:
            assert n <= max(0, room[domain])  # type: ignore[arg-type]
    # Strict: nobody is passed over for a later one that wanted the same model in the same domain.
    taken = {w.request_id for w, _ in chosen}
    for i, w in enumerate(order):
        if w.request_id in taken:
            continue
        later = [
            x
            for x in order[i + 1 :]
            if x.request_id in taken and x.request.model == w.request.model and x.domain == w.domain
        ]
        assert not later, f"{later[0].request_id} went before {w.request_id}"


def test_a_redelivered_request_keeps_its_place_and_takes_the_new_handle() -> None:
    queues: Queues[str] = Queues(aging_s=AGING_S)
    queues.add(waiting("a", Priority.batch, since=1.0))
    queues.add(waiting("b", Priority.batch, since=2.0))
    again = waiting("a", Priority.batch, since=5.0)
    again.handle = "msg-a-redelivered"
    queues.add(again)
    assert [w.request_id for w in queues.order(6.0)] == ["a", "b"]
    assert queues.waiting["a"].handle == "msg-a-redelivered" and queues.waiting["a"].since == 1.0


def test_expired_requests_leave_and_the_rest_are_touched_once_per_period() -> None:
    queues: Queues[str] = Queues(aging_s=AGING_S)
    queues.add(waiting("late", Priority.interactive, 0.0, deadline_ms=now_ms() - 1))
    queues.add(waiting("fine", Priority.interactive, 0.0))
    assert [w.request_id for w in queues.expired(now_ms())] == ["late"]
    assert "late" not in queues and len(queues) == 1
    assert [w.request_id for w in queues.to_touch(now=5.0, every_s=3.0)] == ["fine"]
    assert queues.to_touch(now=6.0, every_s=3.0) == []  # touched at 5.0
    assert [w.request_id for w in queues.to_touch(now=8.0, every_s=3.0)] == ["fine"]


def test_the_report_counts_waiting_and_dispatched_requests_per_class() -> None:
    queues: Queues[str] = Queues(aging_s=AGING_S)
    for i, p in enumerate([Priority.batch, Priority.batch, Priority.realtime]):
        queues.add(waiting(f"r{i}", p, since=float(i)))
    queues.dispatched(queues.waiting["r2"], now=2.5)
    classes = queues.classes("llm", now=4.0)
    assert classes[Priority.batch].waiting == 2 and classes[Priority.batch].oldest_wait_ms == 4000.0
    assert classes[Priority.realtime].waiting == 0 and classes[Priority.realtime].dispatched == 1
    assert classes[Priority.realtime].wait_p50_ms == 500.0
    assert Priority.interactive not in classes
