"""What a venue lists: one ``Instrument`` per tradable pair, and a book to look them up.

Tick and lot sizes stay exact decimal text (normalized, so ``"0.01000000"`` and
``"0.01"`` compare equal across venues); a float would turn ``0.1`` into a size the
venue rejects. Symbols are arbwire's ``BTC-USDT`` for spot and ``BTC-USDT-PERP`` for
a linear perpetual, built from the venue's own base/quote fields rather than by
splitting glued names, so ``BTCPERP`` (Bybit's USDC perpetual) still comes out right.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Literal

import msgspec

log = logging.getLogger("arbwire.instruments")

Status = Literal["trading", "halted", "other"]
Kind = Literal["spot", "perp"]
PERP = "-PERP"


class Instrument(msgspec.Struct, frozen=True, kw_only=True):
    """One listed pair on one venue.

    ``lot_size`` counts the venue's size unit: base asset on spot, contracts on OKX
    swaps (``contract_size`` base units each). ``status`` is normalized so the
    engine can act on it; ``raw_status`` is what the venue said, for the log.
    """

    venue: str
    symbol: str
    venue_symbol: str
    base: str
    quote: str
    kind: Kind
    tick_size: str
    lot_size: str
    min_size: str | None = None
    contract_size: str | None = None
    status: Status
    raw_status: str

    @property
    def trading(self) -> bool:
        return self.status == "trading"

    @property
    def base_lot_size(self) -> str:
        """The lot in base-asset units (lot × contract size when sizes count contracts)."""
        if self.contract_size is None:
            return self.lot_size
        return exact(Decimal(self.lot_size) * Decimal(self.contract_size))

    @property
    def price_decimals(self) -> int:
        return decimals(self.tick_size)

    @property
    def size_decimals(self) -> int:
        """Decimals of the base-unit lot: what the detector rounds sizes down to."""
        return decimals(self.base_lot_size)


def exact(value: str | int | Decimal) -> str:
    """Shortest plain decimal text for a non-negative number: ``"0.01000000"`` -> ``"0.01"``."""
    try:
        number = value if isinstance(value, Decimal) else Decimal(value)
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"not a finite non-negative number: {value!r}")
    return format(number.normalize(), "f")


def step(precision: int) -> str:
    """The step a venue's "N decimals" precision means: ``2`` -> ``"0.01"``, ``0`` -> ``"1"``."""
    return format(Decimal((0, (1,), -precision)), "f")


def decimals(text: str) -> int:
    """Decimal places of ``text`` once normalized: ``"0.00100"`` -> 3, ``"10"`` -> 0."""
    exponent = Decimal(text).normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def make_symbol(base: str, quote: str, kind: Kind) -> str:
    """arbwire's name: ``BTC-USDT`` or ``BTC-USDT-PERP``."""
    return f"{base}-{quote}{PERP if kind == 'perp' else ''}"


class InstrumentBook:
    """Every venue's instruments, found by arbwire symbol or by the venue's own name.

    Venue names are matched without regard to case (Binance streams say
    ``btcusdt``, its REST says ``BTCUSDT``). ``check`` reports each unlisted or
    halted symbol once, however often it is asked, so a restart loop can't flood
    the log.
    """

    __slots__ = ("_by_symbol", "_by_venue_symbol", "_reported")

    def __init__(self, instruments: Iterable[Instrument] = ()) -> None:
        self._by_symbol: dict[tuple[str, str], Instrument] = {}
        self._by_venue_symbol: dict[tuple[str, str], Instrument] = {}
        self._reported: set[tuple[str, str]] = set()
        self.add(instruments)

    def add(self, instruments: Iterable[Instrument]) -> None:
        """Add or replace instruments (a later list for a venue wins per symbol)."""
        for inst in instruments:
            self._by_symbol[(inst.venue, inst.symbol)] = inst
            self._by_venue_symbol[(inst.venue, inst.venue_symbol.upper())] = inst

    def __len__(self) -> int:
        return len(self._by_symbol)

    def venues(self) -> list[str]:
        return sorted({venue for venue, _ in self._by_symbol})

    def of(self, venue: str) -> list[Instrument]:
        return [inst for (v, _), inst in self._by_symbol.items() if v == venue]

    def get(self, venue: str, symbol: str) -> Instrument | None:
        """By arbwire symbol, e.g. ``("binance", "BTC-USDT")``."""
        return self._by_symbol.get((venue, symbol.upper()))

    def by_venue_symbol(self, venue: str, venue_symbol: str) -> Instrument | None:
        """By the venue's name, e.g. ``("htx", "btcusdt")``."""
        return self._by_venue_symbol.get((venue, venue_symbol.upper()))

    def to_venue(self, venue: str, symbol: str) -> str:
        """``BTC-USDT`` -> the venue's name; KeyError naming both if not listed."""
        inst = self.get(venue, symbol)
        if inst is None:
            raise KeyError(f"{venue} does not list {symbol}")
        return inst.venue_symbol

    def to_common(self, venue: str, venue_symbol: str) -> str:
        """The venue's name -> ``BTC-USDT``; KeyError naming both if not listed."""
        inst = self.by_venue_symbol(venue, venue_symbol)
        if inst is None:
            raise KeyError(f"{venue} does not list {venue_symbol}")
        return inst.symbol

    def check(self, venue: str, symbols: Iterable[str]) -> tuple[list[str], list[str]]:
        """Split ``symbols`` into (listed, missing) on ``venue``; logs each problem once.

        Listed-but-not-trading symbols stay in ``listed`` (they may reopen) and get
        one warning with the venue's own status word.
        """
        listed: list[str] = []
        missing: list[str] = []
        for symbol in symbols:
            inst = self.get(venue, symbol)
            key = (venue, symbol.upper())
            if inst is None:
                missing.append(symbol)
                if key not in self._reported:
                    self._reported.add(key)
                    log.warning("venue=%s does not list %s; running without it", venue, symbol)
                continue
            listed.append(symbol)
            if not inst.trading and key not in self._reported:
                self._reported.add(key)
                log.warning(
                    "venue=%s lists %s (%s) but it is %s (venue status %r)",
                    venue, symbol, inst.venue_symbol, inst.status, inst.raw_status,
                )  # fmt: skip
        return listed, missing

    def size_decimals(self, symbol: str, venues: Iterable[str]) -> int | None:
        """The coarsest lot precision of ``symbol`` over ``venues``: a size rounded to it
        is a whole number of lots on each (for power-of-ten lots). None if none list it."""
        found = [inst.size_decimals for v in venues if (inst := self.get(v, symbol))]
        return min(found) if found else None
