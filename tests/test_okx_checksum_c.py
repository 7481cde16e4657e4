"""The C OKX checksum (arbwire._levels.okx_checksum) against the Python reference.

Both read the same BookSide dicts and lists, so "the same" means the same integer on
every book, or the same exception when a book's objects are not what a book holds:
after every update of the real capture, at several depths, and on arbitrary books.
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

from arbwire.book import C_EXTENSION, IMPLEMENTATION, CL2Book, L2Book, PyL2Book
from arbwire.model import BookUpdate
from arbwire.record.importers import Kind, read_cryptofeed
from arbwire.venues.okx import CHECKSUM_DEPTH, OkxRule, OkxSession, okx_checksum

needs_c = pytest.mark.skipif(C_EXTENSION is None, reason=f"C extension not loaded: {IMPLEMENTATION}")

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
    b, a = book.bids, book.asks
    return outcome(
        lambda: C_EXTENSION.okx_checksum(b.sizes, b.texts, b.order, a.sizes, a.texts, a.order, depth)  # type: ignore[union-attr]
    )


def assert_same(book: L2Book, depths: tuple[int, ...] = DEPTHS) -> None:
    assert outcome(lambda: RULE._checksum_c(book)) == outcome(lambda: RULE._checksum_py(book))
    for depth in depths:
        assert c_at(book, depth) == py_at(book, depth), depth


@needs_c
@pytest.mark.parametrize("book_type", [CL2Book, PyL2Book], ids=["c-loop", "py-loop"])
def test_real_capture_every_checksum_identical_and_verified(real_data, book_type):
    """Every books message of the real OKX capture: C == Python == the venue's checksum."""
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
            assert_same(book)
            checked += 1
    assert checked == 290
    assert all(len(b.bids) > 33 and len(b.asks) > 33 for b in books.values())


def test_rule_runs_the_c_checksum_when_the_extension_is_loaded():
    expected = "_checksum_c" if C_EXTENSION is not None else "_checksum_py"
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
@given(
    st.lists(st.tuples(levels, levels), min_size=1, max_size=10),
    st.integers(1, 80),
    st.sampled_from([CL2Book, PyL2Book]),
    st.integers(1, 70),
)
def test_arbitrary_books_identical(updates, max_depth, book_type, depth):
    book = book_type(max_depth)
    for bids, asks in updates:
        with contextlib.suppress(ValueError):  # a refused price; earlier levels stay applied
            book.apply(bids, asks)
        assert_same(book, (1, depth, CHECKSUM_DEPTH, 40))


def _book() -> L2Book:
    book = L2Book()
    book.apply_snapshot(
        [(f"{100 - i}.5", f"{i + 1}") for i in range(40)], [(f"{101 + i}.25", f"0.{i + 1}") for i in range(40)]
    )
    return book


def _set_size(side: str, level: int, value: object) -> Callable[[L2Book], None]:
    def corrupt(book: L2Book) -> None:
        s = getattr(book, side)
        s.sizes[s.order[-1 - level]] = value

    return corrupt


def _del(side: str, level: int, what: str) -> Callable[[L2Book], None]:
    def corrupt(book: L2Book) -> None:
        s = getattr(book, side)
        del getattr(s, what)[s.order[-1 - level]]

    return corrupt


class Text(str):
    pass


@needs_c
@pytest.mark.parametrize(
    "corrupt",
    [
        _set_size("bids", 3, 5),  # not a str: join's TypeError, naming the same item
        _set_size("asks", 30, b"1"),
        _set_size("bids", 0, "\udc80"),  # str.encode refuses a lone surrogate
        _set_size("asks", 2, "１２.５"),  # non-ASCII: UTF-8 bytes
        _set_size("asks", 0, Text("7")),  # a str subclass is a str
        _del("bids", 7, "sizes"),  # KeyError with the price units
        _del("asks", 24, "texts"),
        _del("asks", 25, "sizes"),  # below the top 25: only the deeper depths see it
        lambda book: (_set_size("bids", 0, "\udc80")(book), _set_size("asks", 5, 1)(book)),  # join before encode
        lambda book: book.bids.order.append(float(book.bids.order[-1])),  # a float key finds the int key
    ],
)
def test_books_that_break_the_rules_fail_alike(corrupt):
    book = _book()
    corrupt(book)
    assert_same(book)


@needs_c
def test_argument_checks():
    b, a = L2Book().bids, L2Book().asks
    f = C_EXTENSION.okx_checksum  # type: ignore[union-attr]
    assert f(b.sizes, b.texts, b.order, a.sizes, a.texts, a.order, 25) == 0 == okx_checksum([], [])
    with pytest.raises(ValueError, match="depth"):
        f(b.sizes, b.texts, b.order, a.sizes, a.texts, a.order, 0)
    with pytest.raises(TypeError):
        f(b.sizes, b.texts, tuple(b.order), a.sizes, a.texts, a.order, 25)
    with pytest.raises(TypeError):
        f(b.sizes, b.texts, b.order, a.sizes, a.texts, a.order)


@needs_c
def test_no_reference_leaks():
    """Every path, the heap one and the failing ones, leaves every refcount where it was."""
    book = _book()
    f = C_EXTENSION.okx_checksum  # type: ignore[union-attr]
    b, a = book.bids, book.asks
    objects = [*b.order, *a.order, *b.sizes.values(), *a.sizes.values(), *b.texts.values(), *a.texts.values()]
    missing_key = a.order[-11]
    missing = a.texts[missing_key]

    def run() -> None:
        f(b.sizes, b.texts, b.order, a.sizes, a.texts, a.order, 25)
        f(b.sizes, b.texts, b.order, a.sizes, a.texts, a.order, 40)
        good = b.sizes[b.order[-20]]
        b.sizes[b.order[-20]] = 5
        with pytest.raises(TypeError):
            f(b.sizes, b.texts, b.order, a.sizes, a.texts, a.order, 40)
        b.sizes[b.order[-20]] = good
        del a.texts[missing_key]
        with pytest.raises(KeyError):
            f(b.sizes, b.texts, b.order, a.sizes, a.texts, a.order, 25)
        a.texts[missing_key] = missing

    run()  # warm up
    counts = [sys.getrefcount(x) for x in objects]
    for _ in range(1000):
        run()
    assert [sys.getrefcount(x) for x in objects] == counts


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
    built = importlib.util.find_spec("arbwire._levels") is not None
    out = _rule_checksum({})
    assert out.stdout.split() == ["_checksum_c" if built else "_checksum_py"]


def test_missing_extension_falls_back_to_python():
    out = _rule_checksum({}, "import sys; sys.modules['arbwire._levels'] = None; ")
    assert out.stdout.split() == ["_checksum_py"]
    assert out.stderr.count("C extension not available") == 1


def test_build_without_the_checksum_is_stale():
    """An extension built before okx_checksum existed runs no C at all, and says so."""
    fake = (
        "import sys, types; m = types.ModuleType('arbwire._levels'); m.PRICE_CACHE_MAX = 1 << 16; "
        "m.apply_side = None; sys.modules['arbwire._levels'] = m; import arbwire.book as b; "
        "print(b.IMPLEMENTATION); "
    )
    out = _rule_checksum({}, fake)
    assert out.stdout.split() == ["python", "(stale", "extension", "build)", "_checksum_py"]
    assert "stale build" in out.stderr
