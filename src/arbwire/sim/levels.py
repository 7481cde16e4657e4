"""Book levels as the venue servers cut and print them.

Several venues publish a depth-limited stream: increments of the best N levels (the
"view"), where a level pushed out of the view is sent as a delete and one moving in as
an add. The model's books are whole, so the servers cut views (``best``, ``views``)
and send what changed between two of them (``delta``). The decimal text here is the
shortest form (``"60000.1"``) that OKX, Bybit and Gate all print; venues with another
form (Binance's 8 decimals, HTX's JSON numbers) format their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

from arbwire.sim.market import Book, VenueBook


def best(side: Book, n: int, bids: bool) -> Book:
    """The ``n`` best levels of one side, best first."""
    return {p: side[p] for p in sorted(side, reverse=bids)[:n]}


def views(book: VenueBook, depths: Iterable[int]) -> dict[int, tuple[Book, Book]]:
    """``depth -> (bids, asks)`` views of ``book`` for every depth (one sort for all)."""
    bids = sorted(book.bids.items(), reverse=True)
    asks = sorted(book.asks.items())
    return {d: (dict(bids[:d]), dict(asks[:d])) for d in depths}


def delta(old: Book, new: Book) -> Book:
    """What turns view ``old`` into ``new``: changed sizes, and 0 for prices gone."""
    out = {p: Decimal(0) for p in old if p not in new}
    out.update((p, s) for p, s in new.items() if old.get(p) != s)
    return out


def decimal_text(value: Decimal) -> str:
    """The shortest decimal text: ``Decimal("60000.10")`` -> ``"60000.1"``, zero ``"0"``."""
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def text_levels(
    side: Book, bids: bool, fmt: Callable[[Decimal], str] = decimal_text
) -> list[list[str]]:
    """``[[price, size], ..]`` best first, as text."""
    return [[fmt(p), fmt(s)] for p, s in sorted(side.items(), reverse=bids)]


def decimals(step: Decimal) -> int:
    """Digits after the point of a tick or lot: ``Decimal("0.010")`` -> 2, ``1`` -> 0."""
    return max(0, -int(step.normalize().as_tuple().exponent))
