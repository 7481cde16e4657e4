"""Binance spot market data in SBE, the venue's binary encoding: ``stream-sbe.binance.com``.

Protocol facts: ../shared/docs/exchange-protocols.md §1.13. The streams are the JSON
ones' binary twins: ``@bestBidAsk`` (bookTicker with an event time), ``@trade`` and
``@depth`` (diffs every 50 ms with the same ``U``/``u`` ids, so the book procedure,
the REST snapshot and ``SpotRule`` are the JSON feed's), in binary frames, one SBE
message each, no JSON wrapper. Subscribe replies and ``serverShutdown`` stay JSON in
text frames and take the JSON session's path. Times are microseconds.

Access needs an Ed25519 API key in the ``X-MBX-APIKEY`` upgrade header (no signature,
no permission). The key is read from the environment (``api_key_env``) so it never
lands in a config file or a recording's header.

Decoding: ``arbwire._sbe.decode`` (C) reads a whole message into one tuple, decimals as
the venue's text (mantissa and exponent -> ``"2600.12000000"``); ``decode_py`` is the
same in Python with ``struct``, the reference and the fallback when the extension is
missing or ``ARBWIRE_PURE_PYTHON=1``.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Sequence
from typing import Any

from arbwire.model import BUY, SELL, BookUpdate, Quote, Trade
from arbwire.venues.base import Endpoints, Output
from arbwire.venues.binance import BinanceSession

log = logging.getLogger("arbwire.venues")

SBE = Endpoints("wss://stream-sbe.binance.com:9443", "https://api.binance.com")
SCHEMA_ID = 1
TRADES, BEST_BID_ASK, DEPTH20, DEPTH_DIFF = 10000, 10001, 10002, 10003
API_KEY_ENV = "BINANCE_API_KEY"
US = 1_000
_INT64_MIN = -(1 << 63)
_ROOT_MIN = {TRADES: 18, BEST_BID_ASK: 50, DEPTH20: 18, DEPTH_DIFF: 26}

_u16 = struct.Struct("<H").unpack_from
_header = struct.Struct("<HHHH").unpack_from
_group16 = struct.Struct("<HH").unpack_from
_group32 = struct.Struct("<HI").unpack_from
_best = struct.Struct("<qqbbqqqq").unpack_from
_times = struct.Struct("<qq").unpack_from
_exps = struct.Struct("<bb").unpack_from
_level = struct.Struct("<qq").unpack_from
_trade = struct.Struct("<qqqB").unpack_from


# -- reference decoder ---------------------------------------------------------------------
def decimal_text(mantissa: int, exponent: int) -> str:
    """``mantissa * 10**exponent`` as Binance writes it: ``(260012000000, -8)`` -> ``"2600.12000000"``."""
    if mantissa == _INT64_MIN:
        raise ValueError("null decimal")
    if exponent > 18 or exponent < -30:
        raise ValueError(f"decimal exponent {exponent} out of range")
    if exponent >= 0:
        return str(mantissa * 10**exponent)
    digits = str(abs(mantissa)).rjust(1 - exponent, "0")
    text = f"{digits[:exponent]}.{digits[exponent:]}"
    return "-" + text if mantissa < 0 else text


def _need(what: str, at: int, need: int, length: int) -> None:
    if length - at < need:
        raise ValueError(f"truncated {what}: needs {need} bytes at offset {at}, message has {length}")


class _Parsed:
    """One message with its structure checked (the C decoder's ``parse``): offsets, no text yet."""

    __slots__ = ("template", "pe", "qe", "groups", "symbol")

    def __init__(self, template: int, pe: int, qe: int, groups: list[tuple[int, int, int]], symbol: bytes) -> None:
        self.template = template
        self.pe, self.qe = pe, qe
        self.groups = groups  # (offset of the first entry, entry length, count)
        self.symbol = symbol


def _group_py(buf: bytes, at: int, what: str) -> tuple[tuple[int, int, int], int]:
    length = len(buf)
    _need(what, at, 4, length)
    block, count = _group16(buf, at)
    at += 4
    if block < 16:
        raise ValueError(f"{what} entries of {block} bytes, expected at least 16")
    _need(what, at, block * count, length)
    return (at, block, count), at + block * count


def _parse_py(buf: bytes) -> _Parsed:
    length = len(buf)
    _need("header", 0, 8, length)
    block, template, schema, _version = _header(buf, 0)
    if schema != SCHEMA_ID:
        raise ValueError(f"schema id {schema}, expected {SCHEMA_ID}")
    minimum = _ROOT_MIN.get(template)
    if minimum is None:
        raise ValueError(f"unknown template id {template}")
    if block < minimum:
        raise ValueError(f"template {template} root block of {block} bytes, expected at least {minimum}")
    _need("root block", 8, block, length)
    pe, qe = _exps(buf, 8 + (24 if template == DEPTH_DIFF else 16))
    at = 8 + block
    groups: list[tuple[int, int, int]] = []
    if template == TRADES:
        _need("trades", at, 6, length)
        entry, count = _group32(buf, at)
        at += 6
        if entry < 25:
            raise ValueError(f"trades entries of {entry} bytes, expected at least 25")
        _need("trades", at, entry * count, length)
        groups.append((at, entry, count))
        at += entry * count
    elif template != BEST_BID_ASK:
        for what in ("bids", "asks"):
            group, at = _group_py(buf, at, what)
            groups.append(group)
    _need("symbol", at, 1, length)
    n = buf[at]
    _need("symbol", at + 1, n, length)
    if length - at - 1 > n:
        raise ValueError(f"{length - at - 1 - n} bytes after the symbol")
    for e in (pe, qe):
        if e > 18 or e < -30:
            raise ValueError(f"decimal exponent {e} out of range")
    return _Parsed(template, pe, qe, groups, buf[at + 1 : at + 1 + n])


def _levels_py(buf: bytes, group: tuple[int, int, int], pe: int, qe: int) -> list[tuple[str, str]]:
    at, block, count = group
    out = []
    for i in range(count):
        px, qty = _level(buf, at + i * block)
        out.append((decimal_text(px, pe), decimal_text(qty, qe)))
    return out


def _trades_py(buf: bytes, m: _Parsed) -> list[tuple[int, str, str, bool]]:
    at, entry, count = m.groups[0]
    out = []
    for i in range(count):
        trade_id, px, qty, maker = _trade(buf, at + i * entry)
        out.append((trade_id, decimal_text(px, m.pe), decimal_text(qty, m.qe), maker != 0))
    return out


def _best_texts_py(buf: bytes, m: _Parsed) -> tuple[str, str, str, str]:
    _, _, _, _, bid, bid_qty, ask, ask_qty = _best(buf, 8)
    return (
        decimal_text(bid, m.pe), decimal_text(bid_qty, m.qe), decimal_text(ask, m.pe), decimal_text(ask_qty, m.qe),
    )  # fmt: skip


def decode_py(buf: bytes) -> tuple[Any, ...]:
    """One SBE message as ``arbwire._sbe.decode`` returns it (see its module comment)."""
    buf = bytes(buf)
    m = _parse_py(buf)
    symbol = m.symbol.decode()
    if m.template == BEST_BID_ASK:
        event, update_id = _times(buf, 8)
        return (BEST_BID_ASK, event, update_id, *_best_texts_py(buf, m), symbol)
    if m.template == TRADES:
        event, transact = _times(buf, 8)
        return (TRADES, event, transact, _trades_py(buf, m), symbol)
    head = struct.unpack_from("<3q" if m.template == DEPTH_DIFF else "<2q", buf, 8)
    bids = _levels_py(buf, m.groups[0], m.pe, m.qe)
    asks = _levels_py(buf, m.groups[1], m.pe, m.qe)
    return (m.template, *head, bids, asks, symbol)


def _load_c_extension() -> tuple[Any, str]:
    if os.environ.get("ARBWIRE_PURE_PYTHON", "") not in ("", "0"):
        return None, "python (ARBWIRE_PURE_PYTHON set)"
    try:
        from arbwire import _sbe
    except ImportError as exc:
        log.warning("arbwire._sbe C extension not available (%s): decoding SBE in Python (slower)", exc)
        return None, f"python (extension not built: {exc})"
    return _sbe, "c"


_C, IMPLEMENTATION = _load_c_extension()
#: the decoder in use: ``arbwire._sbe.decode``, or the reference
decode = _C.decode if _C is not None else decode_py


# -- session -------------------------------------------------------------------------------
class BinanceSbeSession(BinanceSession):
    """Binance spot over SBE: the JSON session's books, ids and control path, binary events.

    ``api_key`` is for tests and tools; a deployment names the environment variable
    holding the key (``api_key_env``), checked when the config is loaded.
    """

    def __init__(
        self,
        symbols: Sequence[str],
        endpoints: Endpoints = SBE,
        *,
        api_key_env: str = API_KEY_ENV,
        api_key: str | None = None,
        snapshot_limit: int = 1000,
        no_data_timeout_s: float = 30.0,
    ) -> None:
        super().__init__(
            symbols, endpoints, snapshot_limit=snapshot_limit, depth_speed="", no_data_timeout_s=no_data_timeout_s
        )
        self.api_key_env = api_key_env
        self._api_key = api_key
        # the venue's symbol (upper case bytes, as in the messages) -> ours
        self._by_wire = {self.names.to_venue(s).upper().encode(): s for s in self.symbols}
        self._events = self._events_py
        if _C is not None:
            self._events = _C.Events(self.name, self._by_wire, self._seen, Quote, BookUpdate, Trade, BUY, SELL).events

    def channels(self) -> tuple[str, ...]:
        return ("depth", "bestBidAsk", "trade")

    def headers(self) -> dict[str, str]:
        key = self._api_key or os.environ.get(self.api_key_env, "")
        if not key:
            raise ValueError(
                f"Binance SBE streams need an API key (Ed25519, no permissions needed): "
                f"set the environment variable {self.api_key_env}"
            )
        return {"X-MBX-APIKEY": key}

    def on_frame(self, payload: bytes, recv_ns: int) -> list[Output]:
        try:
            events = self._events(payload, recv_ns)
        except ValueError as exc:  # UnicodeDecodeError of a symbol included
            if payload[:1] == b"{":  # JSON in a text frame: replies, serverShutdown
                return super().on_frame(payload, recv_ns)
            self.stats.frames += 1
            return [self.bad_frame(f"sbe: {exc}", payload[:48].hex(), recv_ns)]
        self.stats.frames += 1
        if events is None:
            self.stats.unknown += 1  # a symbol not subscribed here, or depth20
            return []
        return events

    def _events_py(self, payload: bytes, recv_ns: int) -> list[Output] | None:
        """What ``arbwire._sbe.Events.events`` returns, built from ``decode_py``: the reference."""
        buf = bytes(payload)
        m = _parse_py(buf)
        symbol = self._by_wire.get(m.symbol)
        if symbol is None or m.template == DEPTH20:
            return None
        self._seen.add(symbol)
        name = self.name
        if m.template == BEST_BID_ASK:
            event, update_id = _times(buf, 8)
            bid, bid_qty, ask, ask_qty = _best_texts_py(buf, m)
            return [Quote(name, symbol, bid, bid_qty, ask, ask_qty, update_id, event * US, recv_ns)]
        if m.template == DEPTH_DIFF:
            event, first, last = struct.unpack_from("<3q", buf, 8)
            bids = _levels_py(buf, m.groups[0], m.pe, m.qe)
            asks = _levels_py(buf, m.groups[1], m.pe, m.qe)
            return [BookUpdate(name, symbol, bids, asks, first, last, -1, False, None, event * US, recv_ns)]
        ts = _times(buf, 8)[1] * US
        return [
            Trade(name, symbol, px, qty, SELL if maker else BUY, str(tid), ts, recv_ns)
            for tid, px, qty, maker in _trades_py(buf, m)
        ]
