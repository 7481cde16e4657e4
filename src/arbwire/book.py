"""Exact L2 order book: per side, levels by exact scaled-integer price, best level last.

Each side keeps, per level, its key (price units, negated on the ask side so both sides
share one ordering rule), the price text as first received (OKX's checksum is defined
over the strings as sent) and the size text as last received. Sizes stay text: converting
them costs as much as the rest of an update and is only needed when the book is walked,
which happens rarely.

Two implementations of a side, one behaviour (docs/benchmarks.md has the figures):

* ``CBookSide`` (the C extension ``arbwire._book``): three parallel arrays sorted by a
  128-bit key, found by binary search; a price text is parsed straight into its key.
  This is the default.
* ``BookSide``: a dict per side keyed by the Python int, a sorted key list maintained
  with ``bisect`` and a price-text cache. The reference, and the fallback when the
  extension is missing (a warning is logged once) or ``ARBWIRE_PURE_PYTHON=1`` is set.

Both give best bid/ask as an O(1) read of the last key, and inserts/deletes near the top
of the book (where almost all activity is) move few elements. ``PyL2Book`` and
``CL2Book`` pin one side type (``CL2Book`` is None without the extension); the same switch
selects the C decoders of ``arbwire._levels`` and the C OKX checksum.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from types import ModuleType
from typing import Any

from arbwire.numbers import NumberError, to_units

log = logging.getLogger("arbwire.book")

_PRICE_CACHE_MAX = 1 << 16
_UNITS_LIMIT = 1 << 127  # a key is a signed 128-bit int in the C side: refused by both


def _load_c_ext() -> tuple[ModuleType | None, ModuleType | None, str]:
    """``arbwire._levels``, ``arbwire._book`` and "c", or None, None and why pure Python runs."""
    if os.environ.get("ARBWIRE_PURE_PYTHON", "") not in ("", "0"):
        return None, None, "python (ARBWIRE_PURE_PYTHON set)"
    try:
        from arbwire import _book, _levels
    except ImportError as exc:
        log.warning(
            "arbwire C extensions not available (%s): using the pure-Python book and decoders "
            "(slower, see docs/benchmarks.md); reinstall with a C compiler: pip install -e .",
            exc,
        )
        return None, None, f"python (extension not built: {exc})"
    if getattr(_book, "BOOK_API", 0) != 1 or not hasattr(_levels, "okx_levels"):
        log.warning("arbwire C extensions are a stale build: using the pure-Python book and decoders")
        return None, None, "python (stale extension build)"
    return _levels, _book, "c"


#: the loaded ``arbwire._levels`` (decoders) and ``arbwire._book`` (book side, OKX checksum),
#: or None: one switch for all of that C code
C_EXTENSION, C_BOOK, IMPLEMENTATION = _load_c_ext()


class BookSide:
    """One side of a book, in Python (the reference). ``sign`` is +1 for bids and -1 for asks."""

    __slots__ = ("sizes", "texts", "order", "sign", "cache")

    def __init__(self, sign: int) -> None:
        # a level's key is sign * price units (asks negated), the same object everywhere
        self.sizes: dict[int, str] = {}  # key -> size text
        self.texts: dict[int, str] = {}  # key -> price text as received
        self.order: list[int] = []  # keys, ascending: best level last
        self.sign = sign
        # Price text -> key. Prices repeat heavily (4k distinct in 107k levels of the real
        # ETHUSDT capture), so this skips most conversions; bounded.
        self.cache: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.order)

    def clear(self) -> None:
        self.sizes.clear()
        self.texts.clear()
        self.order.clear()

    def apply(self, levels: Iterable[tuple[str, str]], max_depth: int) -> None:
        """Set each level (size is absolute; a zero size deletes the level)."""
        cache = self.cache
        sizes, texts, order = self.sizes, self.texts, self.order
        inserted = False
        for price, size in levels:
            key = cache.get(price)
            if key is None:
                key = _convert(cache, price, self.sign)
            if size.strip("0."):
                if sizes.get(key) is None:
                    insort(order, key)
                    texts[key] = price
                    inserted = True
                sizes[key] = size
            elif sizes.pop(key, None) is not None:
                del texts[key]
                del order[bisect_left(order, key)]
        if inserted and len(order) > max_depth:
            self.trim(max_depth)

    def best(self) -> int | None:
        """Best price in units, or None when the side is empty."""
        order = self.order
        return order[-1] * self.sign if order else None

    def crosses(self, asks: BookSide) -> bool:
        """This (bid) side's best level at or above the best ask."""
        b, a = self.order, asks.order
        return bool(b and a and b[-1] >= -a[-1])

    def levels(self) -> Iterator[tuple[int, str]]:
        """(price units, size text), best first."""
        sign, sizes = self.sign, self.sizes
        for key in reversed(self.order):
            yield key * sign, sizes[key]

    def text_levels(self, depth: int) -> list[tuple[str, str]]:
        """Top ``depth`` levels as the venue's own (price text, size text)."""
        sizes, texts, order = self.sizes, self.texts, self.order
        top = order[-depth:] if 0 < depth < len(order) else order if depth > 0 else []
        return [(texts[key], sizes[key]) for key in reversed(top)]

    def trim(self, max_depth: int) -> None:
        """Drop the worst levels beyond ``max_depth`` (bounded memory)."""
        excess = len(self.order) - max_depth
        if excess > 0:
            sizes, texts = self.sizes, self.texts
            for key in self.order[:excess]:
                del sizes[key]
                del texts[key]
            del self.order[:excess]


def _convert(cache: dict[str, int], price: str, sign: int) -> int:
    units = to_units(price)
    if units >= _UNITS_LIMIT:
        raise NumberError(f"too large for a price: {price!r}")
    key = units * sign
    if len(cache) >= _PRICE_CACHE_MAX:
        cache.clear()
    cache[price] = key
    return key


if C_BOOK is not None:

    class CBookSide(C_BOOK.SideCore):  # type: ignore[name-defined,misc]
        """One side of a book in C (``arbwire._book``): ``BookSide``'s behaviour on arrays.

        ``order`` is the side itself, a sequence of keys (best last), so code that reads
        ``side.order[-1]`` runs unchanged on either side type.
        """

        __slots__ = ()

        def levels(self) -> Iterator[tuple[int, str]]:
            """(price units, size text), best first; lazily, as walks stop early."""
            level = self.level
            for rank in range(len(self)):
                yield level(rank)

    SIDE_TYPE: type[Any] = CBookSide
else:
    CBookSide = None  # type: ignore[assignment,misc]
    SIDE_TYPE = BookSide


class L2Book:
    """Price levels of one venue+symbol. Knows nothing of sequence ids (see sync.py)."""

    __slots__ = ("bids", "asks", "max_depth")
    side_type: type[Any] = SIDE_TYPE

    def __init__(self, max_depth: int = 5000) -> None:
        self.bids = self.side_type(1)
        self.asks = self.side_type(-1)
        self.max_depth = max_depth

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def __bool__(self) -> bool:
        return bool(len(self.bids) or len(self.asks))

    def apply_snapshot(self, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]) -> None:
        """Replace the whole book.

        Venues send snapshot levels best first, and the best level sits at the end of a
        side, so in that order every insert would shift the whole side (a 1000-level
        Binance snapshot: 690 µs, against 460 µs worst first, with the Python side). The
        levels are applied worst first; if that left a different book (a repeated price
        or a zero size, where the order matters), they are applied again in the order sent.
        """
        self.clear()
        depth = self.max_depth
        if type(bids) is not list or type(asks) is not list or len(bids) > depth or len(asks) > depth:
            self.apply(bids, asks)
            return
        self.apply(bids[::-1], asks[::-1])
        if len(self.bids) != len(bids) or len(self.asks) != len(asks):
            self.clear()
            self.apply(bids, asks)

    def apply(self, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]) -> None:
        """Set each level (size is absolute; a zero size deletes the level)."""
        if bids:
            self.bids.apply(bids, self.max_depth)
        if asks:
            self.asks.apply(asks, self.max_depth)

    def best_bid(self) -> int | None:
        return self.bids.best()

    def best_ask(self) -> int | None:
        return self.asks.best()

    def is_crossed(self) -> bool:
        """Best bid at or above best ask: impossible on a correct book outside auctions."""
        return self.bids.crosses(self.asks)

    def text_levels(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """Every level of both sides as the venue's (price text, size text), best first:
        what republishing, recording or comparing a whole book needs."""
        bids, asks = self.bids, self.asks
        return bids.text_levels(len(bids)), asks.text_levels(len(asks))

    def top(self) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
        """Best bid and best ask as the venue's (price text, size text)."""
        bid = self.bids.text_levels(1)
        ask = self.asks.text_levels(1)
        return (bid[0] if bid else None, ask[0] if ask else None)


class PyL2Book(L2Book):
    """An ``L2Book`` that always holds Python sides (the reference)."""

    __slots__ = ()
    side_type = BookSide


class _CL2Book(L2Book):
    """An ``L2Book`` that always holds C sides."""

    __slots__ = ()
    side_type = CBookSide


CL2Book: type[L2Book] | None = _CL2Book if CBookSide is not None else None
