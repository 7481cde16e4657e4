"""One symbol form, ``BASE-QUOTE`` (``BTC-USDT``), mapped to and from each venue's names.

Venues that glue base and quote together (Binance ``BTCUSDT``, HTX ``btcusdt``)
cannot be split without knowing the assets. Subscribed symbols are always known,
so adapters map those exactly; for names seen only in recordings, the split falls
back to the longest known quote asset at the end of the name.
"""

from __future__ import annotations

from collections.abc import Iterable

# Longest first, so "FDUSD" wins over "USD" and "USDT" over "USD".
KNOWN_QUOTES: tuple[str, ...] = tuple(
    sorted(
        (
            "USDT", "USDC", "FDUSD", "BUSD", "TUSD", "USDP", "DAI", "USD", "EUR", "GBP",
            "TRY", "BRL", "AUD", "JPY", "RUB", "UAH", "BTC", "ETH", "BNB", "HT", "TRX",
            "XRP", "DOGE", "HUSD", "BIDR", "IDRT", "NGN", "ZAR", "PLN", "RON", "ARS",
        ),
        key=len,
        reverse=True,
    )
)


class SymbolError(ValueError):
    """A symbol that is not in ``BASE-QUOTE`` form, or a venue name that can't be split."""


def split(symbol: str) -> tuple[str, str]:
    """``"BTC-USDT"`` -> ``("BTC", "USDT")``."""
    base, sep, quote = symbol.partition("-")
    if not sep or not base or not quote or "-" in quote and not quote.endswith("-PERP"):
        raise SymbolError(f"symbol {symbol!r} is not in BASE-QUOTE form, e.g. BTC-USDT")
    return base.upper(), quote.upper()


def split_glued(name: str) -> tuple[str, str]:
    """``"ETHUSDT"`` -> ``("ETH", "USDT")`` by the longest known quote suffix."""
    upper = name.upper()
    for quote in KNOWN_QUOTES:
        if upper.endswith(quote) and len(upper) > len(quote):
            return upper[: -len(quote)], quote
    raise SymbolError(f"cannot tell base from quote in {name!r}")


class SymbolMap:
    """Both-way, cached map between arbwire symbols and one venue's names.

    Subclasses say how one name becomes the other (``venue_name``/``common_name``);
    this class keeps the caches, bounded for names that arrive off the wire.
    """

    __slots__ = ("_to_venue", "_to_common")

    _MAX = 10_000

    def __init__(self, symbols: Iterable[str] = ()) -> None:
        self._to_venue: dict[str, str] = {}
        self._to_common: dict[str, str] = {}
        for symbol in symbols:
            self.to_venue(symbol)

    def venue_name(self, symbol: str) -> str:
        raise NotImplementedError

    def common_name(self, name: str) -> str:
        raise NotImplementedError

    def to_venue(self, symbol: str) -> str:
        name = self._to_venue.get(symbol)
        if name is None:
            name = self.venue_name(symbol)
            self._to_venue[symbol] = name
            self._to_common[name] = symbol
        return name

    def to_common(self, name: str) -> str:
        symbol = self._to_common.get(name)
        if symbol is None:
            symbol = self.common_name(name)
            if len(self._to_common) < self._MAX:
                self._to_common[name] = symbol
        return symbol


class GluedSymbols(SymbolMap):
    """Venues whose names are ``base+quote`` in one case (Binance, Bybit, HTX)."""

    __slots__ = ("lower",)

    def __init__(self, symbols: Iterable[str] = (), *, lower: bool) -> None:
        self.lower = lower
        super().__init__(symbols)

    def venue_name(self, symbol: str) -> str:
        base, quote = split(symbol)
        return (base + quote).lower() if self.lower else base + quote

    def common_name(self, name: str) -> str:
        base, quote = split_glued(name)
        return f"{base}-{quote}"
