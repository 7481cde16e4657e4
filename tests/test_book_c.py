"""The C level loop (arbwire._levels) against the pure-Python reference loop.

Both loops act on the same Python dicts and list, so "the same" means every
structure of both books is equal after every update: sizes, texts, the sorted key
lists and the price cache, and that bad input raises the same exception.
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


def state(book: L2Book) -> tuple:
    return tuple((s.sizes, s.texts, s.order, s.cache) for s in (book.bids, book.asks))


def assert_same(a: L2Book, b: L2Book) -> None:
    for sa, sb in ((a.bids, b.bids), (a.asks, b.asks)):
        assert sa.order == sb.order
        assert sa.sizes == sb.sizes
        assert sa.texts == sb.texts
        assert sa.cache == sb.cache


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


@needs_c
def test_cache_bound_identical(monkeypatch):
    """The price cache is cleared at the same size in both loops."""
    py, c = PyL2Book(), CL2Book()  # type: ignore[misc]
    n = (1 << 16) + 10
    levels = [(f"{i}.5", "1") for i in range(n)]
    apply_both(py, c, levels, levels)
    assert len(c.bids.cache) == len(c.asks.cache) == 10


@needs_c
def test_no_reference_leaks():
    """Repeated insert/delete and failing updates leave every refcount where it was."""
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
    counts = [sys.getrefcount(x) for x in (price, size, zero, bad, book.bids.cache[price], book.asks.cache[price])]
    for _ in range(1000):
        book.apply([(price, size)], [(price, size)])
        book.apply([(price, zero)], [(price, zero)])
        book.apply(worse, worse)
        book.apply(gone, gone)
        with pytest.raises(ValueError):
            book.apply([(price, size), (bad, size)], [])
        book.apply([(price, zero)], [])
    assert not book
    after = [sys.getrefcount(x) for x in (price, size, zero, bad, book.bids.cache[price], book.asks.cache[price])]
    assert after == counts


def _implementation(env: dict[str, str], code: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ARBWIRE_PURE_PYTHON"} | env
    return subprocess.run(
        [sys.executable, "-c", code + "import arbwire.book as b; print(b.IMPLEMENTATION, b.L2Book.apply.__name__)"],
        env=env, capture_output=True, text=True, check=True,
    )


def test_env_var_forces_pure_python():
    out = _implementation({"ARBWIRE_PURE_PYTHON": "1"})
    assert out.stdout.split()[-1] == "_apply_py" and out.stdout.startswith("python")
    assert out.stderr == ""


def test_default_is_c_when_built():
    built = importlib.util.find_spec("arbwire._levels") is not None
    out = _implementation({})
    assert out.stdout.split() == (["c", "_apply_c"] if built else out.stdout.split())
    if not built:
        assert "C extension not available" in out.stderr


def test_missing_extension_falls_back_with_a_warning():
    out = _implementation({}, "import sys; sys.modules['arbwire._levels'] = None; ")
    assert out.stdout.split()[-1] == "_apply_py"
    assert "arbwire._levels C extension not available" in out.stderr
    assert out.stderr.count("not available") == 1
