"""Binance spot (and USD-M futures) public market data: combined streams + REST depth snapshot.

Protocol facts: ../shared/docs/exchange-protocols.md §1. The server pings with
WebSocket ping frames, which the transport answers; there is no JSON heartbeat.
A well-formed but unknown symbol is accepted in silence (§1.12), so a symbol with
no data for ``no_data_timeout_s`` is reported once as a venue error.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import msgspec

from arbwire.model import BUY, SELL, BookUpdate, Level, Quote, Trade
from arbwire.symbols import GluedSymbols
from arbwire.sync import APPLY, GAP, STALE, PrevIdChain, SequenceRule, Verdict
from arbwire.venues.base import (
    Action,
    Endpoints,
    FetchSnapshot,
    Output,
    Reconnect,
    VenueSession,
    server_time,
)

SPOT = Endpoints("wss://stream.binance.com:9443", "https://api.binance.com")
USDM = Endpoints("wss://fstream.binance.com", "https://fapi.binance.com")
MS = 1_000_000


class _Depth(msgspec.Struct, gc=False):
    E: int
    U: int
    u: int
    b: list[Level]
    a: list[Level]
    pu: int = -1  # futures only: the previous event's u


class _BookTicker(msgspec.Struct, gc=False):
    u: int
    b: str
    B: str
    a: str
    A: str
    E: int = 0  # futures only; spot bookTicker carries no time


class _Trade(msgspec.Struct, gc=False):
    E: int
    p: str
    q: str
    T: int
    m: bool  # buyer is maker, so the taker sold
    t: int = 0  # trade id (trade stream)
    a: int = 0  # aggregate trade id (aggTrade stream)


class _Snapshot(msgspec.Struct):
    lastUpdateId: int
    bids: list[Level]
    asks: list[Level]
    E: int = 0


class _Frame(msgspec.Struct):
    """Any frame: a combined-stream event, a control reply, or a raw event."""

    stream: str | None = None
    data: msgspec.Raw = msgspec.Raw()  # empty when absent (Raw can't sit in a union)
    result: Any = None
    id: int | str | None = None
    code: int | None = None
    msg: str | None = None
    e: str | None = None


# The envelope's other fields, typed as in _Frame, so the union refuses every frame the
# two-step path refuses (a malformed "id" beside good data is a bad frame on both).
_ENVELOPE: list[tuple[str, Any, Any]] = [
    ("result", Any, None),
    ("id", int | str | None, None),
    ("code", int | None, None),
    ("msg", str | None, None),
    ("e", str | None, None),
]


class SpotRule(SequenceRule):
    """§1.7: first diff straddles lastUpdateId+1, then each U == previous u + 1."""


class FuturesRule(PrevIdChain):
    """USD-M: first diff has U <= lastUpdateId <= u, then each pu == previous u."""

    def first(self, snap_id: int, upd: BookUpdate) -> Verdict:
        if upd.last_id < snap_id:
            return STALE
        if upd.first_id <= snap_id:
            return APPLY
        return GAP


_KIND_DEPTH, _KIND_TICKER, _KIND_TRADE, _KIND_AGG, _KIND_OTHER = range(5)


class BinanceSession(VenueSession):
    name = "binance"

    def __init__(
        self,
        symbols: Sequence[str],
        endpoints: Endpoints = SPOT,
        *,
        futures: bool = False,
        snapshot_limit: int = 1000,
        depth_speed: str = "@100ms",
        no_data_timeout_s: float = 30.0,
    ) -> None:
        if futures and self.name == "binance":
            self.name = "binance-usdm"
        super().__init__(symbols, endpoints)
        self.futures = futures
        self.snapshot_limit = snapshot_limit
        self.depth_speed = depth_speed
        self.no_data_timeout_ns = int(no_data_timeout_s * 1e9)
        self.names = GluedSymbols(self.symbols, lower=True)
        self._routes: dict[str, tuple[int, str]] = {}
        self._typed: dict[type, tuple[int, str]] = {}
        self._seen: set[str] = set()
        self._reported_silent: set[str] = set()
        self._opened_ns: int | None = None
        self._frame = msgspec.json.Decoder(_Frame)
        self._decode = self._typed_decoder().decode
        self._depth = msgspec.json.Decoder(_Depth)
        self._ticker = msgspec.json.Decoder(_BookTicker)
        self._trade = msgspec.json.Decoder(_Trade)
        self._snapshot = msgspec.json.Decoder(_Snapshot)
        self._rule: SequenceRule = FuturesRule() if futures else SpotRule()

    # -- link ------------------------------------------------------------------
    def channels(self) -> tuple[str, ...]:
        """The streams subscribed for each symbol: book diffs, best bid/offer, trades."""
        return (f"depth{self.depth_speed}", "bookTicker", "trade")

    def streams(self) -> list[str]:
        channels = self.channels()
        return [f"{self.names.to_venue(symbol)}@{channel}" for symbol in self.symbols for channel in channels]

    def url(self) -> str:
        return f"{self.endpoints.ws_url}/stream?streams={'/'.join(self.streams())}"

    def on_open(self, now_ns: int) -> list[Action]:
        self._opened_ns = now_ns
        self._seen.clear()
        return []

    def on_timer(self, now_ns: int, last_recv_ns: int) -> list[Output]:
        """Binance accepts an unknown symbol in silence: report symbols that never sent data."""
        if self._opened_ns is None or now_ns - self._opened_ns < self.no_data_timeout_ns:
            return []
        silent = [s for s in self.symbols if s not in self._seen and s not in self._reported_silent]
        self._reported_silent.update(silent)
        timeout_s = self.no_data_timeout_ns / 1e9
        return [
            self.venue_error(s, "no-data", f"no data for {timeout_s:.0f}s: symbol not listed?", now_ns)
            for s in silent
        ]

    # -- frames ----------------------------------------------------------------
    def _typed_decoder(self) -> msgspec.json.Decoder[Any]:
        """One decoder for every stream this session expects: a tagged union with one
        Struct per stream name (the tag is the ``stream`` field), so a frame is parsed
        once, validated against its channel's fields, and its type names its route.
        Two-step decoding (envelope with ``Raw`` data, then the payload) costs 35-60%
        more per frame on the real captures (docs/benchmarks.md)."""
        members: list[type] = []
        for symbol in self.symbols:
            name = self.names.to_venue(symbol)
            for channel, kind, data in (
                (f"depth{self.depth_speed}", _KIND_DEPTH, _Depth),
                ("bookTicker", _KIND_TICKER, _BookTicker),
                ("trade", _KIND_TRADE, _Trade),
                ("aggTrade", _KIND_AGG, _Trade),
            ):
                stream = f"{name}@{channel}"
                if stream in self._routes:  # a symbol given twice
                    continue
                cls = msgspec.defstruct(
                    f"_{len(members)}", [("data", data), *_ENVELOPE], tag_field="stream", tag=stream, gc=False
                )
                self._routes[stream] = self._typed[cls] = (kind, symbol)
                members.append(cls)
        if not members:  # no symbols: every frame takes the two-step path
            cls = msgspec.defstruct("_none", [("data", msgspec.Raw)], tag_field="stream", tag="", gc=False)
            self._typed[cls] = (_KIND_OTHER, "")
            members.append(cls)
        return msgspec.json.Decoder(Union[tuple(members)])  # noqa: UP007  (a runtime tuple)

    def _route(self, stream: str) -> tuple[int, str]:
        name, _, channel = stream.partition("@")
        if channel.startswith("depth"):
            kind = _KIND_DEPTH
        elif channel == "bookTicker":
            kind = _KIND_TICKER
        elif channel == "trade":
            kind = _KIND_TRADE
        elif channel == "aggTrade":
            kind = _KIND_AGG
        else:
            kind = _KIND_OTHER
        route = (kind, self.names.to_common(name) if kind != _KIND_OTHER or name else "")
        self._routes[stream] = route
        return route

    def on_frame(self, payload: bytes, recv_ns: int) -> list[Output]:
        self.stats.frames += 1
        try:
            frame = self._decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._two_step(payload, recv_ns)
        kind, symbol = self._typed[type(frame)]
        self._seen.add(symbol)
        d = frame.data
        if kind == _KIND_TICKER:
            return [Quote(self.name, symbol, d.b, d.B, d.a, d.A, d.u, d.E * MS, recv_ns)]
        if kind == _KIND_DEPTH:
            return [BookUpdate(self.name, symbol, d.b, d.a, d.U, d.u, d.pu, False, None, d.E * MS, recv_ns)]
        if kind == _KIND_OTHER:
            return self._two_step(payload, recv_ns)
        return [
            Trade(
                self.name, symbol, d.p, d.q, SELL if d.m else BUY,
                str(d.t if kind == _KIND_TRADE else d.a), d.T * MS, recv_ns,
            )
        ]

    def _two_step(self, payload: bytes, recv_ns: int) -> list[Output]:
        """Envelope first, then the payload by stream: every frame the typed union refuses
        (control replies, venue-wide events, streams without a type of their own such as
        another depth speed, malformed events) and the reference the union must equal."""
        try:
            frame = self._frame.decode(payload)
            stream, data = frame.stream, frame.data
            if stream is None or not data:
                return self._control(frame, payload, recv_ns)
            route = self._routes.get(stream)
            if route is None:
                if stream.startswith("!"):  # venue-wide events such as !serverShutdown
                    return self._control(frame, payload, recv_ns)
                route = self._route(stream)
            kind, symbol = route
            if kind == _KIND_OTHER:
                self.stats.unknown += 1
                return []
            self._seen.add(symbol)
            if kind == _KIND_DEPTH:
                d = self._depth.decode(data)
                return [BookUpdate(self.name, symbol, d.b, d.a, d.U, d.u, d.pu, False, None, d.E * MS, recv_ns)]
            if kind == _KIND_TICKER:
                t = self._ticker.decode(data)
                return [Quote(self.name, symbol, t.b, t.B, t.a, t.A, t.u, t.E * MS, recv_ns)]
            tr = self._trade.decode(data)
            trade_id = str(tr.t if kind == _KIND_TRADE else tr.a)
            side = SELL if tr.m else BUY
            return [Trade(self.name, symbol, tr.p, tr.q, side, trade_id, tr.T * MS, recv_ns)]
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return [self.bad_frame(f"decode: {exc}", payload, recv_ns)]
        except ValueError as exc:  # symbol that can't be mapped
            return [self.bad_frame(f"symbol: {exc}", payload, recv_ns)]

    def _control(self, frame: _Frame, payload: bytes, recv_ns: int) -> list[Output]:
        if frame.e == "serverShutdown" or (frame.stream or "").endswith("serverShutdown"):
            return [Reconnect("binance serverShutdown")]
        if frame.code is not None:
            return [self.venue_error("", str(frame.code), frame.msg or "", recv_ns)]
        if frame.id is not None:  # {"result":null,"id":1}: subscription acknowledged
            return []
        if frame.data and frame.stream is None:
            return [self.bad_frame("combined frame without stream", payload, recv_ns)]
        self.stats.unknown += 1
        return [self.bad_frame("unknown frame", payload, recv_ns)]

    # -- books -----------------------------------------------------------------
    def sequence_rule(self, symbol: str) -> SequenceRule:
        return self._rule

    def snapshot_url(self, symbol: str) -> str:
        path = "/fapi/v1/depth" if self.futures else "/api/v3/depth"
        venue_symbol = self.names.to_venue(symbol).upper()
        return f"{self.endpoints.rest_url}{path}?symbol={venue_symbol}&limit={self.snapshot_limit}"

    def snapshot_request(self, symbol: str) -> list[Action]:
        return [FetchSnapshot(symbol, self.snapshot_url(symbol))]

    def parse_snapshot(self, symbol: str, body: bytes, recv_ns: int) -> BookUpdate:
        try:
            s = self._snapshot.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"{self.name} {symbol} depth snapshot: {exc}: {body[:200]!r}") from exc
        return BookUpdate(
            self.name, symbol, s.bids, s.asks, s.lastUpdateId, s.lastUpdateId, -1, True, None,
            s.E * MS, recv_ns,
        )

    # -- venue clock -----------------------------------------------------------
    def time_url(self) -> str:
        return f"{self.endpoints.rest_url}{'/fapi/v1/time' if self.futures else '/api/v3/time'}"

    def parse_server_time(self, body: bytes) -> tuple[int, int]:
        return server_time(self.name, body, _ServerTime, lambda t: t.serverTime)


class _ServerTime(msgspec.Struct):
    serverTime: int
