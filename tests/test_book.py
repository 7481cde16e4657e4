"""L2Book against a naive Decimal model, and on the real ETHUSDT capture.

Every test runs on both level loops: the pure-Python reference and the C extension
(``arbwire._levels``; skipped, with the reason, when it is not loaded).
"""

from __future__ import annotations

import gzip
import json
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbwire.book import IMPLEMENTATION, CL2Book, L2Book, PyL2Book
from arbwire.numbers import to_units

BOOKS = [
    pytest.param(PyL2Book, id="python"),
    pytest.param(
        CL2Book,
        id="c",
        marks=pytest.mark.skipif(CL2Book is None, reason=f"C level loop not loaded: {IMPLEMENTATION}"),
    ),
]

prices = st.integers(min_value=1, max_value=400).map(lambda i: f"{100 + i / 100:.2f}")
sizes = st.one_of(
    st.just("0"), st.just("0.00000000"), st.integers(1, 10_000).map(lambda i: f"{i / 1000:.8f}")
)
levels = st.lists(st.tuples(prices, sizes), max_size=30)


def _model_apply(model: dict[Decimal, Decimal], updates: list[tuple[str, str]]) -> None:
    for p, q in updates:
        if Decimal(q) == 0:
            model.pop(Decimal(p), None)
        else:
            model[Decimal(p)] = Decimal(q)


@pytest.mark.parametrize("Book", BOOKS)
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(levels, levels), min_size=1, max_size=20), st.integers(3, 50))
def test_book_equals_naive_model(Book: type[L2Book], updates, depth):
    book = Book(max_depth=depth)
    bids: dict[Decimal, Decimal] = {}
    asks: dict[Decimal, Decimal] = {}
    for b, a in updates:
        book.apply(b, a)
        _model_apply(bids, b)
        _model_apply(asks, a)
        # the book keeps the best `depth` levels; the model must be cut the same way
        for side, keep in ((bids, sorted(bids, reverse=True)[:depth]), (asks, sorted(asks)[:depth])):
            for p in list(side):
                if p not in keep:
                    del side[p]
        got_bids = [(Decimal(p), Decimal(q)) for p, q in book.bids.text_levels(10_000)]
        got_asks = [(Decimal(p), Decimal(q)) for p, q in book.asks.text_levels(10_000)]
        assert got_bids == sorted(bids.items(), reverse=True)
        assert got_asks == sorted(asks.items())
        assert book.best_bid() == (to_units(str(max(bids))) if bids else None)
        assert book.best_ask() == (to_units(str(min(asks))) if asks else None)
        assert book.is_crossed() == bool(bids and asks and max(bids) >= min(asks))


@pytest.mark.parametrize("Book", BOOKS)
def test_different_texts_of_one_price_are_one_level(Book: type[L2Book]):
    book = Book()
    book.apply([("3366.10", "1")], [])
    book.apply([("3366.1", "2")], [])
    assert len(book.bids) == 1
    assert book.bids.text_levels(1) == [("3366.10", "2")]
    book.apply([("3366.100", "0")], [])
    assert len(book.bids) == 0 and book.best_bid() is None


@pytest.mark.parametrize("Book", BOOKS)
def test_real_capture_levels_round_trip_exactly(Book: type[L2Book], real_data):
    """Every level of the real ETHUSDT snapshot lands in the book at its exact value."""
    with gzip.open(real_data / "hftbacktest" / "binance_spot_ethusdt_20240808.gz", "rt") as fh:
        snap = next(json.loads(line.split(" ", 1)[1]) for line in fh if '"lastUpdateId"' in line)
    book = Book()
    book.apply_snapshot([tuple(x) for x in snap["bids"]], [tuple(x) for x in snap["asks"]])
    assert len(book.bids) == len(snap["bids"]) and len(book.asks) == len(snap["asks"])
    assert book.bids.text_levels(len(snap["bids"])) == [tuple(x) for x in snap["bids"]]
    assert book.asks.text_levels(len(snap["asks"])) == [tuple(x) for x in snap["asks"]]
    assert not book.is_crossed()


def _state(book: L2Book) -> tuple:
    return tuple((list(s.order), s.text_levels(len(s))) for s in (book.bids, book.asks))


@pytest.mark.parametrize("Book", BOOKS)
@settings(max_examples=300, deadline=None)
@given(levels, levels, st.integers(3, 50))
def test_snapshot_equals_its_levels_applied_in_the_order_sent(Book: type[L2Book], bids, asks, depth):
    """apply_snapshot applies levels worst first when that can't change the result;
    repeated prices (which text, which size wins), zero sizes and trimming must still
    come out as one apply of the levels in the venue's order."""
    snap = Book(max_depth=depth)
    snap.apply([("1.00", "1")], [("999.00", "1")])  # leftovers the snapshot must replace
    snap.apply_snapshot(bids, asks)
    ref = Book(max_depth=depth)
    ref.apply(bids, asks)  # one apply in the order sent: what a snapshot always meant
    assert _state(snap) == _state(ref)


def test_real_snapshot_applied_worst_first_equals_the_order_sent(real_data):
    from arbwire.record.importers import Kind, read_hftbacktest

    body = next(r.payload for r in read_hftbacktest(real_data / "hftbacktest" / "binance_spot_ethusdt_20240808.gz")
                if r.kind is Kind.HTTP)
    snap = json.loads(body)
    bids, asks = [tuple(x) for x in snap["bids"]], [tuple(x) for x in snap["asks"]]
    fast, ref = L2Book(), L2Book()
    fast.apply_snapshot(bids, asks)
    ref.apply(bids, asks)
    assert _state(fast) == _state(ref) and len(fast.bids) == len(bids) == 1000
