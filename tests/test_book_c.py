"""The C book side (arbwire._book) against the pure-Python reference side.

"The same" means, after every update, the same keys in the same order and, for each,
the same price text and size text, and that bad input raises the same exception
having applied the same levels before it.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbwire.book import IMPLEMENTATION, CL2Book, L2Book, PyL2Book
from arbwire.record.importers import Kind, read_hftbacktest
from arbwire.venues.binance import BinanceSession

needs_c = pytest.mark.skipif(CL2Book is None, reason=f"C level loop not loaded: {IMPLEMENTATION}")


def assert_same(a: L2Book, b: L2Book) -> None:
    for sa, sb in ((a.bids, b.bids), (a.asks, b.asks)):
        assert list(sa.order) == list(sb.order)
        assert sa.text_levels(len(sa)) == sb.text_levels(len(sb))
        assert list(sa.levels()) == list(sb.levels())
        assert sa.best() == sb.best() and sa.sign == sb.sign


def apply_both(a: L2Book, b: L2Book, bids, asks) -> None:  # type: ignore[no-untyped-def]
    """Apply to both; they must agree on the outcome, exception included."""
    errors = []
    for book in (a, b):
        try:
            book.apply(bids, asks)
        except Exception as exc:  # noqa: BLE001 - the exception itself is compared
            errors.append((type(exc), str(exc)))
        else:
            errors.append(None)
    assert errors[0] == errors[1]
    assert_same(a, b)


@needs_c
@pytest.mark.parametrize("depth", [5000, 40])
def test_real_capture_every_state_identical(real_data, depth):
    """Replay the real ETHUSDT capture (snapshot + all diffs) through both loops."""
    path = real_data / "hftbacktest" / "binance_spot_ethusdt_20240808.gz"
    session = BinanceSession(["ETH-USDT"])
    py, c = PyL2Book(depth), CL2Book(depth)  # type: ignore[misc]
    snapshot = None
    updates = 0
    for r in read_hftbacktest(path):
        if r.kind is Kind.HTTP:
            snapshot = session.parse_snapshot("ETH-USDT", r.payload, r.recv_ns)
            py.apply_snapshot(snapshot.bids, snapshot.asks)
            c.apply_snapshot(snapshot.bids, snapshot.asks)
            assert_same(py, c)
        elif snapshot is not None and b"@depth" in r.payload:
            (upd,) = session.on_frame(r.payload, r.recv_ns)
            py.apply(upd.bids, upd.asks)
            c.apply(upd.bids, upd.asks)
            assert_same(py, c)
            assert (py.best_bid(), py.best_ask(), py.is_crossed()) == (c.best_bid(), c.best_ask(), c.is_crossed())
            updates += 1
    assert updates == 3432
    assert len(c.bids) == min(depth, len(py.bids)) and len(c.asks) <= depth


# Price texts the C parser takes itself (plain ASCII decimals) and everything it must
# hand to arbwire.numbers.to_units: exponents, signs, spaces, underscores, non-ASCII
# digits, too many decimals, too many digits for 64 bits.
ODD_PRICES = [
    "0", "00", "0.0", "1", "5.", ".5", "007.50", "2683.80000000", "1.000000000000000001",
    "1.0000000000000000001", "0.000000000000000001", "9999999999999999999", "18446744073709551616",
    "99999999999999999999.5", "1" * 60, "1" * 5000, "1e3", "1E-2", "-1", "+1", " 1", "1 ", "1_000",
    "", ".", "..", "1..2", "1.2.3", "nan", "inf", "abc", "١٢٣", "１２.５", "²", "0x10",
]


@needs_c
@pytest.mark.parametrize("price", ODD_PRICES)
def test_price_conversion_and_errors_identical(price):
    py, c = PyL2Book(), CL2Book()  # type: ignore[misc]
    apply_both(py, c, [(price, "1")], [(price, "2")])
    apply_both(py, c, [(price, "0")], [])


# short odd texts: to_units takes "1e999999" to a million-digit int, slow in both loops
text = st.text(alphabet="0123456789.", max_size=22) | st.text(alphabet="0123456789.e-+ _١５", max_size=5)


@needs_c
@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(st.lists(st.tuples(text, text), max_size=12), st.lists(st.tuples(text, text), max_size=12)),
        min_size=1,
        max_size=12,
    ),
    st.integers(1, 12),
)
def test_arbitrary_text_identical(updates, depth):
    py, c = PyL2Book(depth), CL2Book(depth)  # type: ignore[misc]
    for bids, asks in updates:
        apply_both(py, c, bids, asks)


# Sorted runs of distinct prices (how venues send each side, best first) take the C side's
# one-pass merge from 8 levels on; anything else is set level by level.
grid = st.integers(1, 400).map(lambda k: f"{k / 4:.2f}")
sizes = st.sampled_from(["0", "0.000", "1", "2.5", "0.125", "7"])


@needs_c
@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(grid, sizes), max_size=60, unique_by=lambda lv: lv[0]),
            st.booleans(),  # which way the run is sorted
            st.sampled_from([None, 0, 3, 9, 30]),  # where a refused price breaks the run
        ),
        min_size=1,
        max_size=15,
    ),
    st.integers(5, 500),
)
def test_sorted_runs_merge_like_the_reference(updates, depth):
    py, c = PyL2Book(depth), CL2Book(depth)  # type: ignore[misc]
    for levels, descending, bad_at in updates:
        run = sorted(levels, key=lambda lv: float(lv[0]), reverse=descending)
        if bad_at is not None and bad_at <= len(run):
            run.insert(bad_at, ("1e", "1"))
        apply_both(py, c, run, list(reversed(run)))


@needs_c
@pytest.mark.parametrize(
    "levels",
    [
        [["100.5", "1"], ["101", "2"]],  # lists, not tuples
        (("100.5", "1"), ("101", "0")),  # a tuple of levels
        "generator",
        [("100.5", "1", "x")],
        [("100.5",)],
        [12],
        [None],
        ["ab"],  # a 2-char string unpacks into ("a", "b")
        [(["unhashable"], "1")],
        [("100.5", b"0")],
        [("100.5", 1)],
        [("100.5", "")],
        [(1005, "1")],
        7,
    ],
)
def test_input_shapes_identical(levels):
    py, c = PyL2Book(), CL2Book()  # type: ignore[misc]
    apply_both(py, c, [("100", "1")], [("200", "1")])
    if levels == "generator":  # one fresh generator per book
        for book in (py, c):
            book.apply((x for x in [("100.5", "1"), ("100", "0")]), (x for x in [("200.5", "3")]))
        assert_same(py, c)
        assert len(c.bids) == 1 and len(c.asks) == 2
    else:
        apply_both(py, c, levels, levels)


def test_python_price_cache_is_bounded():
    """The reference side's price-text cache is cleared when full: bounded memory."""
    book = PyL2Book()
    n = (1 << 16) + 10
    levels = [(f"{i}.5", "1") for i in range(n)]
    book.apply(levels, levels)
    assert len(book.bids.cache) == len(book.asks.cache) == 10


@needs_c
@pytest.mark.parametrize("depth", [-3, 0, 1])
def test_tiny_and_negative_depths_trim_alike(depth):
    py, c = PyL2Book(depth), CL2Book(depth)  # type: ignore[misc]
    levels = [(f"{100 + i}.5", "1") for i in range(12)]
    apply_both(py, c, levels, levels)
    for book in (py, c):
        book.bids.trim(depth)
    assert_same(py, c)


@needs_c
@pytest.mark.parametrize(
    ("price", "kept"),
    [
        ("1" * 21, True),
        ("170141183460469231731.687303715884105727", True),  # 2**127 - 1 units: the largest key
        ("170141183460469231731.687303715884105728", False),
        ("1" * 22, False),
        ("1e21", False),
    ],
)
def test_prices_beyond_128_bit_keys_refused_alike(price, kept):
    """A key is a signed 128-bit int in C: a price above ~1.7e20 is refused by both sides."""
    py, c = PyL2Book(), CL2Book()  # type: ignore[misc]
    apply_both(py, c, [(price, "1")], [(price, "1")])
    assert bool(c) is bool(py) is kept


@needs_c
def test_no_reference_leaks():
    """Repeated insert/delete, trims, reads of keys and failing updates leave every
    refcount where it was."""
    book = CL2Book(max_depth=3)  # type: ignore[misc]
    # objects of this test alone ("0" itself is a shared cached string)
    price, size, zero, bad = ("".join(x) for x in (("2683", ".81"), ("1", ".5"), ("0", ".00"), ("1", "e")))
    worse = [(f"{100 + i}.25", size) for i in range(6)]  # inserts past max_depth: trims
    book.apply([(price, size)], [(price, size)])
    book.apply([(price, zero)], [(price, zero)])
    gone = [(p, zero) for p, _ in worse]
    for _ in range(3):  # warm up: cache entries, interned objects
        book.apply(worse, worse)
        book.apply(gone, gone)
    counts = [sys.getrefcount(x) for x in (price, size, zero, bad)]
    for _ in range(1000):
        book.apply([(price, size)], [(price, size)])
        assert book.bids.order[-1] == book.bids.best() and book.top()[0] == (price, size)
        book.apply([(price, zero)], [(price, zero)])
        book.apply(worse, worse)
        list(book.asks.levels())
        book.apply(gone, gone)
        with pytest.raises(ValueError):
            book.apply([(price, size), (bad, size)], [])
        book.apply([(price, zero)], [])
    assert not book
    after = [sys.getrefcount(x) for x in (price, size, zero, bad)]
    assert after == counts


def _implementation(env: dict[str, str], code: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ARBWIRE_PURE_PYTHON"} | env
    return subprocess.run(
        [sys.executable, "-c", code + "import arbwire.book as b; print(b.IMPLEMENTATION, b.L2Book.side_type.__name__)"],
        env=env, capture_output=True, text=True, check=True,
    )


def test_env_var_forces_pure_python():
    out = _implementation({"ARBWIRE_PURE_PYTHON": "1"})
    assert out.stdout.split()[-1] == "BookSide" and out.stdout.startswith("python")
    assert out.stderr == ""


def test_default_is_c_when_built():
    built = all(importlib.util.find_spec(m) is not None for m in ("arbwire._book", "arbwire._levels"))
    out = _implementation({})
    assert out.stdout.split() == (["c", "CBookSide"] if built else out.stdout.split())
    if not built:
        assert "C extensions not available" in out.stderr


@pytest.mark.parametrize("module", ["arbwire._book", "arbwire._levels"])
def test_missing_extension_falls_back_with_a_warning(module):
    out = _implementation({}, f"import sys; sys.modules[{module!r}] = None; ")
    assert out.stdout.split()[-1] == "BookSide"
    assert "arbwire C extensions not available" in out.stderr
    assert out.stderr.count("not available") == 1
