"""The C book side against the Python reference under arbitrary sequences of operations.

Every read a caller can make (keys, best levels, text levels at any depth, walks by rank,
the crossed test, OKX's checksum) is compared after every step of a hypothesis state
machine that mixes updates (sorted runs that take the C merge, shuffled ones, repeated
prices, deletes, refused prices), snapshots, trims and clears.
"""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from arbwire.book import C_BOOK, IMPLEMENTATION, CL2Book, PyL2Book
from arbwire.venues.okx import okx_checksum

pytestmark = pytest.mark.skipif(CL2Book is None, reason=f"C book sides not loaded: {IMPLEMENTATION}")

price = st.integers(1, 120).map(lambda k: f"{100 + k / 8:.3f}".rstrip("0").rstrip("."))
size = st.sampled_from(["0", "0.0", "1", "2.50", "0.125", "7", "10"])
level = st.tuples(price, size)
levels = st.lists(level, max_size=40)
bad = st.sampled_from(["1e", "-1", "", "abc", "1" * 25])


def _outcome(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the exception itself is compared
        return type(exc), str(exc)


class BookPair(RuleBasedStateMachine):
    @initialize(depth=st.integers(1, 150))
    def start(self, depth: int) -> None:
        self.py, self.c = PyL2Book(depth), CL2Book(depth)  # type: ignore[misc]

    def both(self, fn) -> None:  # type: ignore[no-untyped-def]
        assert _outcome(lambda: fn(self.py)) == _outcome(lambda: fn(self.c))

    @rule(bids=levels, asks=levels, descending=st.booleans())
    def sorted_update(self, bids, asks, descending) -> None:  # type: ignore[no-untyped-def]
        key = lambda lv: float(lv[0])  # noqa: E731
        b = sorted({p: s for p, s in bids}.items(), key=key, reverse=descending)
        a = sorted({p: s for p, s in asks}.items(), key=key, reverse=not descending)
        self.both(lambda book: book.apply(b, a))

    @rule(bids=levels, asks=levels)
    def any_update(self, bids, asks) -> None:  # type: ignore[no-untyped-def]
        self.both(lambda book: book.apply(bids, asks))

    @rule(run=st.lists(level, min_size=8, max_size=30, unique_by=lambda lv: lv[0]), at=st.integers(0, 29), text=bad)
    def update_broken_by_a_bad_price(self, run, at, text) -> None:  # type: ignore[no-untyped-def]
        run = sorted(run, key=lambda lv: float(lv[0]))
        run.insert(min(at, len(run)), (text, "1"))
        self.both(lambda book: book.apply(run, []))

    @rule(bids=levels, asks=levels)
    def snapshot(self, bids, asks) -> None:  # type: ignore[no-untyped-def]
        self.both(lambda book: book.apply_snapshot(bids, asks))

    @rule(depth=st.integers(-2, 60), side=st.sampled_from(["bids", "asks"]))
    def trim(self, depth, side) -> None:  # type: ignore[no-untyped-def]
        self.both(lambda book: getattr(book, side).trim(depth))

    @precondition(lambda self: hasattr(self, "py"))
    @rule()
    def clear(self) -> None:
        self.both(lambda book: book.clear())

    @invariant()
    def same_book(self) -> None:
        if not hasattr(self, "py"):
            return
        py, c = self.py, self.c
        for sp, sc in ((py.bids, c.bids), (py.asks, c.asks)):
            n = len(sp)
            assert len(sc) == n
            assert list(sc.order) == list(sp.order)
            if n:
                assert sc.order[-1] == sp.order[-1] and sc.order[0] == sp.order[0]
            assert sc.best() == sp.best()
            for depth in (0, 1, 3, 25, n, n + 5):
                assert sc.text_levels(depth) == sp.text_levels(depth)
            assert list(sc.levels()) == list(sp.levels())
            assert _outcome(lambda s=sc, rank=n: s.level(rank)) == (IndexError, "level rank out of range")
        assert c.top() == py.top()
        assert c.is_crossed() == py.is_crossed()
        assert (c.best_bid(), c.best_ask()) == (py.best_bid(), py.best_ask())
        expected = _outcome(lambda: okx_checksum(py.bids.text_levels(25), py.asks.text_levels(25)))
        assert _outcome(lambda: C_BOOK.okx_checksum(c.bids, c.asks, 25)) == expected  # type: ignore[union-attr]


BookPair.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
test_c_side_matches_the_reference_under_any_sequence = BookPair.TestCase
