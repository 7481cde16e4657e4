"""The C OKX checksum (arbwire._book.okx_checksum) against the Python reference.

The C function reads a C book's arrays; the reference reads the same book's
``text_levels``. "The same" means the same integer on every book, or the same exception
for texts that cannot be encoded: after every update of the real capture, at several
depths, and on arbitrary books.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbwire.book import C_BOOK, IMPLEMENTATION, CL2Book, L2Book, PyL2Book
from arbwire.model import BookUpdate
from arbwire.record.importers import Kind, read_cryptofeed
from arbwire.venues.okx import CHECKSUM_DEPTH, OkxRule, OkxSession, okx_checksum

needs_c = pytest.mark.skipif(C_BOOK is None, reason=f"C extension not loaded: {IMPLEMENTATION}")

RULE = OkxRule()
# 1 and 25 as OKX uses them; 33 and more a side take the C function's heap path
DEPTHS = (1, 2, 5, CHECKSUM_DEPTH, 32, 33, 400, 10_000)


def outcome(fn: Callable[[], int]) -> object:
    """The checksum, or the exception as (type, text): join and encode name the same item."""
    try:
        return fn()
    except UnicodeEncodeError:  # positions differ: the joined string vs one field
        return UnicodeEncodeError
    except Exception as exc:  # noqa: BLE001 - the exception itself is compared
        return type(exc), str(exc)


def py_at(book: L2Book, depth: int) -> object:
    return outcome(lambda: okx_checksum(book.bids.text_levels(depth), book.asks.text_levels(depth)))


def c_at(book: L2Book, depth: int) -> object:
    return outcome(lambda: C_BOOK.okx_checksum(book.bids, book.asks, depth))  # type: ignore[union-attr]


def assert_same(book: L2Book, depths: tuple[int, ...] = DEPTHS) -> None:
    assert outcome(lambda: RULE._checksum_c(book)) == outcome(lambda: RULE._checksum_py(book))
    for depth in depths:
        assert c_at(book, depth) == py_at(book, depth), depth


@needs_c
@pytest.mark.parametrize("book_type", [CL2Book, PyL2Book], ids=["c-side", "py-side"])
def test_real_capture_every_checksum_identical_and_verified(real_data, book_type):
    """Every books message of the real OKX capture: C == Python == the venue's checksum
    (a book of Python sides takes the reference through ``_checksum_c`` too)."""
    session = OkxSession(["BTC-USD-220527", "UNI-USD-PERP", "BTC-USDT"])
    books: dict[str, L2Book] = {}
    checked = 0
    for r in read_cryptofeed(real_data / "cryptofeed" / "OKX.ws.1.0"):
        if r.kind is not Kind.RECV:
            continue
        for upd in session.on_frame(r.payload, r.recv_ns):
            if type(upd) is not BookUpdate:
                continue
            book = books.setdefault(upd.symbol, book_type())
            if upd.is_snapshot:
                book.apply_snapshot(upd.bids, upd.asks)
            else:
                book.apply(upd.bids, upd.asks)
            assert RULE._checksum_c(book) == RULE._checksum_py(book) == upd.checksum
            if book_type is CL2Book:
                assert_same(book)
            checked += 1
    assert checked == 290
    assert all(len(b.bids) > 33 and len(b.asks) > 33 for b in books.values())


def test_rule_runs_the_c_checksum_when_the_extension_is_loaded():
    expected = "_checksum_c" if C_BOOK is not None else "_checksum_py"
    assert OkxRule.checksum.__name__ == expected


# plain decimals, the same price in other spellings, and text to_units refuses
prices = (
    st.from_regex(r"\A[0-9]{1,5}(\.[0-9]{0,4})?\Z")
    | st.sampled_from(["1", "1.0", "1.00", "1e0", "10", "1E1", "0.1", ".1", "1e3", "-1", " 1", "nan", "١٢"])
)
# any text: non-ASCII sizes take the UTF-8 path; "", "0" and "0.00" delete the level
sizes = st.text(max_size=6) | st.from_regex(r"\A[0-9]{1,3}(\.[0-9]{0,3})?\Z") | st.just("0")
levels = st.lists(st.tuples(prices, sizes), max_size=30)


@needs_c
@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(levels, levels), min_size=1, max_size=10), st.integers(1, 80), st.integers(1, 70))
def test_arbitrary_books_identical(updates, max_depth, depth):
    book = CL2Book(max_depth)  # type: ignore[misc]
    for bids, asks in updates:
        with contextlib.suppress(ValueError):  # a refused price; earlier levels stay applied
            book.apply(bids, asks)
        assert_same(book, (1, depth, CHECKSUM_DEPTH, 40))


def _book() -> L2Book:
    book = CL2Book()  # type: ignore[misc]
    book.apply_snapshot(
        [(f"{100 - i}.5", f"{i + 1}") for i in range(40)], [(f"{101 + i}.25", f"0.{i + 1}") for i in range(40)]
    )
    return book


class Text(str):
    pass


def _set(side: str, rank: int, size: str) -> Callable[[L2Book], None]:
    def change(book: L2Book) -> None:
        s = getattr(book, side)
        s.apply([(s.text_levels(rank + 1)[rank][0], size)], 5000)

    return change


@needs_c
@pytest.mark.parametrize(
    "change",
    [
        _set("bids", 0, "\udc80"),  # str.encode refuses a lone surrogate
        _set("asks", 2, "１２.５"),  # non-ASCII: UTF-8 bytes
        _set("asks", 0, Text("7")),  # a str subclass is a str
        _set("asks", 30, "\udc80"),  # below the top 25: only the deeper depths see it
        lambda book: book.bids.apply([("１２.５", "1"), ("99.75", "2")], 5000),  # non-ASCII price text
    ],
)
def test_odd_texts_fail_or_pass_alike(change):
    book = _book()
    change(book)
    assert_same(book)


@needs_c
def test_argument_checks():
    book = CL2Book()  # type: ignore[misc]
    b, a = book.bids, book.asks
    f = C_BOOK.okx_checksum  # type: ignore[union-attr]
    assert f(b, a, 25) == 0 == okx_checksum([], [])
    with pytest.raises(ValueError, match="depth"):
        f(b, a, 0)
    with pytest.raises(TypeError):
        f(PyL2Book().bids, a, 25)
    with pytest.raises(TypeError):
        f(b, a)


@needs_c
def test_no_reference_leaks():
    """Every path, the heap one and the failing one, leaves every refcount where it was."""
    book = _book()
    f = C_BOOK.okx_checksum  # type: ignore[union-attr]
    b, a = book.bids, book.asks
    texts = [t for side in (b, a) for level in side.text_levels(len(side)) for t in level]
    bad = "".join(("\udc80", "1"))
    price = b.text_levels(20)[19][0]
    good = b.text_levels(20)[19][1]

    def run() -> None:
        f(b, a, 25)
        f(b, a, 400)  # past the stack buffer
        b.apply([(price, bad)], 5000)
        with pytest.raises(UnicodeEncodeError):
            f(b, a, 40)
        b.apply([(price, good)], 5000)

    run()  # warm up
    counts = [sys.getrefcount(x) for x in (*texts, bad)]
    for _ in range(1000):
        run()
    assert [sys.getrefcount(x) for x in (*texts, bad)] == counts


def _rule_checksum(env: dict[str, str], code: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "ARBWIRE_PURE_PYTHON"} | env
    return subprocess.run(
        [sys.executable, "-c", code + "from arbwire.venues.okx import OkxRule; print(OkxRule.checksum.__name__)"],
        env=env, capture_output=True, text=True, check=True,
    )


def test_env_var_selects_the_python_checksum():
    out = _rule_checksum({"ARBWIRE_PURE_PYTHON": "1"})
    assert out.stdout.split() == ["_checksum_py"] and out.stderr == ""


def test_default_is_the_c_checksum_when_built():
    built = importlib.util.find_spec("arbwire._book") is not None
    out = _rule_checksum({})
    assert out.stdout.split() == ["_checksum_c" if built else "_checksum_py"]


def test_missing_extension_falls_back_to_python():
    out = _rule_checksum({}, "import sys; sys.modules['arbwire._book'] = None; ")
    assert out.stdout.split() == ["_checksum_py"]
    assert out.stderr.count("C extensions not available") == 1


def test_build_without_the_checksum_is_stale():
    """A book extension of another API version runs no C at all, and says so."""
    fake = (
        "import sys, types; m = types.ModuleType('arbwire._book'); m.BOOK_API = 0; "
        "sys.modules['arbwire._book'] = m; import arbwire.book as b; print(b.IMPLEMENTATION); "
    )
    out = _rule_checksum({}, fake)
    assert out.stdout.split() == ["python", "(stale", "extension", "build)", "_checksum_py"]
    assert "stale build" in out.stderr
