"""Stop sequences over arbitrarily split streamed text."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from services.workers.stops import StopScanner


def run(pieces: list[str], stops: tuple[str, ...]) -> tuple[str, bool]:
    scanner = StopScanner(stops)
    out = "".join(scanner.feed(p) for p in pieces) + scanner.flush()
    return out, scanner.stopped


def test_stop_split_across_pieces() -> None:
    assert run(["hello <|im", "_end|> after"], ("<|im_end|>",)) == ("hello ", True)


def test_held_text_that_was_not_a_stop_comes_out() -> None:
    assert run(["a <|i", "x"], ("<|im_end|>",)) == ("a <|ix", False)


@given(
    st.text(alphabet="abc<|>", max_size=40),
    st.lists(st.text(alphabet="abc<|>", min_size=1, max_size=3), max_size=3),
    st.data(),
)
def test_any_split_gives_the_text_up_to_the_first_stop(text: str, stops: list[str], data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    expected = text[: min(hits)] if hits else text
    assert run(pieces, tuple(stops)) == (expected, bool(hits))


def test_a_longer_stop_that_began_earlier_wins() -> None:
    # found by the property test: "<" completes first, but "><<" began before it
    assert run(["><", "<"], ("<", "><<")) == ("", True)
