"""Binance spot market data, simulated: WebSocket streams and the REST snapshot.

Wire facts from ../shared/docs/exchange-protocols.md §1, built here from the model's
own books (never from arbwire's client code):

* ``/stream?streams=a/b`` wraps every event as ``{"stream":..,"data":..}``; ``/ws`` and
  ``/ws/a/b`` send bare events unless ``SET_PROPERTY combined true``.
* ``SUBSCRIBE`` replies ``{"result":null,"id":..}``; a malformed stream name gets
  ``{"code":2,"msg":"Invalid request: invalid stream","id":..}`` (or, with
  ``nested_errors``, the ``{"error":{..},"id":..}`` shape seen live); a well-formed
  unknown symbol is accepted and then silent, as the real venue does (§1.12).
* One update-id sequence per symbol: each depth diff spans several ids (``U..u``),
  ``bookTicker.u`` and the REST ``lastUpdateId`` come from the same counter, so a
  snapshot at X is followed by a diff with ``U == X + 1``.
* The server pings every ``ping_interval_s`` and closes a link whose pong (echoing
  the payload) has not come within ``pong_timeout_s``; unsolicited pongs don't count.

With ``BinanceOptions(sbe=True)`` the WebSocket side is the SBE endpoint (§1.13): the
upgrade needs an ``X-MBX-APIKEY`` header (else HTTP 401), the streams are
``<s>@trade``, ``<s>@bestBidAsk``, ``<s>@depth`` (the 100 ms diffs above, same ``U..u``)
and ``<s>@depth20`` (every 50 ms), and each event is one SBE message in one binary
frame, with no combined wrapper. Control requests, replies and ``serverShutdown`` stay
JSON text. The encoding itself is in ``arbwire.sim.binance_sbe``.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web
from picows import WSCloseCode, WSMsgType, WSUpgradeRequest

from arbwire.sim import binance_sbe as sbe
from arbwire.sim.levels import text_levels
from arbwire.sim.market import Book, MarketModel, Step
from arbwire.sim.server import (
    Link,
    LinkListener,
    RouteResult,
    VenueServer,
    answer_pings,
    encode,
    housekeeping_every,
    json_response,
    reject,
    respond_late,
)

STREAM_RE = re.compile(
    r"^(?P<sym>[a-z0-9]+)@(?P<kind>trade|aggTrade|bookTicker|depth(?P<levels>5|10|20)?(?P<speed>@100ms|@1000ms)?)$"
)
SBE_STREAM_RE = re.compile(r"^(?P<sym>[a-z0-9]+)@(?P<kind>trade|bestBidAsk|depth(?P<levels>20)?)$")
SBE_SNAPSHOT_MS = 50  # the @depth20 period of the SBE endpoint
BAD_API_KEY = {"code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}
MAX_DEPTH_LIMIT = 5000


def fmt8(value: Decimal) -> str:
    """Binance's fixed 8-decimal text, e.g. ``"60000.01000000"``."""
    return f"{value:.8f}"


@dataclass(frozen=True, slots=True)
class BinanceOptions:
    """Timeouts and quirks of the Binance simulator (defaults are the venue's)."""

    ping_interval_s: float = 20.0
    pong_timeout_s: float = 60.0
    max_link_age_s: float = 24 * 3600.0
    rest_delay_s: float = 0.0  # REST answers this late, with the book as of the request
    nested_errors: bool = False  # {"error":{"code":..,"msg":..},"id":..} instead of flat
    sbe: bool = False  # the SBE endpoint (§1.13) instead of the JSON one
    sbe_api_keys: tuple[str, ...] = ()  # X-MBX-APIKEY values let in; empty: any non-empty key


@dataclass(frozen=True, slots=True)
class Stream:
    """A parsed stream name; ``symbol`` is None for a well-formed unknown symbol."""

    name: str
    symbol: str | None
    kind: str  # trade | aggTrade | bookTicker | bestBidAsk (SBE) | diff | partial
    levels: int = 0
    fast: bool = True  # 100 ms rather than 1000 ms


@dataclass(slots=True)
class _LinkState:
    combined: bool
    micro: bool
    streams: dict[str, Stream] = field(default_factory=dict)
    pings: dict[bytes, float] = field(default_factory=dict)  # payload -> sent at
    next_ping: float = 0.0


@dataclass(slots=True)
class _Window:
    """The 1000 ms diff stream: changes merged over several 100 ms diffs."""

    first: int
    last: int
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)


@dataclass(slots=True)
class _SymbolState:
    name: str  # BTCUSDT
    last_id: int
    trade_id: int
    top: tuple[Decimal, Decimal, Decimal, Decimal] | None = None
    window: _Window | None = None


def _depth_event(
    st: _SymbolState, e_ms: int, first: int, last: int, bids: Book, asks: Book
) -> dict[str, Any]:
    """A ``depthUpdate`` event of either speed, spanning update ids ``first..last``."""
    return {"e": "depthUpdate", "E": e_ms, "s": st.name, "U": first, "u": last,
            "b": text_levels(bids, True, fmt8), "a": text_levels(asks, False, fmt8)}


class BinanceServer(VenueServer):
    """Binance spot simulator over one shared ``MarketModel``."""

    venue = "binance"
    options_type = BinanceOptions
    options: BinanceOptions
    faults = VenueServer.faults | {"server_shutdown"}

    def __init__(self, model: MarketModel, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._symbols: dict[str, _SymbolState] = {}
        self._by_name: dict[str, str] = {}  # btcusdt -> BTC-USDT
        for symbol in model.symbols:
            name = symbol.replace("-", "").upper()
            self._by_name[name.lower()] = symbol
            self._symbols[symbol] = _SymbolState(
                name=name,
                last_id=self.rng.randrange(10**9, 5 * 10**10),
                trade_id=self.rng.randrange(10**6, 10**9),
            )
        self._slow_every = max(1, round(1000 / model.tick_ms))

    # ----- naming -----

    def parse_stream(self, name: str) -> Stream | None:
        m = (SBE_STREAM_RE if self.options.sbe else STREAM_RE).match(name)
        if m is None:
            return None
        symbol = self._by_name.get(m["sym"])
        kind = m["kind"]
        fast = self.options.sbe or m["speed"] == "@100ms"
        if kind.startswith("depth"):
            if m["levels"]:
                return Stream(name, symbol, "partial", int(m["levels"]), fast)
            return Stream(name, symbol, "diff", 0, fast)
        return Stream(name, symbol, kind)

    # ----- connections -----

    def route(self, request: WSUpgradeRequest) -> RouteResult:
        url = urllib.parse.urlsplit(request.path.decode("latin-1"))
        path = urllib.parse.unquote(url.path).rstrip("/")
        query = urllib.parse.parse_qs(url.query)
        micro = query.get("timeUnit", [""])[0].upper() == "MICROSECOND"
        if path == "/stream":
            combined, names = True, [n for n in query.get("streams", [""])[0].split("/") if n]
        elif path == "/ws" or path.startswith("/ws/"):
            combined, names = False, [n for n in path[len("/ws") :].split("/") if n]
        else:
            return None
        if self.options.sbe and not self._api_key_ok(request):
            return reject(401, encode(BAD_API_KEY), "application/json")
        state = _LinkState(combined=combined, micro=micro)
        for name in names:
            stream = self.parse_stream(name)
            if stream is None:
                return reject(400, encode({"code": 2, "msg": "Invalid request: invalid stream"}))
            state.streams[name] = stream
        return LinkListener(self, state)

    def _api_key_ok(self, request: WSUpgradeRequest) -> bool:
        """The SBE endpoint's only check on the key: it is present and known (§1.13)."""
        key = request.headers.get("X-MBX-APIKEY", "")
        allowed = self.options.sbe_api_keys
        return bool(key) and (not allowed or key in allowed)

    def on_connect(self, link: Link) -> None:
        link.state.next_ping = link.opened + self.options.ping_interval_s

    def on_text(self, link: Link, payload: bytes) -> None:
        state: _LinkState = link.state
        try:
            msg = json.loads(payload)
        except ValueError as exc:
            self._error(link, 3, f"Invalid JSON: {exc}", None)
            return
        if not isinstance(msg, dict):
            self._error(link, 2, "Invalid request: expected an object", None)
            return
        req_id = msg.get("id")
        if not (req_id is None or isinstance(req_id, int | str)) or isinstance(req_id, bool):
            self._error(link, 2, "Invalid request: request ID must be an unsigned integer", None)
            return
        method = msg.get("method")
        params = msg.get("params", [])
        if method is None:
            self._error(link, 2, "Invalid request: missing field `method`", req_id)
        elif method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                self._error(link, 2, "Invalid request: invalid stream", req_id)
                return
            streams = [self.parse_stream(p) for p in params]
            if any(s is None for s in streams):
                self._error(link, 2, "Invalid request: invalid stream", req_id)
                return
            for stream in streams:
                assert stream is not None
                if method == "SUBSCRIBE":
                    state.streams[stream.name] = stream
                else:
                    state.streams.pop(stream.name, None)
            self._reply(link, None, req_id)
        elif method == "LIST_SUBSCRIPTIONS":
            self._reply(link, list(state.streams), req_id)
        elif method == "SET_PROPERTY":
            if not isinstance(params, list) or len(params) != 2 or params[0] != "combined":
                self._error(link, 0, "Unknown property", req_id)
            elif not isinstance(params[1], bool):
                self._error(link, 1, "Invalid value type: expected Boolean", req_id)
            else:
                state.combined = params[1]
                self._reply(link, None, req_id)
        elif method == "GET_PROPERTY":
            if params == ["combined"]:
                self._reply(link, state.combined, req_id)
            else:
                self._error(link, 0, "Unknown property", req_id)
        else:
            self._error(
                link,
                2,
                f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, "
                "`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`",
                req_id,
            )

    def _reply(self, link: Link, result: Any, req_id: Any) -> None:
        self.send(link, encode({"result": result, "id": req_id}))

    def _error(self, link: Link, code: int, msg: str, req_id: Any) -> None:
        if self.options.nested_errors:
            body: dict[str, Any] = {"error": {"code": code, "msg": msg}, "id": req_id}
        else:
            body = {"code": code, "msg": msg, "id": req_id}
        self.send(link, encode(body))

    def on_pong(self, link: Link, payload: bytes) -> None:
        answer_pings(link.state.pings, payload)  # an unsolicited pong keeps nothing alive (§1.4)

    def housekeeping_period(self) -> float:
        return housekeeping_every(self.options.ping_interval_s, self.options.pong_timeout_s)

    def housekeep(self, now: float) -> None:
        o = self.options
        for link in list(self.links.values()):
            state: _LinkState = link.state
            if now - link.opened >= o.max_link_age_s:
                self.close_link(link, WSCloseCode.OK, b"connection lifetime reached")
                continue
            if state.pings and now - min(state.pings.values()) >= o.pong_timeout_s:
                self.close_link(link, WSCloseCode.POLICY_VIOLATION, b"pong timeout")
                continue
            if now >= state.next_ping:
                payload = str(self.venue_ns() // 1_000_000).encode()  # not self.rng: ids stay seeded
                link.transport.send_ping(payload)
                state.pings[payload] = now
                state.next_ping = now + o.ping_interval_s

    # ----- faults -----

    def server_shutdown(self, close_after_s: float | None = 1.0) -> None:
        """Send the ``serverShutdown`` event to every link; close them after a delay."""
        event = {"e": "serverShutdown", "E": self.venue_ns() // 1_000_000}
        links = list(self.links.values())
        for link in links:
            body = {"stream": "!serverShutdown", "data": event} if link.state.combined else event
            self.send(link, encode(body))
        if close_after_s is not None:
            self.close_later(links, close_after_s, b"server shutdown")

    # ----- publishing -----

    def publish(self, step: Step, now_ns: int) -> None:
        events: dict[str, list[dict[str, Any]]] = {}
        trades = self.trades_by_symbol(step)
        slow_flush = step.index % self._slow_every == 0
        e_ms = now_ns // 1_000_000
        for symbol, st in self._symbols.items():
            low = st.name.lower()
            for trade in trades.get(symbol, ()):
                st.trade_id += 1
                common = {"s": st.name, "p": fmt8(trade.price), "q": fmt8(trade.size)}
                maker_buys = trade.taker_side == "sell"
                events.setdefault(f"{low}@trade", []).append(
                    {"e": "trade", "E": e_ms, **common, "t": st.trade_id, "T": e_ms,
                     "m": maker_buys, "M": True}
                )
                events.setdefault(f"{low}@aggTrade", []).append(
                    {"e": "aggTrade", "E": e_ms, "a": st.trade_id, **common, "f": st.trade_id,
                     "l": st.trade_id, "T": e_ms, "m": maker_buys, "M": True}
                )
            diff = step.diffs.get((self.venue, symbol))
            if diff:
                first = st.last_id + 1
                st.last_id += len(diff) + self.rng.randint(0, 3)
                if self.take_skip(symbol):
                    self._flush_window(st, events, e_ms)  # the 1000 ms stream gaps too
                else:
                    events[f"{low}@depth@100ms"] = [
                        _depth_event(st, e_ms, first, st.last_id, diff.bids, diff.asks)
                    ]
                    w = st.window or _Window(first, first)
                    w.last = st.last_id
                    w.bids.update(diff.bids)
                    w.asks.update(diff.asks)
                    st.window = w
            if slow_flush:
                self._flush_window(st, events, e_ms)
            top = self.model.book(self.venue, symbol).top()
            if top is not None and top != st.top:
                st.top = top
                events[f"{low}@bookTicker"] = [
                    {"u": st.last_id, "s": st.name, "b": fmt8(top[0]), "B": fmt8(top[1]),
                     "a": fmt8(top[2]), "A": fmt8(top[3])}
                ]
        self._deliver(events, step, now_ns, slow_flush)

    def _flush_window(self, st: _SymbolState, events: dict[str, list[dict[str, Any]]], e_ms: int) -> None:
        w = st.window
        st.window = None
        if w is None:
            return
        events.setdefault(f"{st.name.lower()}@depth", []).append(
            _depth_event(st, e_ms, w.first, w.last, w.bids, w.asks)
        )

    def _partial(self, symbol: str, levels: int) -> dict[str, Any]:
        book = self.model.book(self.venue, symbol)
        bids = sorted(book.bids.items(), reverse=True)[:levels]
        asks = sorted(book.asks.items())[:levels]
        return {
            "lastUpdateId": self._symbols[symbol].last_id,
            "bids": [[fmt8(p), fmt8(s)] for p, s in bids],
            "asks": [[fmt8(p), fmt8(s)] for p, s in asks],
        }

    def _deliver(
        self,
        events: dict[str, list[dict[str, Any]]],
        step: Step,
        now_ns: int,
        slow_flush: bool,
    ) -> None:
        if self.stalled or not self.links:
            return
        cache: dict[tuple[str, bool, bool], list[bytes]] = {}
        kind = WSMsgType.BINARY if self.options.sbe else WSMsgType.TEXT
        for link in list(self.links.values()):
            state: _LinkState = link.state
            for stream in list(state.streams.values()):
                if stream.symbol is None:
                    continue  # well-formed unknown symbol: silence
                key = (stream.name, state.combined, state.micro)
                frames = cache.get(key)
                if frames is None:
                    frames = cache[key] = self._encode_stream(
                        stream, events, state, now_ns, step, slow_flush
                    )
                for frame in frames:
                    self._send_frame(link, kind, frame)

    def _encode_stream(
        self,
        stream: Stream,
        events: dict[str, list[dict[str, Any]]],
        state: _LinkState,
        now_ns: int,
        step: Step,
        slow_flush: bool,
    ) -> list[bytes]:
        assert stream.symbol is not None
        if self.options.sbe:
            return self._encode_sbe(stream, events, now_ns, step)
        low = self._symbols[stream.symbol].name.lower()
        if stream.kind == "diff":
            payloads = events.get(f"{low}@depth@100ms" if stream.fast else f"{low}@depth", [])
        elif stream.kind == "partial":
            due = (self.venue, stream.symbol) in step.diffs if stream.fast else slow_flush
            payloads = [self._partial(stream.symbol, stream.levels)] if due else []
        else:
            payloads = events.get(f"{low}@{stream.kind}", [])
        out = []
        for data in payloads:
            if state.micro:
                data = {**data, **{k: now_ns // 1000 for k in ("E", "T") if k in data}}
            out.append(encode({"stream": stream.name, "data": data} if state.combined else data))
        return out

    def _encode_sbe(
        self, stream: Stream, events: dict[str, list[dict[str, Any]]], now_ns: int, step: Step
    ) -> list[bytes]:
        """One SBE message per event, from the very events the JSON streams send."""
        assert stream.symbol is not None
        st = self._symbols[stream.symbol]
        low = st.name.lower()
        now_us = now_ns // 1000
        if stream.kind == "diff":
            return [sbe.depth_diff_from_json(e, now_us) for e in events.get(f"{low}@depth@100ms", [])]
        if stream.kind == "partial":
            if not self._sbe_snapshot_due(step):
                return []
            return [sbe.depth_snapshot_from_json(self._partial(stream.symbol, stream.levels), st.name, now_us)]
        if stream.kind == "bestBidAsk":
            return [sbe.best_bid_ask_from_json(e, now_us) for e in events.get(f"{low}@bookTicker", [])]
        return sbe.trades_from_json(events.get(f"{low}@trade", []), now_us)

    def _sbe_snapshot_due(self, step: Step) -> bool:
        """Whether ``step`` crosses a 50 ms mark of model time: 50 ms apart on average
        whatever the tick, and never more often than every tick."""
        tick = self.model.tick_ms
        t = step.index * tick
        return t // SBE_SNAPSHOT_MS != (t - tick) // SBE_SNAPSHOT_MS

    # ----- REST -----

    def rest_routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v3/depth", self._rest_depth),
            web.get("/api/v3/exchangeInfo", self._rest_exchange_info),
            web.get("/api/v3/ping", self._rest_ping),
            web.get("/api/v3/time", self._rest_time),
        ]

    @staticmethod
    def _rest_error(status: int, code: int, msg: str) -> web.Response:
        return json_response({"code": code, "msg": msg}, status)

    def _symbol_from_rest(self, name: str) -> str | None:
        return self._by_name.get(name.lower()) if name.isupper() else None

    async def _rest_depth(self, request: web.Request) -> web.Response:
        name = request.query.get("symbol", "")
        if not name:
            return self._rest_error(400, -1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
        symbol = self._symbol_from_rest(name)
        if symbol is None:
            return self._rest_error(400, -1121, "Invalid symbol.")
        try:
            limit = int(request.query.get("limit", "100"))
        except ValueError:
            return self._rest_error(400, -1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.")
        limit = max(1, min(limit, MAX_DEPTH_LIMIT))
        book = json_response(self._partial(symbol, limit))  # taken now, however late it is sent
        return await respond_late(book, self.options.rest_delay_s)

    async def _rest_exchange_info(self, request: web.Request) -> web.Response:
        wanted: list[str] | None = None
        if "symbol" in request.query:
            wanted = [request.query["symbol"]]
        elif "symbols" in request.query:
            try:
                wanted = json.loads(request.query["symbols"])
            except ValueError:
                return self._rest_error(400, -1100, "Illegal characters found in parameter 'symbols'.")
        symbols = []
        names = wanted if wanted is not None else [st.name for st in self._symbols.values()]
        for name in names:
            symbol = self._symbol_from_rest(name) if isinstance(name, str) else None
            if symbol is None:
                return self._rest_error(400, -1121, "Invalid symbol.")
            inst = self.model.instruments[symbol]
            symbols.append({
                "symbol": self._symbols[symbol].name,
                "status": "TRADING",
                "baseAsset": inst.base,
                "baseAssetPrecision": 8,
                "quoteAsset": inst.quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                "isSpotTradingAllowed": True,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": fmt8(inst.tick),
                     "maxPrice": "1000000.00000000", "tickSize": fmt8(inst.tick)},
                    {"filterType": "LOT_SIZE", "minQty": fmt8(inst.lot),
                     "maxQty": "9000.00000000", "stepSize": fmt8(inst.lot)},
                ],
                "permissionSets": [["SPOT"]],
            })
        return json_response({"timezone": "UTC", "serverTime": self.venue_ns() // 1_000_000,
                              "rateLimits": [], "exchangeFilters": [], "symbols": symbols})

    async def _rest_ping(self, request: web.Request) -> web.Response:
        return json_response({})

    async def _rest_time(self, request: web.Request) -> web.Response:
        return json_response({"serverTime": self.venue_ns() // 1_000_000})
