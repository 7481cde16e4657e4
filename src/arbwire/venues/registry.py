"""The venues arbwire speaks, by name: how to build each one's session from config."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from arbwire.venues.base import Endpoints, VenueSession

SessionFactory = Callable[[Sequence[str], Endpoints | None, Mapping[str, Any]], VenueSession]


def _binance(symbols: Sequence[str], endpoints: Endpoints | None, options: Mapping[str, Any]) -> VenueSession:
    from arbwire.venues import binance

    futures = bool(options.get("futures", False))
    encoding = options.get("encoding", "json")
    if encoding == "sbe":
        from arbwire.venues import binance_sbe

        if futures:
            raise ValueError("encoding 'sbe': Binance's SBE market-data streams are spot only")
        rest = _rest(options, "futures", "encoding")
        return binance_sbe.BinanceSbeSession(symbols, endpoints or binance_sbe.SBE, **rest)
    if encoding != "json":
        raise ValueError(f"encoding must be 'json' or 'sbe', not {encoding!r}")
    default = binance.USDM if futures else binance.SPOT
    return binance.BinanceSession(symbols, endpoints or default, futures=futures, **_rest(options, "futures", "encoding"))


def _okx(symbols: Sequence[str], endpoints: Endpoints | None, options: Mapping[str, Any]) -> VenueSession:
    from arbwire.venues import okx

    return okx.OkxSession(symbols, endpoints or okx.OKX, **options)


def _bybit(symbols: Sequence[str], endpoints: Endpoints | None, options: Mapping[str, Any]) -> VenueSession:
    from arbwire.venues import bybit

    return bybit.BybitSession(symbols, endpoints or bybit.PUBLIC, **options)


def _gateio(symbols: Sequence[str], endpoints: Endpoints | None, options: Mapping[str, Any]) -> VenueSession:
    from arbwire.venues import gateio

    return gateio.GateioSession(symbols, endpoints or gateio.SPOT, **options)


def _htx(symbols: Sequence[str], endpoints: Endpoints | None, options: Mapping[str, Any]) -> VenueSession:
    from arbwire.venues import htx

    return htx.HtxSession(symbols, endpoints or htx.HTX, **options)


def _rest(options: Mapping[str, Any], *drop: str) -> dict[str, Any]:
    return {k: v for k, v in options.items() if k not in drop}


#: options that carry credentials: never written to a recording
SECRET_OPTIONS = frozenset({"api_key"})

VENUES: dict[str, SessionFactory] = {
    "binance": _binance,
    "okx": _okx,
    "bybit": _bybit,
    "gateio": _gateio,
    "htx": _htx,
}

#: the public endpoints, for ``arbwire run`` and for filling half-given config
def default_endpoints(name: str, options: Mapping[str, Any] | None = None) -> Endpoints:
    session = VENUES[name](["BTC-USDT"], None, options or {})
    return session.endpoints


def make_session(
    name: str, symbols: Sequence[str], endpoints: Endpoints | None = None, options: Mapping[str, Any] | None = None
) -> VenueSession:
    try:
        factory = VENUES[name]
    except KeyError:
        raise ValueError(f"unknown venue {name!r} (known: {', '.join(sorted(VENUES))})") from None
    return factory(symbols, endpoints, options or {})
