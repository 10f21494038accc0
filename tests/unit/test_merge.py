"""The aggregator's merge: in order, exactly once, whatever the arrival order and duplicates."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from contracts.errors import ErrorCode
from contracts.results import AnyChunk, DeltaChunk, ErrorChunk, FinalChunk, Usage
from services.common.merge import RequestMerge


def stream_of(n: int) -> list[AnyChunk]:
    chunks: list[AnyChunk] = [DeltaChunk(request_id="r", seq=i, text=f"t{i} ") for i in range(n)]
    chunks.append(FinalChunk(request_id="r", seq=n, finish_reason="stop", usage=Usage(completion_tokens=n)))
    return chunks


def test_in_order_passes_straight_through() -> None:
    merge = RequestMerge()
    out = [c for chunk in stream_of(3) for c in merge.accept(chunk)]
    assert [c.seq for c in out] == [0, 1, 2, 3]
    assert merge.done and merge.merged_text == "t0 t1 t2 "


def test_early_chunk_is_held_until_the_gap_fills() -> None:
    merge = RequestMerge()
    chunks = stream_of(2)
    assert merge.accept(chunks[1]) == []
    assert [c.seq for c in merge.accept(chunks[0])] == [0, 1]


def test_error_ends_the_request_and_later_chunks_are_dropped() -> None:
    merge = RequestMerge()
    merge.accept(DeltaChunk(request_id="r", seq=0, text="a"))
    err = ErrorChunk(request_id="r", seq=1, code=ErrorCode.engine_error, message="boom")
    assert merge.accept(err) == [err]
    assert merge.accept(DeltaChunk(request_id="r", seq=1, text="b")) == []
    assert merge.done and merge.merged_text == "a"


@given(st.data())
def test_any_arrival_order_with_duplicates_yields_each_chunk_once_in_order(data: st.DataObject) -> None:
    n = data.draw(st.integers(min_value=0, max_value=30))
    duplicates = data.draw(st.lists(st.integers(min_value=0, max_value=n), max_size=3 * n + 3))
    # Every chunk arrives at least once, plus arbitrary duplicates, all in an arbitrary order.
    arrivals = data.draw(st.permutations(list(range(n + 1)) + duplicates))
    chunks = stream_of(n)
    merge = RequestMerge()
    released = [c for i in arrivals for c in merge.accept(chunks[i])]
    assert [c.seq for c in released] == list(range(n + 1))
    assert merge.merged_text == "".join(f"t{i} " for i in range(n))
