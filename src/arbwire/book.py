"""Exact L2 order book: a dict per side plus a sorted key list with the best level last.

Measured choice (see docs/benchmarks.md): a dict keyed by exact scaled-integer
price gives O(1) level updates; a parallel ``list`` of keys kept sorted with
``bisect`` keeps the best level at the end, so best bid/ask is an O(1) index and
inserts/deletes near the top of the book (where almost all activity is) move
few elements. An ask's key is its negated price, so both lists share one ordering
rule; the ask side's dicts and price cache use that same key, so nothing on the hot
path negates a price and a lookup with a key from ``order`` finds the very object.

Sizes stay as the venue's text: converting them costs as much as the rest of an
update and is only needed when the book is walked, which happens rarely. Price
text is kept too, because OKX's checksum is defined over the strings as sent.

The per-level loop (``L2Book.apply``) runs in the C extension ``arbwire._levels``
when it is built: the same loop over the same dicts and list, 0.12 µs per level
against 0.25 µs in Python on the real ETHUSDT stream (docs/benchmarks.md). The
pure-Python loop below is the reference and the fallback, used when the extension
is missing (a warning is logged once) or when ``ARBWIRE_PURE_PYTHON=1`` is set.
``PyL2Book`` and ``CL2Book`` pin one loop (``CL2Book`` is None without the extension).
The same switch selects the C OKX checksum over a book's sides (arbwire.venues.okx).
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Iterator
from types import ModuleType

from arbwire.numbers import to_units

log = logging.getLogger("arbwire.book")

_PRICE_CACHE_MAX = 1 << 16


def _load_c_ext() -> tuple[ModuleType | None, str]:
    """The C extension and "c", or None and why the pure-Python code is used."""
    if os.environ.get("ARBWIRE_PURE_PYTHON", "") not in ("", "0"):
        return None, "python (ARBWIRE_PURE_PYTHON set)"
    try:
        from arbwire import _levels
    except ImportError as exc:
        log.warning(
            "arbwire._levels C extension not available (%s): using the pure-Python book "
            "level loop (slower, see docs/benchmarks.md); reinstall with a C compiler: "
            "pip install -e .",
            exc,
        )
        return None, f"python (extension not built: {exc})"
    if _levels.PRICE_CACHE_MAX != _PRICE_CACHE_MAX or getattr(_levels, "SIGNED_KEYS", 0) != 1 or not hasattr(
        _levels, "okx_levels"
    ):
        log.warning("arbwire._levels is a stale build: using the pure-Python book level loop")
        return None, "python (stale extension build)"
    return _levels, "c"


#: the loaded ``arbwire._levels``, or None: one switch for all of its C code
C_EXTENSION, IMPLEMENTATION = _load_c_ext()
_c_apply_side: Callable[..., None] | None = C_EXTENSION.apply_side if C_EXTENSION else None


class BookSide:
    """One side of a book. ``sign`` is +1 for bids and -1 for asks."""

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

    def best(self) -> int | None:
        """Best price in units, or None when the side is empty."""
        order = self.order
        return order[-1] * self.sign if order else None

    def levels(self) -> Iterator[tuple[int, str]]:
        """(price units, size text), best first."""
        sign, sizes = self.sign, self.sizes
        for key in reversed(self.order):
            yield key * sign, sizes[key]

    def text_levels(self, depth: int) -> list[tuple[str, str]]:
        """Top ``depth`` levels as the venue's own (price text, size text)."""
        sizes, texts, order = self.sizes, self.texts, self.order
        top = order[-depth:] if depth < len(order) else order
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


class L2Book:
    """Price levels of one venue+symbol. Knows nothing of sequence ids (see sync.py)."""

    __slots__ = ("bids", "asks", "max_depth")

    def __init__(self, max_depth: int = 5000) -> None:
        self.bids = BookSide(1)
        self.asks = BookSide(-1)
        self.max_depth = max_depth

    def clear(self) -> None:
        self.bids.clear()
        self.asks.clear()

    def __bool__(self) -> bool:
        return bool(self.bids.order or self.asks.order)

    def apply_snapshot(self, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]) -> None:
        """Replace the whole book.

        Venues send snapshot levels best first, and the best level sits at the end of
        ``order``, so in that order every insert would shift the whole list (a 1000-level
        Binance snapshot: 690 µs, against 460 µs worst first). The levels are applied
        worst first; if that left a different book (a repeated price or a zero size, where
        the order matters), they are applied again in the order sent.
        """
        self.clear()
        depth = self.max_depth
        if type(bids) is not list or type(asks) is not list or len(bids) > depth or len(asks) > depth:
            self.apply(bids, asks)
            return
        self.apply(bids[::-1], asks[::-1])
        if len(self.bids.order) != len(bids) or len(self.asks.order) != len(asks):
            self.clear()
            self.apply(bids, asks)

    def _apply_py(self, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]) -> None:
        """Set each level (size is absolute; a zero size deletes the level)."""
        if bids:
            self._apply_side(self.bids, bids)
        if asks:
            self._apply_side(self.asks, asks)

    def _apply_c(self, bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]) -> None:
        """Set each level (size is absolute; a zero size deletes the level)."""
        # same loop as _apply_side, in C, on the same objects (arbwire/_levels.c)
        if bids:
            side = self.bids
            _c_apply_side(bids, side.sizes, side.texts, side.order, False, side.cache, self.max_depth)  # type: ignore[misc]
        if asks:
            side = self.asks
            _c_apply_side(asks, side.sizes, side.texts, side.order, True, side.cache, self.max_depth)  # type: ignore[misc]

    apply = _apply_c if _c_apply_side is not None else _apply_py

    def _apply_side(self, side: BookSide, levels: Iterable[tuple[str, str]]) -> None:
        cache = side.cache
        sizes, texts, order = side.sizes, side.texts, side.order
        inserted = False
        for price, size in levels:
            key = cache.get(price)
            if key is None:
                key = _convert(cache, price, side.sign)
            if size.strip("0."):
                if sizes.get(key) is None:
                    insort(order, key)
                    texts[key] = price
                    inserted = True
                sizes[key] = size
            elif sizes.pop(key, None) is not None:
                del texts[key]
                del order[bisect_left(order, key)]
        if inserted and len(order) > self.max_depth:
            side.trim(self.max_depth)

    def best_bid(self) -> int | None:
        order = self.bids.order
        return order[-1] if order else None

    def best_ask(self) -> int | None:
        order = self.asks.order
        return -order[-1] if order else None

    def is_crossed(self) -> bool:
        """Best bid at or above best ask: impossible on a correct book outside auctions."""
        b, a = self.bids.order, self.asks.order
        return bool(b and a and b[-1] >= -a[-1])

    def top(self) -> tuple[tuple[str, str] | None, tuple[str, str] | None]:
        """Best bid and best ask as the venue's (price text, size text)."""
        bid = self.bids.text_levels(1)
        ask = self.asks.text_levels(1)
        return (bid[0] if bid else None, ask[0] if ask else None)


def _convert(cache: dict[str, int], price: str, sign: int) -> int:
    key = to_units(price) * sign
    if len(cache) >= _PRICE_CACHE_MAX:
        cache.clear()
    cache[price] = key
    return key


class PyL2Book(L2Book):
    """An ``L2Book`` that always runs the pure-Python level loop (the reference)."""

    __slots__ = ()
    apply = L2Book._apply_py


class _CL2Book(L2Book):
    """An ``L2Book`` that always runs the C level loop."""

    __slots__ = ()
    apply = L2Book._apply_c


CL2Book: type[L2Book] | None = _CL2Book if _c_apply_side is not None else None
