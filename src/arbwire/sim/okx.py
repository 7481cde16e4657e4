"""OKX v5 public market data, simulated: ``/ws/v5/public`` and the REST book.

Wire facts from ../shared/docs/exchange-protocols.md §3, built here from the model's
own books (never from arbwire's client code):

* ``{"op":"subscribe","args":[..]}`` gets one ``event:subscribe`` ack per arg; an
  unknown instId or channel gets ``event:error`` code ``60018``.
* ``books``: ``action:snapshot`` (``prevSeqId:-1``) then ``action:update`` with
  ``prevSeqId`` = the previous ``seqId``; ``seqId`` steps 1..90 (never contiguous),
  one sequence per instrument shared by all links and the REST snapshot. With
  ``ws_snapshot=False`` the snapshot is withdrawn (clients seed from REST) and with
  ``checksum=False`` every checksum is 0: the 2026 changes, switchable.
* Levels are ``[px, sz, "0", count]`` in OKX's shortest text (``"60000.1"``,
  ``"0.5"``); the checksum is the signed CRC32 over those exact strings (§3.6).
* No change for ``heartbeat_s``: an update with empty sides and ``prevSeqId == seqId``.
* Text ``ping`` -> text ``pong``. A link with no traffic either way for
  ``idle_timeout_s`` is closed (§3.4: a client on a busy feed need not ping).
"""

from __future__ import annotations

import json
import secrets
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web
from picows import WSCloseCode, WSUpgradeRequest

from arbwire.sim.levels import decimal_text as okx_str
from arbwire.sim.market import Instrument, MarketModel, SimTrade, Step
from arbwire.sim.server import (
    FaultError,
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

PUBLIC_PATH = "/ws/v5/public"
CHANNELS = ("trades", "bbo-tbt", "books", "books5")  # also the push order per instrument
LOGIN_CHANNELS = frozenset({"books-l2-tbt", "books50-l2-tbt"})
MAX_LEVELS = 400
IDLE_CLOSE = WSCloseCode(4004)  # idle-close code: unconfirmed (not in §3), clients must not rely on it


def okx_checksum(bids: Iterable[tuple[str, str]], asks: Iterable[tuple[str, str]]) -> int:
    """Signed CRC32 over the interleaved top-25 levels, strings as sent (§3.6)."""
    b = list(bids)[:25]
    a = list(asks)[:25]
    parts: list[str] = []
    for i in range(max(len(b), len(a))):
        if i < len(b):
            parts += b[i]
        if i < len(a):
            parts += a[i]
    crc = zlib.crc32(":".join(parts).encode())
    return crc - (1 << 32) if crc >= 1 << 31 else crc


@dataclass(frozen=True, slots=True)
class OkxOptions:
    """Modes, timeouts and quirks of the OKX simulator (defaults are the venue's)."""

    ws_snapshot: bool = True  # False: no action:snapshot on subscribe; seed from REST
    checksum: bool = True  # False: every books checksum is 0
    heartbeat_s: float = 60.0  # no-change books update after this long without changes
    idle_timeout_s: float = 30.0  # close a link with no traffic either way for this long
    idle_counts_pushes: bool = True  # False: only client messages keep a link alive (stricter)
    notice_close_s: float = 60.0  # default delay between a 64008 notice and the close
    rest_delay_s: float = 0.0  # REST answers this late, with the book as of the request


@dataclass(slots=True)
class _LinkState:
    conn_id: str
    subs: dict[tuple[str, str], None] = field(default_factory=dict)  # (channel, instId)


@dataclass(slots=True)
class _InstState:
    seq: int
    trade_id: int
    last_books_push: float
    top: tuple[Decimal, Decimal, Decimal, Decimal] | None = None
    bad_checksum: bool = False
    reset: bool = False


class OkxServer(VenueServer):
    """OKX v5 public simulator over one shared ``MarketModel``."""

    venue = "okx"
    options_type = OkxOptions
    options: OkxOptions
    faults = VenueServer.faults | {"bad_checksum", "reset_sequence", "notice"}

    def __init__(self, model: MarketModel, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        now = self.clock()
        self._insts = {
            symbol: _InstState(
                seq=self.rng.randrange(10**9, 10**11),
                trade_id=self.rng.randrange(10**8, 10**9),
                last_books_push=now,
            )
            for symbol in model.symbols
        }

    # ----- levels -----

    def _level(self, inst: Instrument, price: Decimal, size: Decimal) -> list[str]:
        if size == 0:
            return [okx_str(price), "0", "0", "0"]
        count = 1 + min(98, int(size / inst.lot) // 1000)  # order count: grows with size
        return [okx_str(price), okx_str(size), "0", str(count)]

    def _book_levels(self, symbol: str, depth: int) -> tuple[list[list[str]], list[list[str]]]:
        inst = self.model.instruments[symbol]
        book = self.model.book(self.venue, symbol)
        bids = sorted(book.bids.items(), reverse=True)[:depth]
        asks = sorted(book.asks.items())[:depth]
        return (
            [self._level(inst, p, s) for p, s in bids],
            [self._level(inst, p, s) for p, s in asks],
        )

    def book_checksum(self, symbol: str) -> int:
        """The real checksum of the current book (whatever the mode)."""
        bids, asks = self._book_levels(symbol, 25)
        return okx_checksum(((b[0], b[1]) for b in bids), ((a[0], a[1]) for a in asks))

    def _checksum_for_push(self, symbol: str) -> int:
        st = self._insts[symbol]
        value = self.book_checksum(symbol) if self.options.checksum else 0
        if st.bad_checksum:
            st.bad_checksum = False
            value = value ^ 0x5A5A
        return value

    # ----- connections -----

    def route(self, request: WSUpgradeRequest) -> RouteResult:
        if ws_path(request) != PUBLIC_PATH:
            return None
        return LinkListener(self, _LinkState(conn_id=secrets.token_hex(4)))

    def on_text(self, link: Link, payload: bytes) -> None:
        state: _LinkState = link.state
        if payload == b"ping":
            self.send(link, b"pong")
            return
        try:
            msg = json.loads(payload)
        except ValueError:
            msg = None
        if not isinstance(msg, dict) or "op" not in msg:
            self._error(link, "60012", f"Invalid request: {payload.decode(errors='replace')}", None)
            return
        req_id = msg.get("id")
        op = msg["op"]
        if op not in ("subscribe", "unsubscribe"):
            self._error(link, "60019", f"Invalid op: op :{op}", req_id)
            return
        args = msg.get("args")
        if not isinstance(args, list) or not args:
            self._error(link, "60013", f"Invalid args: {payload.decode(errors='replace')}", req_id)
            return
        for arg in args:
            if not isinstance(arg, dict) or "channel" not in arg:
                self._error(link, "60013", f"Invalid args: {json.dumps(arg)}", req_id)
                continue
            channel, inst_id = arg.get("channel"), arg.get("instId")
            if channel in LOGIN_CHANNELS:
                self._error(link, "60011", "Please log in", req_id)
                continue
            if channel not in CHANNELS or inst_id not in self.model.instruments:
                self._error(
                    link,
                    "60018",
                    f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. Please use "
                    "the correct URL, channel and parameters referring to API document.",
                    req_id,
                )
                continue
            ack: dict[str, Any] = {} if req_id is None else {"id": req_id}
            ack |= {"event": op, "arg": {"channel": channel, "instId": inst_id},
                    "connId": state.conn_id}
            self.send(link, encode(ack))
            if op == "unsubscribe":
                state.subs.pop((channel, inst_id), None)
                continue
            state.subs[(channel, inst_id)] = None
            self._initial_push(link, channel, inst_id)

    def _initial_push(self, link: Link, channel: str, symbol: str) -> None:
        if channel == "books" and self.options.ws_snapshot:
            bids, asks = self._book_levels(symbol, MAX_LEVELS)
            st = self._insts[symbol]
            data = {"asks": asks, "bids": bids, "ts": str(self.venue_ns() // 1_000_000),
                    "checksum": self._checksum_for_push(symbol), "prevSeqId": -1, "seqId": st.seq}
            self.send(link, encode({"arg": {"channel": channel, "instId": symbol},
                                    "action": "snapshot", "data": [data]}))
        elif channel in ("bbo-tbt", "books5"):
            frame = self._top_push(channel, symbol, self.venue_ns() // 1_000_000)
            if frame is not None:
                self.send(link, frame)

    def _error(self, link: Link, code: str, msg: str, req_id: Any) -> None:
        body: dict[str, Any] = {} if req_id is None else {"id": req_id}
        body |= {"event": "error", "code": code, "msg": msg, "connId": link.state.conn_id}
        self.send(link, encode(body))

    def housekeeping_period(self) -> float:
        return housekeeping_every(self.options.idle_timeout_s, self.options.heartbeat_s)

    def housekeep(self, now: float) -> None:
        limit = self.options.idle_timeout_s
        pushes = self.options.idle_counts_pushes
        for link in list(self.links.values()):
            last = max(link.last_in, link.last_out) if pushes else link.last_in
            if now - last >= limit:
                self.close_link(link, IDLE_CLOSE, b"No data received in 30s.")

    # ----- faults -----

    def bad_checksum(self, symbol: str) -> None:
        """The next books push for ``symbol`` carries a wrong checksum (checksum mode only)."""
        self._check_symbol(symbol)
        if not self.options.checksum:
            raise FaultError("okx: bad_checksum needs checksum mode (checksums are all 0)")
        self._insts[symbol].bad_checksum = True

    def reset_sequence(self, symbol: str) -> None:
        """The next update for ``symbol`` is a maintenance reset: ``seqId < prevSeqId``."""
        self._check_symbol(symbol)
        self._insts[symbol].reset = True

    def notice(self, close_after_s: float | None = None) -> None:
        """Send the 64008 service-upgrade notice to every link, then close them."""
        links = list(self.links.values())
        for link in links:
            self.send(link, encode({
                "event": "notice", "code": "64008",
                "msg": "The connection will soon be closed for a service upgrade. Please reconnect.",
                "connId": link.state.conn_id,
            }))
        delay = self.options.notice_close_s if close_after_s is None else close_after_s
        self.close_later(links, delay, b"service upgrade")

    # ----- publishing -----

    def publish(self, step: Step, now_ns: int) -> None:
        ts = str(now_ns // 1_000_000)
        now = self.clock()
        frames: dict[tuple[str, str], list[bytes]] = {}
        trades = self.trades_by_symbol(step)
        for symbol, st in self._insts.items():
            arg = {"channel": "books", "instId": symbol}
            diff = step.diffs.get((self.venue, symbol))
            if diff:
                prev = st.seq
                if st.reset:
                    st.reset = False
                    st.seq = self.rng.randrange(1, 1000)
                else:
                    st.seq += self.rng.randint(1, 90)
                st.last_books_push = now
                if not self.take_skip(symbol):
                    inst = self.model.instruments[symbol]
                    data = {
                        "asks": [self._level(inst, p, s) for p, s in sorted(diff.asks.items())],
                        "bids": [self._level(inst, p, s) for p, s in sorted(diff.bids.items(), reverse=True)],
                        "ts": ts, "checksum": self._checksum_for_push(symbol),
                        "prevSeqId": prev, "seqId": st.seq,
                    }
                    frames[("books", symbol)] = [encode({"arg": arg, "action": "update", "data": [data]})]
            elif now - st.last_books_push >= self.options.heartbeat_s:
                st.last_books_push = now
                data = {"asks": [], "bids": [], "ts": ts, "checksum": self._checksum_for_push(symbol),
                        "prevSeqId": st.seq, "seqId": st.seq}
                frames[("books", symbol)] = [encode({"arg": arg, "action": "update", "data": [data]})]
            if symbol in trades:
                frames[("trades", symbol)] = [self._trade_push(t, st, ts) for t in trades[symbol]]
            top = self.model.book(self.venue, symbol).top()
            if top is not None and top != st.top:
                st.top = top
                frame = self._top_push("bbo-tbt", symbol, int(ts))
                if frame is not None:
                    frames[("bbo-tbt", symbol)] = [frame]
            if diff:
                frame = self._top_push("books5", symbol, int(ts))
                if frame is not None:
                    frames[("books5", symbol)] = [frame]
        self._deliver(frames)

    def _trade_push(self, trade: SimTrade, st: _InstState, ts: str) -> bytes:
        st.trade_id += 1
        data = {"instId": trade.symbol, "tradeId": str(st.trade_id), "px": okx_str(trade.price),
                "sz": okx_str(trade.size), "side": trade.taker_side, "ts": ts, "count": "1",
                "source": "0", "seqId": st.seq}
        return encode({"arg": {"channel": "trades", "instId": trade.symbol}, "data": [data]})

    def _top_push(self, channel: str, symbol: str, ts_ms: int) -> bytes | None:
        depth = 1 if channel == "bbo-tbt" else 5
        bids, asks = self._book_levels(symbol, depth)
        if not bids and not asks:
            return None
        data: dict[str, Any] = {"asks": asks, "bids": bids}
        if channel == "books5":
            data["instId"] = symbol
        data |= {"ts": str(ts_ms), "seqId": self._insts[symbol].seq}
        return encode({"arg": {"channel": channel, "instId": symbol}, "data": [data]})

    def _deliver(self, frames: dict[tuple[str, str], list[bytes]]) -> None:
        if self.stalled or not frames:
            return
        for link in list(self.links.values()):
            subs = link.state.subs
            for symbol in self._insts:
                for channel in CHANNELS:
                    key = (channel, symbol)
                    if key in subs and key in frames:
                        for frame in frames[key]:
                            self.send(link, frame)

    # ----- REST -----

    def rest_routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/v5/market/books", self._rest_books),
            web.get("/api/v5/public/instruments", self._rest_instruments),
            web.get("/api/v5/public/time", self._rest_time),
        ]

    async def _rest_books(self, request: web.Request) -> web.Response:
        inst_id = request.query.get("instId", "")
        if not inst_id:
            return json_response({"code": "50014", "msg": "Parameter instId can not be empty.", "data": []}, 400)
        if inst_id not in self.model.instruments:
            return json_response({"code": "51001", "msg": "Instrument ID does not exist", "data": []})
        try:
            sz = int(request.query.get("sz", "1"))
        except ValueError:
            return json_response({"code": "51000", "msg": "Parameter sz error", "data": []}, 400)
        bids, asks = self._book_levels(inst_id, max(1, min(sz, MAX_LEVELS)))
        return await respond_late(json_response({"code": "0", "msg": "", "data": [{
            "asks": asks, "bids": bids, "ts": str(self.venue_ns() // 1_000_000),
            "seqId": self._insts[inst_id].seq,
        }]}), self.options.rest_delay_s)

    async def _rest_instruments(self, request: web.Request) -> web.Response:
        inst_type = request.query.get("instType", "")
        if not inst_type:
            return json_response({"code": "50014", "msg": "Parameter instType can not be empty.", "data": []}, 400)
        wanted = request.query.get("instId")
        data = []
        if inst_type == "SPOT":
            for symbol, inst in self.model.instruments.items():
                if wanted is not None and wanted != symbol:
                    continue
                data.append({
                    "instType": "SPOT", "instId": symbol, "baseCcy": inst.base,
                    "quoteCcy": inst.quote, "tickSz": okx_str(inst.tick), "lotSz": okx_str(inst.lot),
                    "minSz": okx_str(inst.lot), "state": "live", "instFamily": "", "uly": "",
                    "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "", "lever": "",
                    "listTime": "1548133413000",
                })
        return json_response({"code": "0", "msg": "", "data": data})

    async def _rest_time(self, request: web.Request) -> web.Response:
        return json_response({"code": "0", "msg": "", "data": [{"ts": str(self.venue_ns() // 1_000_000)}]})

