"""Instrument lists for every venue: tick/lot sizes, status, and both-way symbol names.

``model`` holds the ``Instrument`` and ``InstrumentBook``; ``parse`` one pure parser
per venue; ``load`` the REST fetch with its on-disk fallback. Start-up loads each
venue once (``load_book``), reports symbols a venue does not list (``check``), and
runs the rest.
"""

from arbwire.instruments.load import (
    CacheFile,
    InstrumentsError,
    default_cache_dir,
    load_book,
    load_instruments,
)
from arbwire.instruments.model import (
    PERP,
    Instrument,
    InstrumentBook,
    Kind,
    Status,
    decimals,
    exact,
    make_symbol,
    step,
)
from arbwire.instruments.parse import (
    PARSERS,
    InstrumentParseError,
    parse_binance,
    parse_bybit,
    parse_bybit_page,
    parse_gateio,
    parse_htx,
    parse_okx,
)

__all__ = [
    "PARSERS", "PERP", "CacheFile", "Instrument", "InstrumentBook", "InstrumentParseError",
    "InstrumentsError", "Kind", "Status", "decimals", "default_cache_dir", "exact", "load_book",
    "load_instruments", "make_symbol", "parse_binance", "parse_bybit", "parse_bybit_page",
    "parse_gateio", "parse_htx", "parse_okx", "step",
]  # fmt: skip
