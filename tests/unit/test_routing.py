"""The routing rule (services/scheduler/routing.py): served, fallback, placeable or refused, on
random fleets and catalogs."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from contracts.requests import Modality
from contracts.workers import ModelEntry, WorkerState, WorkerStatus
from services.scheduler.routing import Route, Way, route

MODELS = ("a", "b", "c")
DOMAINS = ("llm", "image", "default")


def worker(
    wid: str,
    models: tuple[str, ...],
    domain: str = "llm",
    state: WorkerState = WorkerState.ready,
    memory_mb: float = 0.0,
) -> WorkerStatus:
    return WorkerStatus(
        worker_id=wid,
        node="n",
        engine="llama_cpp",
        models=models,
        slots_total=2,
        slots_free=2,
        outstanding=0,
        state=state,
        domain=domain,
        memory_mb=memory_mb,
    )


def entry(model: str, fallback: str | None = None, placed: bool = False, domain: str = "llm") -> ModelEntry:
    return ModelEntry(
        id=model,
        modality=(Modality.chat,),
        engine="llama_cpp",
        source="tiny",
        fallback=fallback,
        declared=placed,
        memory_mb=100.0 if placed else None,
        domain=domain,
    )


workers = st.lists(
    st.builds(
        lambda i, models, domain, state, host: worker(f"w{i}", tuple(models), domain, state, 1000.0 if host else 0.0),
        st.integers(0, 6),
        st.lists(st.sampled_from(MODELS), max_size=2, unique=True),
        st.sampled_from(DOMAINS),
        st.sampled_from(list(WorkerState)),
        st.booleans(),
    ),
    max_size=6,
    unique_by=lambda w: w.worker_id,
)
catalogs = st.dictionaries(
    st.sampled_from(MODELS),
    st.tuples(st.none() | st.sampled_from(MODELS), st.booleans(), st.sampled_from(DOMAINS)),
).map(lambda specs: {m: entry(m, fb if fb != m else None, placed, d) for m, (fb, placed, d) in specs.items()})


def serves(w: WorkerStatus, model: str | None) -> bool:
    return model is not None and model in w.models and w.state is WorkerState.ready


@given(st.sampled_from(MODELS), catalogs, workers, st.none() | st.sampled_from([f"w{i}" for i in range(7)]))
def test_the_way_is_the_first_the_fleet_offers(
    model: str, catalog: dict[str, ModelEntry], live: list[WorkerStatus], exclude: str | None
) -> None:
    r = route(model, catalog, live, exclude)
    others = [w for w in live if w.worker_id != exclude]
    fallback = catalog[model].fallback if model in catalog else None
    served = any(serves(w, model) for w in others)
    by_fallback = any(serves(w, fallback) for w in others)
    placeable = model in catalog and catalog[model].placed and any(w.memory_mb > 0 for w in live)
    expected = Way.served if served else Way.fallback if by_fallback else Way.placeable if placeable else Way.refused
    assert r.way is expected
    assert (r.domain is None) == (r.way is Way.refused)
    if r.way is Way.served:
        assert r.domain == min(w.domain for w in others if serves(w, model))
    if r.way is Way.fallback:
        assert r.domain == min(w.domain for w in others if serves(w, fallback))
    if r.way is Way.placeable:
        assert r.domain == catalog[model].domain


@given(st.sampled_from(MODELS), catalogs, workers, st.sampled_from(MODELS), st.sampled_from(DOMAINS))
def test_a_new_worker_never_refuses_what_was_routed(
    model: str, catalog: dict[str, ModelEntry], live: list[WorkerStatus], serving: str, domain: str
) -> None:
    before = route(model, catalog, live).way
    after = route(model, catalog, [*live, worker("new", (serving,), domain)]).way
    assert before is Way.refused or after is not Way.refused
    if serving == model:
        assert after is Way.served


@given(st.sampled_from(MODELS), catalogs, workers)
def test_excluding_the_only_worker_of_a_model_leaves_what_else_the_fleet_offers(
    model: str, catalog: dict[str, ModelEntry], live: list[WorkerStatus]
) -> None:
    alone = worker("gone", (model,))
    r = route(model, catalog, [w for w in live if not serves(w, model)] + [alone], exclude="gone")
    assert r.way is not Way.served
    assert r == route(model, catalog, [w for w in live if not serves(w, model)])


def test_a_draining_worker_does_not_serve() -> None:
    assert route("a", {}, [worker("w", ("a",), state=WorkerState.draining)]).way is Way.refused


def test_a_placed_model_needs_a_live_host() -> None:
    catalog = {"a": entry("a", placed=True, domain="image")}
    assert route("a", catalog, [worker("w", ("b",))]).way is Way.refused
    host = route("a", catalog, [worker("h", (), memory_mb=4000.0)])
    assert (host.way, host.domain) == (Way.placeable, "image")


@given(st.floats(0, 100), st.floats(0, 100))
def test_the_fallback_is_due_at_once_when_nothing_serves_the_model_else_after_the_wait(
    waited: float, after: float
) -> None:
    assert Route("a", fallback="b", fallback_in="llm").fallback_due(waited, after)
    assert Route("a", served_in="llm", fallback="b", fallback_in="llm").fallback_due(waited, after) == (waited >= after)
    assert not Route("a", served_in="llm", fallback="b").fallback_due(waited, after)
