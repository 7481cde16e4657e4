"""Gate (API v4) spot public market data, simulated: ``/ws/v4/`` and the REST book.

Wire facts from ../shared/docs/exchange-protocols.md §4 and §6, built here from the
model's own books (never from arbwire's client code):

* Requests ``{"time":s,"id":..,"channel":..,"event":"subscribe","payload":[..]}`` get
  one acknowledgement ``{"time","time_ms","id","conn_id","trace_id","channel","event",
  "payload","result":{"status":"success"}}``. A request naming any unknown pair fails
  whole: ``"error":{"code":2,"message":"unknown currency pair: X"}`` and
  ``"result":{"status":"fail"}``; a second ``spot.obu`` subscription to the same stream
  gets ``"Alert sub ob.PAIR.LEVEL"``.
* One book update id per pair, +1 for every level change (plus changes no stream
  shows), shared by every channel and the REST ``with_id=true`` snapshot.
* ``spot.obu`` ``ob.PAIR.{50,400}``: a ``full:true`` push on subscribe, then increments
  of the top-N view with ``U == previous u + 1``; the real frame shape
  ``{"channel","result","time_ms","event":"update"}`` (no ``time``).
* ``spot.order_book_update`` ``[PAIR, "100ms"|"20ms"]`` (depth 100 / 20): increments with
  ``U``/``u``, synced against REST ``/api/v4/spot/order_book?..&with_id=true``.
* ``spot.book_ticker`` on every change of the top, ``spot.trades`` per fill,
  ``spot.ping`` -> ``spot.pong``.
* The server sends WebSocket pings every ``ping_interval_s``; a link that neither
  answers one nor sends ``spot.ping`` for ``ping_timeout_s`` is closed. A link whose
  unsent data passes ``max_buffer_bytes`` is cut as a slow consumer.

Unconfirmed points (§4) are options: both heartbeat timeouts, whether pongs count
(``pongs_count``), a full push first on ``spot.order_book_update``
(``update_full_first``), the REST ``limit`` maximum, and the texts of errors the docs
don't quote (bad ``time``, bad stream names, unknown channels: all code 2).
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web
from picows import WSCloseCode, WSUpgradeRequest

from arbwire.sim.levels import best, decimals, delta, text_levels, views
from arbwire.sim.levels import decimal_text as gate_str
from arbwire.sim.market import Book, MarketModel, SimTrade, Step
from arbwire.sim.server import (
    Link,
    LinkListener,
    RouteResult,
    VenueServer,
    answer_pings,
    encode,
    housekeeping_every,
    json_response,
    respond_late,
    ws_path,
)

PATH = "/ws/v4"
OBU = "spot.obu"
UPDATE = "spot.order_book_update"
BOOK_TICKER = "spot.book_ticker"
TRADES = "spot.trades"
OBU_LEVELS = (50, 400)
UPDATE_DEPTHS = {"20ms": 20, "100ms": 100}
STREAMS: tuple[tuple[str, Any, int], ...] = (
    (OBU, 50, 50), (OBU, 400, 400), (UPDATE, "20ms", 20), (UPDATE, "100ms", 100),
)  # (channel, parameter, depth) of every book stream a pair has
OBU_STREAM = re.compile(r"^ob\.(?P<pair>[A-Za-z0-9]+_[A-Za-z0-9]+)\.(?P<level>\d+)$")
PING_CLOSE = WSCloseCode.POLICY_VIOLATION  # the real close code is undocumented

SubKey = tuple[str, str, Any]  # (channel, model symbol, level | interval | None)


@dataclass(frozen=True, slots=True)
class GateioOptions:
    """Timeouts and quirks of the Gate simulator; the venue documents none of the numbers."""

    ping_interval_s: float = 10.0  # server WebSocket ping frames
    ping_timeout_s: float = 30.0  # no pong and no spot.ping for this long: close
    pongs_count: bool = True  # False: only spot.ping resets the timer (stricter)
    max_buffer_bytes: int = 4 * 1024 * 1024  # unsent data above this: slow-consumer close
    sndbuf_bytes: int = 0  # >0: each link's SO_SNDBUF (tests reach the slow-consumer limit fast)
    check_time: bool = True  # requests need ``time`` within 60 s of the server clock
    update_full_first: bool = False  # spot.order_book_update: full:true push on subscribe
    upgrade_close_s: float = 1.0  # delay between an ``upgrade`` event and the close
    rest_max_limit: int = 1000
    rest_delay_s: float = 0.0  # REST answers this late, with the book as of the request


@dataclass(slots=True)
class _BookStream:
    """One book stream of one pair: the view last sent and the id it stands at."""

    depth: int
    last_u: int
    bids: dict[Decimal, Decimal]
    asks: dict[Decimal, Decimal]
    skip: bool = False
    full: bool = False  # push full:true at the next publish


@dataclass(slots=True)
class _Pair:
    symbol: str
    name: str  # BTC_USDT
    id: int
    streams: dict[tuple[str, Any], _BookStream]
    id_market: int
    last_change_ms: int
    top: tuple[Decimal, Decimal, Decimal, Decimal] | None = None


@dataclass(slots=True)
class _LinkState:
    conn_id: str
    subs: dict[SubKey, None] = field(default_factory=dict)
    pings: dict[bytes, float] = field(default_factory=dict)
    last_alive: float = 0.0
    next_ping: float = 0.0
    closing: bool = False


class _Refused(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _ms_text(ns: int) -> str:
    """``create_time_ms``: ms as text with the sub-ms digits, ``"1606292218213.4578"``."""
    frac = f"{ns % 1_000_000:06d}".rstrip("0")
    return f"{ns // 1_000_000}.{frac}" if frac else str(ns // 1_000_000)


class GateioServer(VenueServer):
    """Gate v4 spot simulator over one shared ``MarketModel``."""

    venue = "gateio"
    options_type = GateioOptions
    options: GateioOptions
    faults = VenueServer.faults | {"full_snapshot", "upgrade", "slow_consumer"}

    def __init__(self, model: MarketModel, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self.slow_closes = 0
        self._by_name: dict[str, str] = {}  # BTC_USDT -> BTC-USDT
        self._pairs: dict[str, _Pair] = {}
        self._trade_id = self.rng.randrange(10**8, 10**9)
        now_ms = self.venue_ns() // 1_000_000
        for symbol in model.symbols:
            name = symbol.replace("-", "_").upper()
            self._by_name[name] = symbol
            book_id = self.rng.randrange(10**9, 10**11)
            views = self._views(symbol)
            streams = {
                (channel, param): _BookStream(depth, book_id, *views[depth])
                for channel, param, depth in STREAMS
            }
            self._pairs[symbol] = _Pair(symbol, name, book_id, streams,
                                        self.rng.randrange(10**6, 10**7), now_ms)

    def book_id(self, symbol: str) -> int:
        """The pair's current book update id (what REST ``with_id=true`` says)."""
        return self._pairs[symbol].id

    # ----- connections -----

    def route(self, request: WSUpgradeRequest) -> RouteResult:
        if ws_path(request) != PATH:
            return None
        return LinkListener(self, _LinkState(conn_id=secrets.token_hex(8)))

    def on_connect(self, link: Link) -> None:
        state: _LinkState = link.state
        state.last_alive = link.opened
        state.next_ping = link.opened + self.options.ping_interval_s
        if self.options.sndbuf_bytes > 0:
            sock = link.transport.underlying_transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.options.sndbuf_bytes)

    def on_pong(self, link: Link, payload: bytes) -> None:
        state: _LinkState = link.state
        # an unsolicited pong says nothing about this link reading our pings
        if answer_pings(state.pings, payload) and self.options.pongs_count:
            state.last_alive = self.clock()

    def on_text(self, link: Link, payload: bytes) -> None:
        state: _LinkState = link.state
        try:
            msg = json.loads(payload)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            self._respond(link, {}, "", "", _Refused("Invalid request body format", 1))
            return
        channel, event = msg.get("channel"), msg.get("event")
        if channel == "spot.ping":
            state.last_alive = self.clock()
            self.send(link, encode({"time": self.venue_ns() // 10**9, "channel": "spot.pong",
                                    "event": "", "error": None, "result": None}))
            return
        try:
            if event not in ("subscribe", "unsubscribe"):
                raise _Refused(f"unknown event: {event}")
            sent_at = msg.get("time")
            if self.options.check_time and (
                not isinstance(sent_at, int) or abs(sent_at - time.time()) > 60
            ):
                raise _Refused("time field is missing or more than 60 s off the server time")
            keys = self._parse(channel, msg.get("payload"))
            if event == "subscribe" and channel == OBU:
                for key in keys:
                    if key in state.subs:
                        raise _Refused(f"Alert sub ob.{self._pairs[key[1]].name}.{key[2]}")
        except _Refused as exc:
            self._respond(link, msg, channel, event, exc)
            return
        if event == "unsubscribe":
            for key in keys:
                state.subs.pop(key, None)
            self._respond(link, msg, channel, event, None)
            return
        self._respond(link, msg, channel, event, None)
        for key in keys:
            state.subs[key] = None
            frame = self._initial_push(key)
            if frame is not None:
                self.send(link, frame)

    def _parse(self, channel: Any, payload: Any) -> list[SubKey]:
        """The subscription keys a request names; ``_Refused`` for any bad part."""
        if not isinstance(payload, list) or not payload or not all(isinstance(p, str) for p in payload):
            raise _Refused("payload must be a non-empty list of strings")
        if channel == OBU:
            keys = []
            for entry in payload:
                m = OBU_STREAM.match(entry)
                if m is None or int(m["level"]) not in OBU_LEVELS:
                    raise _Refused(f"invalid stream: {entry}")
                keys.append((OBU, self._pair(m["pair"]), int(m["level"])))
            return keys
        if channel == UPDATE:
            if len(payload) != 2 or payload[1] not in UPDATE_DEPTHS:
                raise _Refused(f"invalid payload: {payload}; expected [PAIR, \"20ms\"|\"100ms\"]")
            return [(UPDATE, self._pair(payload[0]), payload[1])]
        if channel in (BOOK_TICKER, TRADES):
            return [(channel, self._pair(p), None) for p in payload]
        raise _Refused(f"unknown channel: {channel}")

    def _pair(self, name: str) -> str:
        symbol = self._by_name.get(name)
        if symbol is None:
            raise _Refused(f"unknown currency pair: {name}")
        return symbol

    def _respond(self, link: Link, msg: dict[str, Any], channel: Any, event: Any,
                 error: _Refused | None) -> None:
        now_ns = self.venue_ns()
        body: dict[str, Any] = {"time": now_ns // 10**9, "time_ms": now_ns // 10**6}
        if "id" in msg:
            body["id"] = msg["id"]
        body |= {"conn_id": link.state.conn_id, "trace_id": secrets.token_hex(16),
                 "channel": channel or "", "event": event or "", "payload": msg.get("payload")}
        if error is None:
            body["result"] = {"status": "success"}
        else:
            body["error"] = {"code": error.code, "message": error.message}
            body["result"] = {"status": "fail"}
        self.send(link, encode(body))

    def _initial_push(self, key: SubKey) -> bytes | None:
        channel, symbol, param = key
        if channel == OBU or (channel == UPDATE and self.options.update_full_first):
            p = self._pairs[symbol]
            gs = p.streams[(channel, param)]
            ts = self.venue_ns() // 1_000_000
            return self._book_frame(p, channel, param, gs, True, gs.last_u, gs.last_u,
                                    gs.bids, gs.asks, ts)
        return None

    # ----- heartbeat and slow consumers -----

    def housekeeping_period(self) -> float:
        return housekeeping_every(self.options.ping_interval_s, self.options.ping_timeout_s)

    def housekeep(self, now: float) -> None:
        o = self.options
        for link in list(self.links.values()):
            state: _LinkState = link.state
            if state.closing:
                continue
            if now - state.last_alive >= o.ping_timeout_s:
                self.close_link(link, PING_CLOSE, b"ping timeout")
            elif o.ping_interval_s > 0 and now >= state.next_ping:
                payload = str(self.venue_ns()).encode()  # not self.rng: ids stay seeded
                link.transport.send_ping(payload)
                state.pings[payload] = now
                state.next_ping = now + o.ping_interval_s

    def send(self, link: Link, payload: bytes) -> None:
        state: _LinkState = link.state
        if self.stalled or state.closing:
            return
        super().send(link, payload)
        buffered = link.transport.underlying_transport.get_write_buffer_size()
        if buffered > self.options.max_buffer_bytes:
            self._cut_slow(link)

    def close_link(self, link: Link, code: WSCloseCode, reason: bytes) -> None:
        """Once per link; from then on it gets no frames (see ``send``)."""
        state: _LinkState = link.state
        if state.closing:
            return
        state.closing = True
        super().close_link(link, code, reason)

    def _cut_slow(self, link: Link) -> None:
        """The venue drops clients that cannot keep up (§4.3): no close frame would get
        through a full buffer, so the socket is aborted."""
        link.state.closing = True
        self.slow_closes += 1
        link.transport.disconnect(graceful=False)

    # ----- faults -----

    def skip_sequence(self, symbol: str) -> None:
        """The next increment of every book stream of ``symbol`` is produced, not sent."""
        self._check_symbol(symbol)
        for gs in self._pairs[symbol].streams.values():
            gs.skip = True

    def resume(self) -> None:
        """End a stall; no pings went out meanwhile, so no link is late for a pong."""
        super().resume()
        now = self.clock()
        for link in self.links.values():
            state: _LinkState = link.state
            state.pings.clear()
            state.last_alive = max(state.last_alive, now)
            state.next_ping = now

    def full_snapshot(self, symbol: str) -> None:
        """Every book stream of ``symbol`` pushes an extra ``full:true`` book next tick."""
        self._check_symbol(symbol)
        for gs in self._pairs[symbol].streams.values():
            gs.full = True

    def upgrade(self, close_after_s: float | None = None) -> int:
        """Send the ``event:"upgrade"`` message (§4.4, shape a guess), then close."""
        now_ns = self.venue_ns()
        body = encode({"time": now_ns // 10**9, "time_ms": now_ns // 10**6, "channel": "",
                       "event": "upgrade"})
        links = list(self.links.values())
        for link in links:
            self.send(link, body)
        delay = self.options.upgrade_close_s if close_after_s is None else close_after_s
        self.close_later(links, delay, b"server upgrade")
        return len(links)

    def slow_consumer(self) -> int:
        """Cut every link as the venue cuts one that fell behind. Returns how many."""
        links = [link for link in self.links.values() if not link.state.closing]
        for link in links:
            self._cut_slow(link)
        return len(links)

    # ----- publishing -----

    def _views(self, symbol: str) -> dict[int, tuple[Book, Book]]:
        return views(self.model.book(self.venue, symbol), (d for _, _, d in STREAMS))

    def _book_frame(
        self,
        p: _Pair,
        channel: str,
        param: Any,
        gs: _BookStream,
        full: bool,
        first: int,
        last: int,
        bids: Book,
        asks: Book,
        ts: int,
    ) -> bytes:
        b, a = text_levels(bids, True), text_levels(asks, False)
        if channel == OBU:
            result: dict[str, Any] = {"t": ts - 1}
            if full:
                result |= {"full": True, "s": f"ob.{p.name}.{param}", "u": last, "b": b, "a": a}
            else:
                result |= {"s": f"ob.{p.name}.{param}", "u": last, "U": first, "b": b, "a": a}
            return encode({"channel": OBU, "result": result, "time_ms": ts, "event": "update"})
        result = {"t": ts - 1}
        if full:
            result |= {"full": True, "l": str(gs.depth)}
        result |= {"e": "depthUpdate", "E": ts // 1000, "s": p.name, "U": first, "u": last,
                   "b": b, "a": a}
        return encode({"time": ts // 1000, "time_ms": ts, "channel": UPDATE, "event": "update",
                       "result": result})

    def publish(self, step: Step, now_ns: int) -> None:
        ts = now_ns // 1_000_000
        frames: dict[SubKey, list[bytes]] = {}
        trades = self.trades_by_symbol(step)
        for symbol, p in self._pairs.items():
            diff = step.diffs.get((self.venue, symbol))
            if diff:
                p.id += len(diff) + self.rng.randint(0, 3)  # some changes no stream shows
                p.last_change_ms = ts
            pending = any(gs.full for gs in p.streams.values())
            views = self._views(symbol) if diff or pending else None
            for (channel, param), gs in p.streams.items():
                if views is None:
                    continue
                key = (channel, symbol, param)
                bids, asks = views[gs.depth]
                if gs.full:
                    gs.full = False
                    first = gs.last_u + 1 if p.id > gs.last_u else p.id
                    gs.bids, gs.asks, gs.last_u = bids, asks, p.id
                    frames[key] = [self._book_frame(p, channel, param, gs, True, first, p.id,
                                                    bids, asks, ts)]
                    continue
                db, da = delta(gs.bids, bids), delta(gs.asks, asks)
                if not (db or da):
                    continue
                first = gs.last_u + 1
                gs.bids, gs.asks, gs.last_u = bids, asks, p.id
                if gs.skip:
                    gs.skip = False  # produced, never sent: the gap
                    continue
                frames[key] = [self._book_frame(p, channel, param, gs, False, first, p.id,
                                                db, da, ts)]
            for trade in trades.get(symbol, ()):
                frames.setdefault((TRADES, symbol, None), []).append(
                    self._trade_frame(p, trade, now_ns))
            top = self.model.book(self.venue, symbol).top()
            if top is not None and top != p.top:
                p.top = top
                result = {"t": ts - 1, "u": p.id, "s": p.name, "b": gate_str(top[0]),
                          "B": gate_str(top[1]), "a": gate_str(top[2]), "A": gate_str(top[3])}
                frames[(BOOK_TICKER, symbol, None)] = [encode({
                    "time": ts // 1000, "time_ms": ts, "channel": BOOK_TICKER,
                    "event": "update", "result": result})]
        self._deliver(frames)

    def _trade_frame(self, p: _Pair, trade: SimTrade, now_ns: int) -> bytes:
        self._trade_id += self.rng.randint(1, 20)  # global ids: other markets trade too
        p.id_market += 1
        result = {
            "id": self._trade_id, "id_market": p.id_market, "create_time": now_ns // 10**9,
            "create_time_ms": _ms_text(now_ns), "side": trade.taker_side,
            "currency_pair": p.name, "amount": f"{trade.size:.10f}",
            "price": f"{trade.price:.10f}", "range": f"{self._trade_id}-{self._trade_id}",
        }
        ts = now_ns // 1_000_000
        return encode({"time": ts // 1000, "time_ms": ts, "channel": TRADES, "event": "update",
                       "result": result})

    def _deliver(self, frames: dict[SubKey, list[bytes]]) -> None:
        if self.stalled or not frames:
            return
        for link in list(self.links.values()):
            state: _LinkState = link.state
            for key in list(state.subs):
                if state.closing:
                    break
                for frame in frames.get(key, ()):
                    self.send(link, frame)

    # ----- REST -----

    def rest_routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v4/spot/order_book", self._rest_order_book),
            web.get("/api/v4/spot/currency_pairs", self._rest_pairs),
            web.get("/api/v4/spot/currency_pairs/{pair}", self._rest_pair),
            web.get("/api/v4/spot/time", self._rest_time),
        ]

    def _bad_pair(self, name: str) -> web.Response:
        return json_response({"label": "INVALID_CURRENCY_PAIR",
                              "message": f"Invalid currency pair {name}"}, 400)

    async def _rest_order_book(self, request: web.Request) -> web.Response:
        name = request.query.get("currency_pair", "")
        if not name:
            return json_response({"label": "MISSING_REQUIRED_PARAM",
                                  "message": "Missing required parameter: currency_pair"}, 400)
        symbol = self._by_name.get(name)
        if symbol is None:
            return self._bad_pair(name)
        try:
            limit = int(request.query.get("limit", "10"))
        except ValueError:
            return json_response({"label": "INVALID_PARAM_VALUE",
                                  "message": "Invalid parameter value: limit"}, 400)
        limit = max(1, min(limit, self.options.rest_max_limit))
        p = self._pairs[symbol]
        book = self.model.book(self.venue, symbol)
        body: dict[str, Any] = {}
        if request.query.get("with_id", "false") == "true":
            body["id"] = p.id
        body |= {
            "current": self.venue_ns() // 1_000_000, "update": p.last_change_ms,
            "asks": text_levels(best(book.asks, limit, False), False),
            "bids": text_levels(best(book.bids, limit, True), True),
        }
        return await respond_late(json_response(body), self.options.rest_delay_s)

    def _pair_info(self, symbol: str) -> dict[str, Any]:
        inst = self.model.instruments[symbol]
        return {
            "id": self._pairs[symbol].name, "base": inst.base, "base_name": inst.base,
            "quote": inst.quote, "quote_name": inst.quote, "fee": "0.2",
            "min_base_amount": gate_str(inst.lot), "min_quote_amount": "3",
            "max_quote_amount": "5000000", "amount_precision": decimals(inst.lot),
            "precision": decimals(inst.tick), "trade_status": "tradable",
            "sell_start": 0, "buy_start": 0, "delisting_time": 0, "type": "normal",
        }

    async def _rest_pairs(self, request: web.Request) -> web.Response:
        return json_response([self._pair_info(s) for s in self._pairs])

    async def _rest_pair(self, request: web.Request) -> web.Response:
        name = request.match_info["pair"]
        symbol = self._by_name.get(name)
        if symbol is None:
            return self._bad_pair(name)
        return json_response(self._pair_info(symbol))

    async def _rest_time(self, request: web.Request) -> web.Response:
        return json_response({"server_time": self.venue_ns() // 1_000_000})
