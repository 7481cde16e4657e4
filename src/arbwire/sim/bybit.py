"""Bybit v5 public market data, simulated: ``/v5/public/spot``, ``/v5/public/linear`` and
the REST market endpoints.

Wire facts from ../shared/docs/exchange-protocols.md §2 and §6, built here from the
model's own books (never from arbwire's client code):

* ``{"op":"subscribe","args":[..],"req_id":..}`` gets **one** reply per request. Spot:
  ``ret_msg:"subscribe"`` and no ``req_id`` key unless one was sent; linear:
  ``ret_msg:""`` and ``req_id:""`` when none was sent; ``req_id`` is echoed as a string.
  One unknown symbol (or unknown topic) fails the whole request with ``success:false``
  and a ``ret_msg`` naming the topic; none of its topics is subscribed. Spot refuses
  more than 10 args (``"args size >10"``).
* ``orderbook.{1,50,200,1000}.SYM``: a ``snapshot`` on subscribe, then ``delta``s of the
  top-N view (levels leaving the view are deleted with ``"0"``). ``u`` is one counter per
  topic shared by every link, +1 per message; ``seq`` is one cross sequence per symbol
  and category that grows by varying amounts. ``orderbook.1`` is snapshot-only and is
  re-pushed with the same ``u`` after ``level1_repeat_s`` without change. Key order is
  copied: ``ts`` before ``type`` on spot and on linear level 1, after it otherwise.
* ``publicTrade.SYM`` (spot ids numeric strings without ``L``; linear UUIDs with ``L``)
  and ``tickers.SYM`` (spot: snapshots without bid/ask; linear: a snapshot, then deltas
  of the changed fields, ``bid1Price``.. included).
* ``{"op":"ping"}`` -> pong reply (spot without ``req_id`` unless sent, linear with).
  A link with neither a ping nor stream data for ``idle_timeout_s`` (10 min) is cut.
* REST ``/v5/market/orderbook`` carries the ``u`` of the 1000-level stream and the
  current ``seq``; ``/v5/market/instruments-info`` lists spot or linear.

Unconfirmed points are options: the reject text (``reject_style``), whether only pings
keep an idle link alive (``idle_counts_pushes``), the ack/data order (``ack_after_data``).
"""

from __future__ import annotations

import json
import secrets
import string
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web
from picows import WSCloseCode, WSUpgradeRequest

from arbwire.sim.levels import best, decimals, delta, text_levels, views
from arbwire.sim.levels import decimal_text as bybit_str
from arbwire.sim.market import Book, Instrument, MarketModel, SimTrade, Step
from arbwire.sim.server import (
    Link,
    LinkListener,
    RouteResult,
    VenueServer,
    encode,
    housekeeping_every,
    json_response,
    respond_late,
    ws_path,
)

CATEGORIES = ("spot", "linear")
PATHS = {"/v5/public/spot": "spot", "/v5/public/linear": "linear"}
DEPTHS = (1, 50, 200, 1000)
REST_MAX_LIMIT = 1000
REST_DEFAULT_LIMIT = {"spot": 1, "linear": 25}
IDLE_CLOSE = WSCloseCode.GOING_AWAY  # the real close code is undocumented
REJECT_STYLES = ("invalid_symbol", "handler_not_found")
_CONN_CHARS = string.digits + "abcdefghijklmnopqrstuv"


def _conn_id() -> str:
    """An opaque id shaped like the live ones: ``d9tc9msptl6qssdmv0gg-cwel``."""
    head = "".join(secrets.choice(_CONN_CHARS) for _ in range(20))
    tail = "".join(secrets.choice(string.ascii_lowercase) for _ in range(4))
    return f"{head}-{tail}"


@dataclass(frozen=True, slots=True)
class BybitOptions:
    """Timeouts and quirks of the Bybit simulator (defaults are the venue's)."""

    idle_timeout_s: float = 600.0  # §2.4: neither ping nor data for 10 min -> cut
    idle_counts_pushes: bool = True  # False: only {"op":"ping"} keeps a link alive (stricter)
    ack_after_data: bool = False  # True: a subscription's first push precedes its ack (§2.2)
    level1_repeat_s: float = 3.0  # orderbook.1: unchanged snapshot re-pushed (same u)
    reject_style: str = "invalid_symbol"  # or "handler_not_found" (§2.11, both seen live)
    spot_max_args: int = 10
    rest_delay_s: float = 0.0  # REST answers this late, with the book as of the request

    def __post_init__(self) -> None:
        if self.reject_style not in REJECT_STYLES:
            raise ValueError(f"reject_style must be one of {REJECT_STYLES}")


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic; ``symbol`` is None for a well-formed topic of an unknown symbol."""

    name: str
    kind: str  # book | trade | ticker
    symbol: str | None
    depth: int = 0


@dataclass(slots=True)
class _BookStream:
    """One ``orderbook.{depth}.SYM`` topic of one category: its ``u`` and the view sent."""

    u: int
    bids: dict[Decimal, Decimal]
    asks: dict[Decimal, Decimal]
    last_push: float
    skip: bool = False


@dataclass(slots=True)
class _Market:
    """One symbol in one category."""

    category: str
    symbol: str
    name: str  # BTCUSDT
    seq: int
    books: dict[int, _BookStream]
    trade_id: int
    last_price: Decimal
    prev_price: Decimal
    high: Decimal
    low: Decimal
    volume: Decimal = Decimal(0)
    turnover: Decimal = Decimal(0)
    tick_direction: str = "ZeroPlusTick"
    ticker: dict[str, str] = field(default_factory=dict)  # linear: last published fields


@dataclass(slots=True)
class _LinkState:
    category: str
    conn_id: str
    topics: dict[str, Topic] = field(default_factory=dict)
    last_ping: float = 0.0
    closing: bool = False


class BybitServer(VenueServer):
    """Bybit v5 public simulator (spot and linear) over one shared ``MarketModel``."""

    venue = "bybit"
    options_type = BybitOptions
    options: BybitOptions
    faults = VenueServer.faults | {"restart"}

    def __init__(self, model: MarketModel, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._by_name: dict[str, str] = {}  # BTCUSDT -> BTC-USDT
        self._markets: dict[tuple[str, str], _Market] = {}
        now = self.clock()
        for symbol in model.symbols:
            name = symbol.replace("-", "").upper()
            self._by_name[name] = symbol
            views = self._views(symbol)
            mid = model.mid(symbol)
            for category in CATEGORIES:
                books = {
                    depth: _BookStream(self.rng.randrange(10**6, 10**9), *views[depth], now)
                    for depth in DEPTHS
                }
                if category == "spot":
                    trade_id = self.rng.randrange(2 * 10**18, 3 * 10**18)
                else:
                    trade_id = 0
                m = _Market(category, symbol, name, self.rng.randrange(10**9, 10**11), books,
                            trade_id, mid, mid, mid, mid)
                m.volume = model.instruments[symbol].typical_size * 40_000
                m.turnover = m.volume * mid
                m.ticker = self._linear_ticker(m)
                self._markets[(category, symbol)] = m

    # ----- naming -----

    def parse_topic(self, name: str) -> Topic | None:
        """None for a topic this venue has no handler for (unknown kind, bad depth)."""
        parts = name.split(".")
        if len(parts) == 3 and parts[0] == "orderbook" and parts[1].isdigit():
            depth = int(parts[1])
            if depth not in DEPTHS:
                return None
            return Topic(name, "book", self._by_name.get(parts[2]), depth)
        if len(parts) == 2 and parts[0] in ("publicTrade", "tickers"):
            kind = "trade" if parts[0] == "publicTrade" else "ticker"
            return Topic(name, kind, self._by_name.get(parts[1]))
        return None

    # ----- connections -----

    def route(self, request: WSUpgradeRequest) -> RouteResult:
        category = PATHS.get(ws_path(request))
        if category is None:
            return None
        return LinkListener(self, _LinkState(category, _conn_id()))

    def on_connect(self, link: Link) -> None:
        link.state.last_ping = link.opened

    def on_text(self, link: Link, payload: bytes) -> None:
        state: _LinkState = link.state
        try:
            msg = json.loads(payload)
        except ValueError:
            msg = None
        if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
            self._reply(link, "", False, "error:request parse failed", None)
            return
        op, req_id = msg["op"], msg.get("req_id")
        if op == "ping":
            state.last_ping = self.clock()
            self._reply(link, "ping", True, "pong", req_id)
            return
        if op not in ("subscribe", "unsubscribe"):
            self._reply(link, op, False, f"error:unsupported op:{op}", req_id)
            return
        args = msg.get("args")
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            self._reply(link, op, False, "error:args must be a list of topics", req_id)
            return
        if state.category == "spot" and len(args) > self.options.spot_max_args:
            self._reply(link, op, False, f"args size >{self.options.spot_max_args}", req_id)
            return
        topics = [self.parse_topic(a) for a in args]
        unhandled = [a for a, t in zip(args, topics, strict=True) if t is None]
        unknown = [t.name for t in topics if t is not None and t.symbol is None]
        if unhandled or unknown:  # one reply for the whole request: nothing subscribed
            if unhandled or self.options.reject_style == "handler_not_found":
                message = f"error:handler not found,topic:{(unhandled or unknown)[0]}"
            else:
                message = f"Invalid symbol :[{','.join(unknown)}]"
            self._reply(link, op, False, message, req_id)
            return
        ok = "" if state.category == "linear" else op
        if op == "unsubscribe":
            for t in topics:
                assert t is not None
                state.topics.pop(t.name, None)
            self._reply(link, op, True, ok, req_id)
            return
        if not self.options.ack_after_data:
            self._reply(link, op, True, ok, req_id)
        for t in topics:
            assert t is not None
            state.topics[t.name] = t
            frame = self._initial_push(state.category, t)
            if frame is not None:
                self.send(link, frame)
        if self.options.ack_after_data:
            self._reply(link, op, True, ok, req_id)

    def _reply(self, link: Link, op: str, success: bool, ret_msg: str, req_id: Any) -> None:
        state: _LinkState = link.state
        body: dict[str, Any] = {"success": success, "ret_msg": ret_msg, "conn_id": state.conn_id}
        if state.category == "linear":
            body["req_id"] = "" if req_id is None else str(req_id)
        elif req_id is not None:
            body["req_id"] = str(req_id)
        body["op"] = op
        self.send(link, encode(body))

    def _initial_push(self, category: str, topic: Topic) -> bytes | None:
        assert topic.symbol is not None
        m = self._markets[(category, topic.symbol)]
        ts = self.venue_ns() // 1_000_000
        if topic.kind == "book":
            bs = m.books[topic.depth]
            return self._book_frame(m, topic.depth, "snapshot", bs.bids, bs.asks, bs.u, ts)
        if topic.kind == "ticker":
            data = m.ticker if category == "linear" else self._spot_ticker(m)
            return self._ticker_frame(m, "snapshot", data, ts)
        return None  # publicTrade: nothing until the next fill

    def housekeeping_period(self) -> float:
        return housekeeping_every(self.options.idle_timeout_s)

    def housekeep(self, now: float) -> None:
        o = self.options
        for link in list(self.links.values()):
            state: _LinkState = link.state
            if state.closing:
                continue
            last = max(state.last_ping, link.last_out) if o.idle_counts_pushes else state.last_ping
            if now - last >= o.idle_timeout_s:
                state.closing = True
                self.close_link(link, IDLE_CLOSE, b"idle: no ping and no data")

    # ----- faults -----

    def skip_sequence(self, symbol: str) -> None:
        """The next delta of every ``orderbook.{50,200,1000}`` topic of ``symbol`` (both
        categories) is produced (``u`` advances) but not sent."""
        self._check_symbol(symbol)
        for category in CATEGORIES:
            for depth, bs in self._markets[(category, symbol)].books.items():
                if depth > 1:
                    bs.skip = True

    def restart(self, symbol: str) -> None:
        """A service restart (§2.6): every book topic of ``symbol`` starts again at
        ``u = 1`` with a snapshot pushed now; deltas continue from ``u = 2``."""
        self._check_symbol(symbol)
        ts = self.venue_ns() // 1_000_000
        frames: dict[tuple[str, str], list[bytes]] = {}
        for category in CATEGORIES:
            m = self._markets[(category, symbol)]
            for depth, bs in m.books.items():
                bs.u = 1
                bs.skip = False
                frames[(category, f"orderbook.{depth}.{m.name}")] = [
                    self._book_frame(m, depth, "snapshot", bs.bids, bs.asks, 1, ts)
                ]
        self._deliver(frames)

    # ----- frames -----

    def _views(self, symbol: str) -> dict[int, tuple[Book, Book]]:
        return views(self.model.book(self.venue, symbol), DEPTHS)

    @staticmethod
    def _book_frame(
        m: _Market,
        depth: int,
        kind: str,
        bids: dict[Decimal, Decimal],
        asks: dict[Decimal, Decimal],
        u: int,
        ts: int,
    ) -> bytes:
        topic = f"orderbook.{depth}.{m.name}"
        data = {"s": m.name, "b": text_levels(bids, True), "a": text_levels(asks, False), "u": u,
                "seq": m.seq}
        if m.category == "spot" or depth == 1:
            body = {"topic": topic, "ts": ts, "type": kind, "data": data, "cts": ts - 2}
        else:
            body = {"topic": topic, "type": kind, "ts": ts, "data": data, "cts": ts - 2}
        return encode(body)

    def _ticker_frame(self, m: _Market, kind: str, data: dict[str, str], ts: int) -> bytes:
        topic = f"tickers.{m.name}"
        if m.category == "spot":
            return encode({"topic": topic, "ts": ts, "type": kind, "cs": m.seq, "data": data})
        return encode({"topic": topic, "type": kind, "data": data, "cs": m.seq, "ts": ts})

    def _spot_ticker(self, m: _Market) -> dict[str, str]:
        change = (m.last_price / m.prev_price - 1).quantize(Decimal("0.0001"))
        return {
            "symbol": m.name, "lastPrice": bybit_str(m.last_price),
            "highPrice24h": bybit_str(m.high), "lowPrice24h": bybit_str(m.low),
            "prevPrice24h": bybit_str(m.prev_price), "volume24h": bybit_str(m.volume),
            "turnover24h": bybit_str(m.turnover.quantize(Decimal("0.00000001"))),
            "price24hPcnt": bybit_str(change), "usdIndexPrice": bybit_str(m.last_price),
        }

    def _linear_ticker(self, m: _Market) -> dict[str, str]:
        inst = self.model.instruments[m.symbol]
        book = self.model.book(self.venue, m.symbol)
        change = (m.last_price / m.prev_price - 1).quantize(Decimal("0.000001"))
        out = {
            "symbol": m.name, "tickDirection": m.tick_direction,
            "price24hPcnt": bybit_str(change), "lastPrice": bybit_str(m.last_price),
            "prevPrice24h": bybit_str(m.prev_price), "highPrice24h": bybit_str(m.high),
            "lowPrice24h": bybit_str(m.low), "prevPrice1h": bybit_str(m.prev_price),
        }
        bb, ba = book.best_bid(), book.best_ask()
        if bb is not None and ba is not None:
            mark = ((bb + ba) / 2).quantize(inst.tick)
            out |= {"markPrice": bybit_str(mark), "indexPrice": bybit_str(mark)}
        hour_ms = 8 * 3600 * 1000
        out |= {
            "openInterest": "50000", "openInterestValue": bybit_str(50000 * m.last_price),
            "turnover24h": bybit_str(m.turnover.quantize(Decimal("0.0001"))),
            "volume24h": bybit_str(m.volume), "fundingRate": "0.0001",
            "nextFundingTime": str((self.venue_ns() // 1_000_000 // hour_ms + 1) * hour_ms),
        }
        if bb is not None:
            out |= {"bid1Price": bybit_str(bb), "bid1Size": bybit_str(book.bids[bb])}
        if ba is not None:
            out |= {"ask1Price": bybit_str(ba), "ask1Size": bybit_str(book.asks[ba])}
        return out

    def _trade_entry(self, m: _Market, trade: SimTrade, ts: int) -> dict[str, Any]:
        side = "Buy" if trade.taker_side == "buy" else "Sell"
        price, size = bybit_str(trade.price), bybit_str(trade.size)
        if m.category == "spot":
            m.trade_id += 1
            return {"i": str(m.trade_id), "T": ts, "p": price, "v": size, "S": side,
                    "seq": m.seq, "s": m.name, "BT": False, "RPI": False}
        trade_id = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        return {"T": ts, "s": m.name, "S": side, "v": size, "p": price, "L": m.tick_direction,
                "i": trade_id, "BT": False, "RPI": False, "seq": m.seq}

    def _record_trade(self, m: _Market, trade: SimTrade) -> None:
        if trade.price > m.last_price:
            m.tick_direction = "PlusTick"
        elif trade.price < m.last_price:
            m.tick_direction = "MinusTick"
        elif m.tick_direction in ("PlusTick", "MinusTick"):
            m.tick_direction = "Zero" + m.tick_direction
        m.last_price = trade.price
        m.high = max(m.high, trade.price)
        m.low = min(m.low, trade.price)
        m.volume += trade.size
        m.turnover += trade.size * trade.price

    # ----- publishing -----

    def publish(self, step: Step, now_ns: int) -> None:
        ts = now_ns // 1_000_000
        now = self.clock()
        trades = self.trades_by_symbol(step)
        frames: dict[tuple[str, str], list[bytes]] = {}
        for symbol in self.model.symbols:
            diff = step.diffs.get((self.venue, symbol))
            views = self._views(symbol) if diff else None
            for category in CATEGORIES:
                m = self._markets[(category, symbol)]
                if diff:
                    m.seq += self.rng.randint(1, 400)
                self._publish_books(m, views, now, ts, frames)
                fills = trades.get(symbol, ())
                if fills:
                    entries = []
                    for trade in fills:
                        self._record_trade(m, trade)
                        entries.append(self._trade_entry(m, trade, ts))
                    topic = f"publicTrade.{m.name}"
                    if category == "spot":
                        body = {"topic": topic, "ts": ts, "type": "snapshot", "data": entries}
                    else:
                        body = {"topic": topic, "type": "snapshot", "ts": ts, "data": entries}
                    frames[(category, topic)] = [encode(body)]
                self._publish_ticker(m, bool(fills), ts, frames)
        self._deliver(frames)

    def _publish_books(
        self,
        m: _Market,
        views: dict[int, tuple[Book, Book]] | None,
        now: float,
        ts: int,
        frames: dict[tuple[str, str], list[bytes]],
    ) -> None:
        for depth, bs in m.books.items():
            key = (m.category, f"orderbook.{depth}.{m.name}")
            new_bids, new_asks = views[depth] if views is not None else (bs.bids, bs.asks)
            db, da = delta(bs.bids, new_bids), delta(bs.asks, new_asks)
            if db or da:
                bs.bids, bs.asks = new_bids, new_asks
                bs.u += 1
                bs.last_push = now
                if depth == 1:  # level 1 is snapshot-only
                    frames[key] = [self._book_frame(m, 1, "snapshot", bs.bids, bs.asks, bs.u, ts)]
                elif bs.skip:
                    bs.skip = False  # produced, never sent: the gap
                else:
                    frames[key] = [self._book_frame(m, depth, "delta", db, da, bs.u, ts)]
            elif depth == 1 and now - bs.last_push >= self.options.level1_repeat_s:
                bs.last_push = now  # unchanged for 3 s: the same snapshot, the same u
                frames[key] = [self._book_frame(m, 1, "snapshot", bs.bids, bs.asks, bs.u, ts)]

    def _publish_ticker(
        self, m: _Market, traded: bool, ts: int, frames: dict[tuple[str, str], list[bytes]]
    ) -> None:
        key = (m.category, f"tickers.{m.name}")
        if m.category == "spot":
            if traded:  # spot tickers are snapshots and carry no bid/ask
                frames[key] = [self._ticker_frame(m, "snapshot", self._spot_ticker(m), ts)]
            return
        new = self._linear_ticker(m)
        changed = {k: v for k, v in new.items() if m.ticker.get(k) != v and k != "nextFundingTime"}
        m.ticker = new
        if changed:
            frames[key] = [self._ticker_frame(m, "delta", {"symbol": m.name, **changed}, ts)]

    def _deliver(self, frames: dict[tuple[str, str], list[bytes]]) -> None:
        if self.stalled or not frames:
            return
        for link in list(self.links.values()):
            state: _LinkState = link.state
            if state.closing:
                continue
            for name in list(state.topics):
                for frame in frames.get((state.category, name), ()):
                    self.send(link, frame)

    # ----- REST -----

    def rest_routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v5/market/orderbook", self._rest_orderbook),
            web.get("/v5/market/instruments-info", self._rest_instruments),
            web.get("/v5/market/time", self._rest_time),
        ]

    def _json(self, ret_code: int, ret_msg: str, result: Any) -> web.Response:
        return json_response({"retCode": ret_code, "retMsg": ret_msg, "result": result,
                              "retExtInfo": {}, "time": self.venue_ns() // 1_000_000})

    async def _rest_orderbook(self, request: web.Request) -> web.Response:
        category = request.query.get("category", "")
        if category not in CATEGORIES:
            return self._json(10001, "Illegal category", {})
        name = request.query.get("symbol", "")
        symbol = self._by_name.get(name)
        if symbol is None:
            return self._json(10001, "params error: symbol invalid", {})
        try:
            limit = int(request.query.get("limit", REST_DEFAULT_LIMIT[category]))
        except ValueError:
            return self._json(10001, "params error: limit invalid", {})
        limit = max(1, min(limit, REST_MAX_LIMIT))
        m = self._markets[(category, symbol)]
        book = self.model.book(self.venue, symbol)
        ts = self.venue_ns() // 1_000_000
        result = {"s": m.name, "a": text_levels(best(book.asks, limit, False), False),
                  "b": text_levels(best(book.bids, limit, True), True), "ts": ts,
                  "u": m.books[1000].u, "seq": m.seq, "cts": ts - 2}
        return await respond_late(self._json(0, "OK", result), self.options.rest_delay_s)

    def _instrument(self, category: str, m: _Market, inst: Instrument) -> dict[str, Any]:
        tick, lot = bybit_str(inst.tick), bybit_str(inst.lot)
        if category == "spot":
            return {
                "symbol": m.name, "baseCoin": inst.base, "quoteCoin": inst.quote,
                "innovation": "0", "status": "Trading", "marginTrading": "utaOnly", "stTag": "0",
                "lotSizeFilter": {"basePrecision": lot, "quotePrecision": "0.00000001",
                                  "minOrderQty": lot, "maxOrderQty": "10000", "minOrderAmt": "1",
                                  "maxOrderAmt": "4000000"},
                "priceFilter": {"tickSize": tick},
                "riskParameters": {"priceLimitRatioX": "0.005", "priceLimitRatioY": "0.01"},
            }
        return {
            "symbol": m.name, "contractType": "LinearPerpetual", "status": "Trading",
            "baseCoin": inst.base, "quoteCoin": inst.quote, "launchTime": "1585526400000",
            "deliveryTime": "0", "deliveryFeeRate": "",
            "priceScale": str(decimals(inst.tick)),
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {"minPrice": tick, "maxPrice": "1999999.80", "tickSize": tick},
            "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": lot, "qtyStep": lot,
                              "postOnlyMaxOrderQty": "1190.000", "maxMktOrderQty": "500.000",
                              "minNotionalValue": "5"},
            "unifiedMarginTrade": True, "fundingInterval": 480, "settleCoin": inst.quote,
            "copyTrading": "both", "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375",
        }

    async def _rest_instruments(self, request: web.Request) -> web.Response:
        category = request.query.get("category", "")
        if category not in CATEGORIES:
            return self._json(10001, "Illegal category", {})
        wanted = request.query.get("symbol")
        items = [
            self._instrument(category, self._markets[(category, symbol)], inst)
            for symbol, inst in self.model.instruments.items()
            if wanted is None or wanted == self._markets[(category, symbol)].name
        ]
        cursor = ""
        if category == "linear":  # paginated: limit (default 500, max 1000) and cursor
            try:
                limit = max(1, min(int(request.query.get("limit", "500")), 1000))
                start = int(request.query.get("cursor") or 0)
            except ValueError:
                return self._json(10001, "params error: limit or cursor invalid", {})
            if start + limit < len(items):
                cursor = str(start + limit)
            items = items[start : start + limit]
        return self._json(0, "OK", {"category": category, "list": items,
                                    "nextPageCursor": cursor})

    async def _rest_time(self, request: web.Request) -> web.Response:
        now = self.venue_ns()
        return self._json(0, "OK", {"timeSecond": str(now // 10**9), "timeNano": str(now)})
