"""HTX (Huobi) spot public market data, simulated: ``/ws``, ``/feed`` and the symbol list.

Wire facts from ../shared/docs/exchange-protocols.md §5 (and the §6 checklist), built
here from the model's own books (never from arbwire's client code):

* EVERY server frame is gzip-compressed binary: data, acks, errors and pings.
  Client frames are plain JSON text (binary JSON is accepted too).
* ``{"sub": topic | [topics], "id": ..}`` -> one ``{"id","status":"ok","subbed",
  "ts"}`` per topic; ``unsub`` likewise (``unsubbed``); errors are
  ``{"status":"error","ts","id","err-code":"bad-request","err-msg":..}`` with
  ``invalid symbol xyz`` (well-formed topic, unknown symbol), ``invalid topic
  market.x.y`` (unknown shape, or not served on this path), ``unsub with not
  subbed topic``, ``429 too many request``, ``not json string``.
* ``/feed``: ``market.SYM.mbp.{5,20,150,400}`` increments and ``market.SYM.
  mbp.refresh.{5,10,20}`` full refreshes. Each mbp topic is the diff of the top-N
  view of the book (a level pushed out of the top N is sent as a delete, one
  moving in as an add). ``seqNum`` comes from one per-symbol counter that steps
  by varying amounts; ``prevSeqNum`` is the topic's previous ``seqNum``, the only
  chain that holds. 150/400 push every step (100 ms) with both sides, an
  unchanged side as ``[]``, even when nothing changed (then, with the market idle,
  ``seqNum == prevSeqNum``). 5/20 are tick-by-tick: they push only when their view
  changed, and with ``split_sides`` one frame per changed side (the side order is
  chosen so no intermediate view is crossed).
* ``{"req": "market.SYM.mbp.N", "id"}`` on ``/feed`` -> ``{"id","status":"ok",
  "ts","rep","data":{"bids","asks","seqNum"}}`` for N in 5/20/150; N = 400 gets
  ``"data": null``. At most one ``req`` per ``req_interval_s`` per link. A ``rep``
  can be made late (``rep_delay_s``, fault ``late_rep``): it holds the book as of
  the request and goes out after newer increments.
* ``/ws``: ``market.SYM.depth.step0`` (top ``depth_levels`` both sides every
  ``depth_interval_s``, with ``version``), ``market.SYM.bbo`` (on every change of
  the top), ``market.SYM.trade.detail`` (``id`` a ~27-digit JSON number,
  ``tradeId``, ``direction`` = taker side, ``isRpiTrade``).
* Prices and sizes are JSON NUMBERS in the form Java's ``Double.toString`` prints
  (``710.0``, ``0.1``, ``1.8E-4``, ``1.1111111E7``), made from the model's exact
  Decimal digits (``htx_num``), so the text denotes exactly the model's value.
  ``mbp`` increments, refreshes and reps print integral values bare (``9144``,
  deletes as ``0``), as the 2020 capture does; depth/bbo/trades as ``710.0``.
* The server sends ``{"ping": ms}`` every ``ping_interval_s`` on both paths; the
  client answers ``{"pong": same}``. When ``max_missed_pings`` pings are
  outstanding at the next ping time, the link is closed. A non-integer pong gets
  ``invalid ping``.

Not simulated: ``depth.step1..5`` aggregation, ``kline``/``ticker``, the 30-symbol
limit of ``mbp.20`` and any subscription-count limit (all unconfirmed or out of
scope); with ``strict_paths=False`` both paths serve every topic.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import msgspec
from aiohttp import web
from picows import WSCloseCode, WSMsgType, WSUpgradeRequest

from arbwire.sim.levels import best, decimal_text, decimals, delta
from arbwire.sim.market import Book, MarketModel, Step
from arbwire.sim.server import (
    FaultError,
    Link,
    LinkListener,
    RouteResult,
    VenueServer,
    answer_pings,
    encode,
    housekeeping_every,
    json_response,
    ws_path,
)

WS_PATH = "/ws"
FEED_PATH = "/feed"
MBP_LEVELS = (5, 20, 150, 400)
REQ_LEVELS = frozenset({5, 20, 150})
REFRESH_LEVELS = (5, 10, 20)
PING_CLOSE = WSCloseCode.OK  # close code after missed pongs: unconfirmed, clients must not rely on it


def htx_num(value: Decimal, *, bare_ints: bool = False) -> str:
    """The exact value as a JSON number in Java ``Double.toString`` form.

    ``Decimal("710")`` -> ``710.0``; ``Decimal("0.00018")`` -> ``1.8E-4``;
    ``Decimal("40000000")`` -> ``4.0E7``: plain for 1e-3 <= |x| < 1e7, else
    scientific with at least one fractional digit, as HTX prints its doubles in
    ``depth``, ``bbo`` and ``trade.detail``. With ``bare_ints`` an integral value in
    the plain range has no ``.0`` (``9144``, ``0``), as captured ``mbp`` frames show.
    """
    if not value.is_finite():
        raise ValueError(f"not a finite number: {value}")
    if value == 0:
        return "0" if bare_ints else "0.0"
    v = value.normalize()
    sign = "-" if v.is_signed() else ""
    v = abs(v)
    adjusted = v.adjusted()
    if -3 <= adjusted < 7:
        text = format(v, "f")
        return sign + (text if "." in text or bare_ints else text + ".0")
    digits = "".join(map(str, v.as_tuple().digits))
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{adjusted}"


def _raw_levels(pairs: Iterable[tuple[Decimal, Decimal]], bare_ints: bool = False) -> msgspec.Raw:
    body = ",".join(f"[{htx_num(p, bare_ints=bare_ints)},{htx_num(s, bare_ints=bare_ints)}]" for p, s in pairs)
    return msgspec.Raw(f"[{body}]".encode())


def gz(payload: bytes) -> bytes:
    """One gzip member, as every HTX frame is (mtime 0: frames are reproducible)."""
    return gzip.compress(payload, compresslevel=6, mtime=0)


@dataclass(frozen=True, slots=True)
class HtxOptions:
    """Timeouts and quirks of the HTX simulator (defaults are the venue's)."""

    ping_interval_s: float = 5.0
    max_missed_pings: int = 2  # close when this many pings are unanswered at the next ping time
    req_interval_s: float = 0.1  # at most one req per this long per link
    rep_delay_s: float = 0.0  # every rep this late, holding the book as of the request
    late_rep_s: float = 0.3  # default delay of the late_rep fault
    depth_interval_s: float = 1.0
    depth_levels: int = 150
    split_sides: bool = True  # mbp.5/20: one frame per changed side, as tick-by-tick pushes do
    strict_paths: bool = True  # False: /ws and /feed both serve every topic
    rpi_field: bool = True  # trades carry "isRpiTrade": false (2026 captures)


@dataclass(slots=True)
class _LinkState:
    path: str  # "/ws" or "/feed"
    subs: dict[str, None] = field(default_factory=dict)
    pings: dict[int, float] = field(default_factory=dict)  # ping value -> sent at
    next_ping: float = 0.0
    last_ping: int = 0
    last_req: float | None = None
    closing: bool = False


@dataclass(slots=True)
class _View:
    """One ``mbp.N`` topic of one symbol: the top-N view it has published, and its chain."""

    levels: int
    bids: Book
    asks: Book
    seq: int  # seqNum of the last increment produced (sent or not)
    skip: bool = False
    empty: bool = False


@dataclass(slots=True)
class _SymState:
    name: str  # btcusdt
    seq: int
    views: dict[int, _View]
    trade_id: int
    tick_id: int
    top: tuple[Decimal, Decimal, Decimal, Decimal] | None = None


@dataclass(slots=True)
class _LateRep:
    symbol: str | None
    delay_s: float
    count: int


def _crossed(bids: Book, asks: Book) -> bool:
    return bool(bids and asks) and max(bids) >= min(asks)


class HtxServer(VenueServer):
    """HTX spot simulator over one shared ``MarketModel``."""

    venue = "htx"
    options_type = HtxOptions
    options: HtxOptions
    faults = VenueServer.faults | {"late_rep", "empty_diff"}

    def __init__(self, model: MarketModel, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._syms: dict[str, _SymState] = {}
        self._by_name: dict[str, str] = {}  # btcusdt -> BTC-USDT
        for symbol in model.symbols:
            inst = model.instruments[symbol]
            name = (inst.base + inst.quote).lower()
            seq = self.rng.randrange(10**10, 10**11)
            book = model.book(self.venue, symbol)
            views = {
                n: _View(n, best(book.bids, n, True), best(book.asks, n, False), seq)
                for n in MBP_LEVELS
            }
            self._syms[symbol] = _SymState(
                name, seq, views,
                trade_id=self.rng.randrange(10**11, 10**12),
                tick_id=self.rng.randrange(10**11, 10**12),
            )
            self._by_name[name] = symbol
        self._late: list[_LateRep] = []
        self._last_depth = self.clock()

    # ----- sending -----

    def send(self, link: Link, payload: bytes) -> None:
        """Every HTX server frame is gzip-compressed binary."""
        self.send_gz(link, gz(payload))

    def send_gz(self, link: Link, data: bytes) -> None:
        self._send_frame(link, WSMsgType.BINARY, data)

    def _ms(self) -> int:
        return self.venue_ns() // 1_000_000

    # ----- connections -----

    def route(self, request: WSUpgradeRequest) -> RouteResult:
        path = ws_path(request)
        if path not in (WS_PATH, FEED_PATH):
            return None
        return LinkListener(self, _LinkState(path=path))

    def on_connect(self, link: Link) -> None:
        link.state.next_ping = link.opened + self.options.ping_interval_s

    def on_text(self, link: Link, payload: bytes) -> None:
        try:
            msg = json.loads(payload)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            self._error(link, None, "not json string")
            return
        rid = msg.get("id")
        if "pong" in msg:
            self._on_pong(link, msg["pong"], rid)
        elif "ping" in msg:
            self.send(link, encode({"pong": msg["ping"]}))
        elif "sub" in msg:
            self._on_sub(link, msg["sub"], rid, True)
        elif "unsub" in msg:
            self._on_sub(link, msg["unsub"], rid, False)
        elif "req" in msg:
            self._on_req(link, msg["req"], rid)
        else:
            self._error(link, rid, "invalid request")

    def _error(self, link: Link, rid: Any, message: str) -> None:
        body: dict[str, Any] = {"status": "error", "ts": self._ms()}
        if rid is not None:
            body["id"] = rid
        body |= {"err-code": "bad-request", "err-msg": message}
        self.send(link, encode(body))

    def _on_pong(self, link: Link, value: Any, rid: Any) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            self._error(link, rid, "invalid ping")
            return
        answer_pings(link.state.pings, value)  # ping values and send times rise together

    def parse_topic(self, topic: Any, path: str) -> tuple[str, str, int] | str:
        """``(kind, symbol, n)`` for a topic this path serves, else the error message."""
        if not isinstance(topic, str):
            return f"invalid topic {topic}"
        parts = topic.split(".")
        if len(parts) < 3 or parts[0] != "market":
            return f"invalid topic {topic}"
        rest = parts[2:]
        kind, n = "", 0
        if len(rest) == 2 and rest[0] == "mbp" and rest[1] in {str(x) for x in MBP_LEVELS}:
            kind, n = "mbp", int(rest[1])
        elif len(rest) == 3 and rest[:2] == ["mbp", "refresh"] and rest[2] in {str(x) for x in REFRESH_LEVELS}:
            kind, n = "refresh", int(rest[2])
        elif rest == ["depth", "step0"]:
            kind = "depth"
        elif rest == ["bbo"]:
            kind = "bbo"
        elif rest == ["trade", "detail"]:
            kind = "trade"
        if not kind:
            return f"invalid topic {topic}"
        if self.options.strict_paths:
            on_feed = kind in ("mbp", "refresh")
            if on_feed != (path == FEED_PATH):
                return f"invalid topic {topic}"
        symbol = self._by_name.get(parts[1])
        if symbol is None:
            return f"invalid symbol {parts[1]}"
        return kind, symbol, n

    def _on_sub(self, link: Link, topics: Any, rid: Any, sub: bool) -> None:
        state: _LinkState = link.state
        items = topics if isinstance(topics, list) else [topics]
        if not items:
            self._error(link, rid, "invalid topic []")
            return
        for topic in items:
            parsed = self.parse_topic(topic, state.path)
            if isinstance(parsed, str):
                self._error(link, rid, parsed)
                continue
            if not sub and topic not in state.subs:
                self._error(link, rid, "unsub with not subbed topic")
                continue
            ack: dict[str, Any] = {} if rid is None else {"id": rid}
            ack |= {"status": "ok", "subbed" if sub else "unsubbed": topic, "ts": self._ms()}
            self.send(link, encode(ack))
            if sub:
                state.subs[topic] = None
            else:
                state.subs.pop(topic, None)

    def _on_req(self, link: Link, topic: Any, rid: Any) -> None:
        state: _LinkState = link.state
        parsed = self.parse_topic(topic, state.path)
        if isinstance(parsed, str):
            self._error(link, rid, parsed)
            return
        kind, symbol, n = parsed
        if kind != "mbp":
            self._error(link, rid, f"invalid topic {topic}")
            return
        now = self.clock()
        if state.last_req is not None and now - state.last_req < self.options.req_interval_s:
            self._error(link, rid, "429 too many request")
            return
        state.last_req = now
        data: msgspec.Raw | dict[str, Any]
        if n not in REQ_LEVELS:
            data = msgspec.Raw(b"null")
        else:
            view = self._syms[symbol].views[n]
            data = {
                "bids": _raw_levels(sorted(view.bids.items(), reverse=True), True),
                "asks": _raw_levels(sorted(view.asks.items()), True),
                "seqNum": view.seq,
            }
        body: dict[str, Any] = {} if rid is None else {"id": rid}
        body |= {"status": "ok", "ts": self._ms(), "rep": topic, "data": data}
        frame = gz(encode(body))  # the book as of now, however late it goes out
        delay = self._rep_delay(symbol)
        if delay <= 0:
            self.send_gz(link, frame)
            return

        def late() -> None:
            if self.links.get(link.id) is link:
                self.send_gz(link, frame)

        self.later(delay, late)

    def _rep_delay(self, symbol: str) -> float:
        for item in self._late:
            if item.symbol is None or item.symbol == symbol:
                item.count -= 1
                if item.count <= 0:
                    self._late.remove(item)
                return item.delay_s
        return self.options.rep_delay_s

    def housekeeping_period(self) -> float:
        return housekeeping_every(self.options.ping_interval_s)

    def housekeep(self, now: float) -> None:
        o = self.options
        for link in list(self.links.values()):
            state: _LinkState = link.state
            if state.closing or now < state.next_ping:
                continue
            if len(state.pings) >= o.max_missed_pings:
                state.closing = True
                self.close_link(link, PING_CLOSE, b"heartbeat timeout")
                continue
            value = max(self._ms(), state.last_ping + 1)
            state.last_ping = value
            state.pings[value] = now
            state.next_ping = now + o.ping_interval_s
            self.send(link, encode({"ping": value}))

    # ----- faults -----

    def skip_sequence(self, symbol: str, levels: int | None = None) -> None:
        """The next mbp increment(s) of ``symbol`` (every level, or ``mbp.levels``) are
        produced (``seqNum`` advances) but not sent: the next ``prevSeqNum`` breaks."""
        self._check_symbol(symbol)
        for view in self._views(symbol, levels):
            view.skip = True

    def late_rep(
        self, symbol: str | float | None = None, delay_s: float | None = None, count: int = 1
    ) -> None:
        """The next ``count`` reps (for ``symbol``, or any; a number here is the delay) hold
        the book as of the request but go out ``delay_s`` later, after newer increments."""
        if isinstance(symbol, int | float):  # late_rep(0.5): a delay, any symbol
            symbol, delay_s = None, float(symbol)
        if symbol is not None:
            self._check_symbol(symbol)
        delay = self.options.late_rep_s if delay_s is None else float(delay_s)
        self._late.append(_LateRep(symbol, delay, max(1, int(count))))

    def empty_diff(self, symbol: str, levels: int | None = None) -> None:
        """The next push of ``symbol``'s mbp topics is preceded by an increment with both
        sides empty whose ``seqNum`` advances (changes that left the view as it was)."""
        self._check_symbol(symbol)
        for view in self._views(symbol, levels):
            view.empty = True

    def _views(self, symbol: str, levels: int | None) -> list[_View]:
        views = self._syms[symbol].views
        if levels is None:
            return list(views.values())
        if levels not in views:
            raise FaultError(f"{self.venue}: no mbp level {levels}; known: {list(MBP_LEVELS)}")
        return [views[levels]]

    def send_raw(self, payload: bytes | str, binary: bool = False, compress: bool = False) -> int:
        """Push an arbitrary frame to every link, even when stalled; ``compress`` gzips it
        (and sends it binary, as HTX does)."""
        if compress:
            payload, binary = gz(payload.encode() if isinstance(payload, str) else payload), True
        return super().send_raw(payload, binary)

    # ----- publishing -----

    def publish(self, step: Step, now_ns: int) -> None:
        ts = now_ns // 1_000_000
        now = self.clock()
        wanted: set[str] = set()
        for link in self.links.values():
            wanted.update(link.state.subs)
        frames: dict[str, list[bytes]] = {}
        trades = self.trades_by_symbol(step)
        depth_due = now - self._last_depth >= self.options.depth_interval_s - 1e-6
        if depth_due:
            self._last_depth = now
        for symbol, st in self._syms.items():
            self._publish_mbp(symbol, st, step, ts, wanted, frames)
            book = self.model.book(self.venue, symbol)
            for n in REFRESH_LEVELS:
                topic = f"market.{st.name}.mbp.refresh.{n}"
                if topic in wanted:
                    tick = {"seqNum": st.seq,
                            "bids": _raw_levels(best(book.bids, n, True).items(), True),
                            "asks": _raw_levels(best(book.asks, n, False).items(), True)}
                    frames[topic] = [gz(encode({"ch": topic, "ts": ts, "tick": tick}))]
            top = book.top()
            if top is not None and top != st.top:
                st.top = top
                topic = f"market.{st.name}.bbo"
                if topic in wanted:
                    tick = {"seqId": st.seq, "ask": msgspec.Raw(htx_num(top[2]).encode()),
                            "askSize": msgspec.Raw(htx_num(top[3]).encode()),
                            "bid": msgspec.Raw(htx_num(top[0]).encode()),
                            "bidSize": msgspec.Raw(htx_num(top[1]).encode()),
                            "quoteTime": ts, "symbol": st.name}
                    frames[topic] = [gz(encode({"ch": topic, "ts": ts, "tick": tick}))]
            if symbol in trades:
                topic = f"market.{st.name}.trade.detail"
                data = []
                st.tick_id += self.rng.randint(1, 500)
                for t in trades[symbol]:
                    st.trade_id += self.rng.randint(1, 20)
                    item: dict[str, Any] = {
                        "id": st.tick_id * 10**15 + self.rng.randrange(10**14, 10**15), "ts": ts,
                        "tradeId": st.trade_id, "amount": msgspec.Raw(htx_num(t.size).encode()),
                        "price": msgspec.Raw(htx_num(t.price).encode()), "direction": t.taker_side,
                    }
                    if self.options.rpi_field:
                        item["isRpiTrade"] = False
                    data.append(item)
                if topic in wanted:
                    body = {"ch": topic, "ts": ts, "tick": {"id": st.tick_id, "ts": ts, "data": data}}
                    frames[topic] = [gz(encode(body))]
            topic = f"market.{st.name}.depth.step0"
            if depth_due and topic in wanted:
                n = self.options.depth_levels
                tick = {"bids": _raw_levels(best(book.bids, n, True).items()),
                        "asks": _raw_levels(best(book.asks, n, False).items()),
                        "version": st.seq, "ts": ts}
                frames[topic] = [gz(encode({"ch": topic, "ts": ts, "tick": tick}))]
        self._deliver(frames)

    def _publish_mbp(
        self, symbol: str, st: _SymState, step: Step, ts: int, wanted: set[str],
        frames: dict[str, list[bytes]],
    ) -> None:
        rng = self.rng
        diff = step.diffs.get((self.venue, symbol))
        empty_seq = 0
        if any(v.empty for v in st.views.values()):
            st.seq += rng.randint(1, 40)
            empty_seq = st.seq
        mid_seq = end_seq = st.seq
        new_bids: list[Decimal] = []
        new_asks: list[Decimal] = []
        book = self.model.book(self.venue, symbol)
        if diff:
            st.seq += rng.randint(1, 40)
            mid_seq = st.seq
            st.seq += rng.randint(1, 40)
            end_seq = st.seq
            new_bids = sorted(book.bids, reverse=True)
            new_asks = sorted(book.asks)
        for n, view in st.views.items():
            topic = f"market.{st.name}.mbp.{n}"
            # (seqNum, bids or None to omit the key, asks or None)
            out: list[tuple[int, dict[Decimal, Decimal] | None, dict[Decimal, Decimal] | None]] = []
            if view.empty:
                view.empty = False
                out.append((empty_seq, {}, {}))
            if diff:
                bids = {p: book.bids[p] for p in new_bids[:n]}
                asks = {p: book.asks[p] for p in new_asks[:n]}
                db, da = delta(view.bids, bids), delta(view.asks, asks)
                if n in (150, 400):
                    out.append((end_seq, db, da))
                elif db and da and self.options.split_sides:
                    if not _crossed(bids, view.asks):  # bids first keeps the view uncrossed
                        out += [(mid_seq, db, None), (end_seq, None, da)]
                    elif not _crossed(view.bids, asks):
                        out += [(mid_seq, None, da), (end_seq, db, None)]
                    else:
                        out.append((end_seq, db, da))
                elif db or da:
                    out.append((end_seq, db or None, da or None))
                view.bids, view.asks = bids, asks
            elif n in (150, 400) and not out:  # the 100 ms push of an idle market
                out.append((view.seq, {}, {}))
            sent: list[bytes] = []
            prev = view.seq
            for seq, b, a in out:
                dropped = view.skip and seq != prev  # skip_sequence: only a frame that advances
                if dropped:
                    view.skip = False
                elif topic in wanted:
                    tick: dict[str, Any] = {"seqNum": seq, "prevSeqNum": prev}
                    if a is not None:
                        tick["asks"] = _raw_levels(sorted(a.items()), True)
                    if b is not None:
                        tick["bids"] = _raw_levels(sorted(b.items(), reverse=True), True)
                    sent.append(gz(encode({"ch": topic, "ts": ts, "tick": tick})))
                prev = seq
            view.seq = prev
            if sent:
                frames[topic] = sent

    def _deliver(self, frames: dict[str, list[bytes]]) -> None:
        if self.stalled or not frames:
            return
        for link in list(self.links.values()):
            subs = link.state.subs
            for topic, datas in frames.items():
                if topic in subs:
                    for data in datas:
                        self.send_gz(link, data)

    # ----- REST -----

    def rest_routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/common/symbols", self._rest_symbols),
            web.get("/v1/common/timestamp", self._rest_timestamp),
        ]

    async def _rest_symbols(self, request: web.Request) -> web.Response:
        data = []
        for symbol, st in self._syms.items():
            inst = self.model.instruments[symbol]
            data.append({
                "base-currency": inst.base.lower(), "quote-currency": inst.quote.lower(),
                "price-precision": decimals(inst.tick),
                "amount-precision": decimals(inst.lot),
                "symbol-partition": "main", "symbol": st.name, "state": "online",
                "value-precision": 8,
                "min-order-amt": msgspec.Raw(decimal_text(inst.lot).encode()),  # a JSON number
                "max-order-amt": 10000000,
                "min-order-value": 5,
                "api-trading": "enabled", "tags": "",
            })
        return json_response({"status": "ok", "data": data})

    async def _rest_timestamp(self, request: web.Request) -> web.Response:
        return json_response({"status": "ok", "data": self._ms()})
