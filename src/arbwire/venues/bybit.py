"""Bybit v5 public market data, spot and linear: in-stream order book snapshots + deltas.

Protocol facts: ../shared/docs/exchange-protocols.md §2 and §6.

* One link per category (``/v5/public/spot`` or ``/v5/public/linear``); symbols are
  ``BTCUSDT`` on the wire, ``BTC-USDT`` (spot) or ``BTC-USDT-PERP`` (linear) here.
* Subscriptions go out one request per symbol (at most 10 args on spot, §2.3). The
  venue answers each *request* with one ``success`` flag (§2.11), so per-symbol
  requests mean a rejected symbol takes down only its own topics.
* ``orderbook.{depth}.SYM`` starts with a ``snapshot`` and continues with ``delta``s;
  a new snapshot at any time, or any message with ``u == 1`` (service restart),
  resets the book. There is no "send me a snapshot" call: a resync is
  unsubscribe + subscribe of that one book topic.
* The client keeps the link alive with ``{"op":"ping"}`` (every 20 s) and expects a
  pong reply; a pong that does not come in ``pong_timeout_s`` means reconnect.

Sequence rule (``BybitRule``), decided as follows. Bybit documents the ``u`` +1
chain only for ``orderbook.full``; every real ``orderbook.N`` capture shows it too
(the fixture: snapshot ``u`` 2876700, delta 2876701). ``seq`` is a cross sequence,
monotonic but not contiguous, so ``u`` is the stricter check and the one the rule uses.

* first delta after a snapshot: ``u == snap + 1`` applies; ``u <= snap`` is stale,
  because the only such deltas are ones the sync buffered *before* the snapshot
  arrived (pushed by the old subscription while a resubscribe was in flight), and
  the snapshot supersedes them; anything else is a gap.
* every later delta: ``u == last + 1`` applies and *everything else is a gap*, a
  regression or repeat of ``u`` included: within one subscription the stream never
  goes back, so a step back means the stream is no longer the one the book was
  built from (a restart we did not see, two subscriptions interleaved). Dropping it
  as stale would leave a silently wrong book; a resubscribe costs one snapshot.
* the one regression the rule cannot see is a delta stepping back right after a
  snapshot (``first`` must call that stale, see above). The session watches each
  book topic in stream order for exactly that case, and for ``seq`` going backwards
  while ``u`` still chains: such a delta is not passed on; it is counted as a bad
  frame and the session asks for a fresh snapshot itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal, Union

import msgspec

from arbwire.model import BUY, SELL, BookUpdate, Level, Quote, Trade
from arbwire.symbols import GluedSymbols, SymbolError
from arbwire.sync import APPLY, GAP, STALE, SequenceRule, Verdict
from arbwire.venues.base import Action, Endpoints, Output, Reconnect, Send, VenueSession

PUBLIC = Endpoints("wss://stream.bybit.com", "https://api.bybit.com")
SPOT = LINEAR = PUBLIC  # one host; the path names the category (see ``url``)
CATEGORIES = ("spot", "linear")
DEPTHS = (1, 50, 200, 1000)
SPOT_MAX_ARGS = 10  # §2.3: spot allows at most 10 args per subscribe request (we send <= 4)
PERP = "-PERP"
PING = '{"op":"ping"}'
MS = 1_000_000

# Topic names inside a venue's ret_msg, e.g. "Invalid symbol :[orderbook.50.XXX]".
_TOPIC_IN_TEXT = re.compile(r"(?:orderbook\.\d+|publicTrade|tickers)\.[A-Za-z0-9_-]+")


class _Book(msgspec.Struct, gc=False):
    b: list[Level]
    a: list[Level]
    u: int
    seq: int = 0
    s: str = ""


class _Fill(msgspec.Struct, gc=False):
    T: int
    S: Literal["Buy", "Sell"]  # taker side
    v: str
    p: str
    i: str  # spot: numeric-looking string, linear: UUID; kept as text either way
    seq: int = 0
    s: str = ""


class _Ticker(msgspec.Struct, gc=False):
    """Only the BBO fields; spot tickers have none of them, linear deltas omit unchanged ones."""

    bid1Price: str | None = None
    bid1Size: str | None = None
    ask1Price: str | None = None
    ask1Size: str | None = None


class _Frame(msgspec.Struct):
    """Any frame: a topic push (``data`` kept raw, decoded by kind) or an op reply.

    The typed union (``BybitSession._typed_decoder``) repeats these fields with the same
    types, so a push it accepts is one this envelope accepts too.
    """

    topic: str | None = None
    type: str | None = None
    ts: int = 0
    data: msgspec.Raw = msgspec.Raw()  # empty when absent (Raw can't sit in a union)
    success: bool | None = None
    ret_msg: str | None = None
    op: str | None = None
    req_id: str | int | None = None


class BybitRule(SequenceRule):
    """``u`` chains by +1 per topic; see the module docstring for why a step back is a gap."""

    snapshot_in_stream = True

    def first(self, snap_id: int, upd: BookUpdate) -> Verdict:
        u = upd.last_id
        if u == snap_id + 1:
            return APPLY
        if u <= snap_id:
            return STALE  # buffered before the snapshot, which covers it
        return GAP

    def next(self, last_id: int, upd: BookUpdate) -> Verdict:
        if upd.last_id == last_id + 1:
            return APPLY
        return GAP  # a jump lost messages; a step back or repeat broke the stream


_KIND_BOOK, _KIND_BBO, _KIND_TRADE, _KIND_TICKER, _KIND_UNTYPED = range(5)
_DATA_TYPES: dict[int, Any] = {
    _KIND_BOOK: _Book, _KIND_BBO: _Book, _KIND_TRADE: list[_Fill], _KIND_TICKER: _Ticker,
}
_ENVELOPE: list[tuple[str, Any, Any]] = [  # _Frame's fields besides topic and data
    ("type", str | None, None),
    ("ts", int, 0),
    ("success", bool | None, None),
    ("ret_msg", str | None, None),
    ("op", str | None, None),
    ("req_id", str | int | None, None),
]


class BybitSession(VenueSession):
    name = "bybit"

    def __init__(
        self,
        symbols: Sequence[str],
        endpoints: Endpoints | None = None,
        *,
        category: Literal["spot", "linear"] = "spot",
        depth: int = 50,
        bbo: bool | None = None,
        ping_interval_s: float = 20.0,
        pong_timeout_s: float = 10.0,
    ) -> None:
        """``symbols`` in arbwire form; on linear a bare ``BTC-USDT`` is taken as ``BTC-USDT-PERP``.

        Quotes come from ``orderbook.1`` (``bbo``, on by default on spot, whose tickers
        carry no bid/ask) and on linear from ``tickers``, whose deltas carry the BBO;
        ``bbo=True`` on linear adds ``orderbook.1`` too (pushed every 10 ms, tickers
        every 100 ms). With ``depth=1`` the book topic is itself the BBO. Spot tickers
        are not subscribed: nothing in them is used.
        """
        if category not in CATEGORIES:
            raise ValueError(f"bybit category must be one of {CATEGORIES}, not {category!r}")
        if depth not in DEPTHS:
            raise ValueError(f"bybit orderbook depth must be one of {DEPTHS}, not {depth!r}")
        if ping_interval_s <= 0 or pong_timeout_s <= 0:
            raise ValueError("ping_interval_s and pong_timeout_s must be positive")
        self.category = category
        self.linear = category == "linear"
        common = [self._normalize(s) for s in symbols]
        super().__init__(common, endpoints or (LINEAR if self.linear else SPOT))
        self.depth = depth
        self.bbo = not self.linear if bbo is None else bbo
        self.ping_interval_ns = int(ping_interval_s * 1e9)
        self.pong_timeout_ns = int(pong_timeout_s * 1e9)
        self.names = GluedSymbols([s.removesuffix(PERP) for s in self.symbols], lower=False)
        self._routes: dict[str, tuple[int, str]] = {}
        self._requests: dict[str, tuple[str, tuple[str, ...]]] = {}  # req_id -> (op, topics)
        self._next_req = 0
        self.acked: set[str] = set()  # topics whose subscribe was acknowledged
        self.rejected: set[str] = set()  # topics the venue refused (never data from them)
        self._tickers: dict[str, list[str | None]] = {}  # symbol -> [bid, bid size, ask, ask size]
        self._book_last: dict[str, tuple[int, int, bool]] = {}  # symbol -> (u, seq, was snapshot)
        self.regressions = 0
        # heartbeat
        self._open = False
        self._last_ping_ns = 0
        self._ping_pending_ns = 0  # when the oldest unanswered ping went out; 0 = none
        self.last_pong_ns = 0
        self.last_rtt_ns = 0
        self.pongs = 0
        # decoders
        self._typed: dict[type, tuple[int, str]] = {}
        self._decode = self._typed_decoder().decode
        self._frame = msgspec.json.Decoder(_Frame)
        self._book = msgspec.json.Decoder(_Book)
        self._fills = msgspec.json.Decoder(list[_Fill])
        self._ticker = msgspec.json.Decoder(_Ticker)
        self._rule = BybitRule()

    # -- symbols ---------------------------------------------------------------
    def _normalize(self, symbol: str) -> str:
        if self.linear:
            return symbol if symbol.endswith(PERP) else symbol + PERP
        if symbol.endswith(PERP):
            raise SymbolError(f"{symbol!r} is a perpetual; use category='linear' for it")
        return symbol

    def venue_symbol(self, symbol: str) -> str:
        """``BTC-USDT`` / ``BTC-USDT-PERP`` -> ``BTCUSDT``."""
        return self.names.to_venue(symbol.removesuffix(PERP))

    def common_symbol(self, name: str) -> str:
        """``BTCUSDT`` -> ``BTC-USDT`` on spot, ``BTC-USDT-PERP`` on linear."""
        common = self.names.to_common(name)
        return common + PERP if self.linear else common

    def book_topic(self, symbol: str) -> str:
        return f"orderbook.{self.depth}.{self.venue_symbol(symbol)}"

    def topics(self, symbol: str) -> list[str]:
        name = self.venue_symbol(symbol)
        out = [f"orderbook.{self.depth}.{name}", f"publicTrade.{name}"]
        if self.linear:
            out.append(f"tickers.{name}")
        if self.bbo and self.depth != 1:
            out.append(f"orderbook.1.{name}")
        return out

    # -- link ------------------------------------------------------------------
    def url(self) -> str:
        return f"{self.endpoints.ws_url}/v5/public/{'linear' if self.linear else 'spot'}"

    def _request(self, op: str, topics: Sequence[str]) -> Send:
        self._next_req += 1
        req_id = str(self._next_req)
        self._requests[req_id] = (op, tuple(topics))
        body = msgspec.json.encode({"op": op, "args": list(topics), "req_id": req_id})
        return Send(body.decode())

    def on_open(self, now_ns: int) -> list[Action]:
        self._routes.clear()
        self._requests.clear()
        self.acked.clear()
        self.rejected.clear()
        self._tickers.clear()
        self._book_last.clear()
        self._open = True
        self._last_ping_ns = now_ns
        self._ping_pending_ns = 0
        # One request per symbol: at most 4 args, inside spot's 10 (§2.3), and a
        # rejection (one reply per request, §2.11) is then one symbol's alone.
        return [self._request("subscribe", self.topics(symbol)) for symbol in self.symbols]

    def on_timer(self, now_ns: int, last_recv_ns: int) -> list[Action]:
        """JSON ping every ``ping_interval_s``; reconnect when a pong is ``pong_timeout_s`` late.

        A late pong means the venue is not reading this link (subscriptions would go
        unanswered too), even if data still flows, so ``last_recv_ns`` does not excuse it.
        """
        if not self._open:
            return []
        pending = self._ping_pending_ns
        if pending and now_ns - pending >= self.pong_timeout_ns:
            self._open = False  # quiet until the next on_open
            waited = (now_ns - pending) / 1e9
            return [Reconnect(f"bybit {self.category}: no pong {waited:.1f} s after ping")]
        if now_ns - self._last_ping_ns >= self.ping_interval_ns:
            self._last_ping_ns = now_ns
            if not pending:
                self._ping_pending_ns = now_ns
            return [Send(PING)]
        return []

    # -- frames ----------------------------------------------------------------
    def _route(self, topic: str) -> tuple[int, str] | None:
        """(kind, arbwire symbol) for a topic we handle; None for any other topic."""
        parts = topic.split(".")
        if len(parts) == 3 and parts[0] == "orderbook" and parts[1].isdigit():
            depth = int(parts[1])
            if depth == self.depth:
                kind = _KIND_BOOK
            elif depth == 1:
                kind = _KIND_BBO
            else:
                return None
        elif len(parts) == 2 and parts[0] == "publicTrade":
            kind = _KIND_TRADE
        elif len(parts) == 2 and parts[0] == "tickers":
            kind = _KIND_TICKER
        else:
            return None
        route = (kind, self.common_symbol(parts[-1]))  # SymbolError: not cached
        self._routes[topic] = route
        return route

    def _typed_decoder(self) -> msgspec.json.Decoder[Any]:
        """One decoder for every topic the session routes for its symbols: a tagged union
        with one Struct per topic (the tag is ``topic``, the first key Bybit sends), so a
        push is parsed once, validated against its channel's fields, and its type names
        its route. Decoding the envelope with raw ``data`` and then the data scans every
        push twice: 18-26% more per push on the real frames (bench/onepass.py). Replies
        and pongs are refused at the tag and pay for it (~1 µs), but they are rare."""
        tags: dict[str, type] = {}
        for symbol in self.symbols:
            name = self.venue_symbol(symbol)
            # orderbook.1 is routed (as BBO) whether or not ``bbo`` subscribed it
            topics = (f"orderbook.{self.depth}.{name}", f"orderbook.1.{name}", f"publicTrade.{name}", f"tickers.{name}")
            for topic in topics:
                route = self._route(topic)
                if route is None or topic in tags:  # depth 1 names one topic twice
                    continue
                data = ("data", _DATA_TYPES[route[0]])
                cls = msgspec.defstruct(f"_{len(tags)}", [data, *_ENVELOPE], tag_field="topic", tag=topic, gc=False)
                tags[topic] = cls
                self._typed[cls] = route
        if not tags:  # no symbols: every frame takes the two-step path
            cls = msgspec.defstruct("_none", [("data", msgspec.Raw)], tag_field="topic", tag="", gc=False)
            self._typed[cls] = (_KIND_UNTYPED, "")
            tags[""] = cls
        return msgspec.json.Decoder(Union[tuple(tags.values())])  # noqa: UP007  (a runtime tuple)

    def on_frame(self, payload: bytes, recv_ns: int) -> list[Output]:
        self.stats.frames += 1
        try:
            frame = self._decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._two_step(payload, recv_ns)
        kind, symbol = self._typed[type(frame)]
        if kind == _KIND_BOOK:
            return self._on_book(frame.type, frame.ts, frame.data, symbol, payload, recv_ns)
        if kind == _KIND_TRADE:
            return self._on_trades(frame.data, symbol, recv_ns)
        if kind == _KIND_TICKER:
            return self._on_ticker(frame.type, frame.ts, frame.data, symbol, payload, recv_ns)
        if kind == _KIND_BBO:
            return self._on_bbo(frame.ts, frame.data, symbol, recv_ns)
        return self._two_step(payload, recv_ns)

    def _two_step(self, payload: bytes, recv_ns: int) -> list[Output]:
        """Envelope first, then ``data`` by topic: every frame the typed union refuses (op
        replies, pongs, topics of no symbol of ours, malformed pushes, which get their
        reason here) and the reference the union must equal."""
        try:
            frame = self._frame.decode(payload)
            topic = frame.topic
            if topic is None:
                return self._control(frame, payload, recv_ns)
            route = self._routes.get(topic) or self._route(topic)
            if route is None:
                self.stats.unknown += 1
                return [self.bad_frame(f"unknown topic: {topic[:60]}", payload, recv_ns)]
            data = frame.data
            if not data:
                return [self.bad_frame(f"no data: {topic[:60]}", payload, recv_ns)]
            kind, symbol = route
            if kind == _KIND_BOOK:
                return self._on_book(frame.type, frame.ts, self._book.decode(data), symbol, payload, recv_ns)
            if kind == _KIND_TRADE:
                return self._on_trades(self._fills.decode(data), symbol, recv_ns)
            if kind == _KIND_TICKER:
                return self._on_ticker(frame.type, frame.ts, self._ticker.decode(data), symbol, payload, recv_ns)
            return self._on_bbo(frame.ts, self._book.decode(data), symbol, recv_ns)  # orderbook.1 as BBO only
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return [self.bad_frame(f"decode: {exc}", payload, recv_ns)]
        except ValueError as exc:  # a symbol that can't be mapped
            return [self.bad_frame(f"symbol: {exc}", payload, recv_ns)]

    def _on_book(
        self, kind: str | None, ts_ms: int, d: _Book, symbol: str, payload: bytes, recv_ns: int
    ) -> list[Output]:
        if kind == "snapshot" or d.u == 1:  # u == 1: service restart, overwrite the book
            snapshot = True
        elif kind == "delta":
            snapshot = False
            prev = self._book_last.get(symbol)
            if prev is not None:
                prev_u, prev_seq, prev_snapshot = prev
                if (prev_snapshot and d.u <= prev_u) or (d.seq and prev_seq and d.seq < prev_seq):
                    # A step back the rule can't see (module docstring): don't apply it.
                    self.regressions += 1
                    self._book_last[symbol] = (d.u, d.seq, False)
                    reason = f"book regression: {symbol} u {prev_u}->{d.u} seq {prev_seq}->{d.seq}"
                    out: list[Output] = [self.bad_frame(reason, payload, recv_ns)]
                    out += self.snapshot_request(symbol)
                    return out
        else:
            return [self.bad_frame(f"book type: {kind!r}", payload, recv_ns)]
        self._book_last[symbol] = (d.u, d.seq, snapshot)
        upd = BookUpdate(self.name, symbol, d.b, d.a, d.u, d.u, -1, snapshot, None, ts_ms * MS, recv_ns)
        if self.depth == 1:
            quote = self._top_quote(d, ts_ms, symbol, recv_ns)
            if quote is not None:
                return [upd, quote]
        return [upd]

    def _on_bbo(self, ts_ms: int, d: _Book, symbol: str, recv_ns: int) -> list[Output]:
        quote = self._top_quote(d, ts_ms, symbol, recv_ns)
        return [quote] if quote is not None else []

    def _top_quote(self, d: _Book, ts_ms: int, symbol: str, recv_ns: int) -> Quote | None:
        if not d.b or not d.a:
            return None  # one side empty: no BBO to report
        (bid, bid_size), (ask, ask_size) = d.b[0], d.a[0]
        return Quote(self.name, symbol, bid, bid_size, ask, ask_size, d.u, ts_ms * MS, recv_ns)

    def _on_trades(self, fills: list[_Fill], symbol: str, recv_ns: int) -> list[Output]:
        name = self.name
        return [
            Trade(name, symbol, f.p, f.v, BUY if f.S == "Buy" else SELL, f.i, f.T * MS, recv_ns)
            for f in fills
        ]

    def _on_ticker(
        self, kind: str | None, ts_ms: int, t: _Ticker, symbol: str, payload: bytes, recv_ns: int
    ) -> list[Output]:
        fields = (t.bid1Price, t.bid1Size, t.ask1Price, t.ask1Size)
        if kind == "snapshot" or kind is None:
            state = self._tickers[symbol] = list(fields)
        elif kind == "delta":
            state = self._tickers.setdefault(symbol, [None, None, None, None])
            for i, value in enumerate(fields):
                if value is not None:
                    state[i] = value
        else:
            return [self.bad_frame(f"ticker type: {kind!r}", payload, recv_ns)]
        if all(v is None for v in fields):
            return []  # spot tickers (no bid/ask at all) or a delta that left the BBO alone
        bid, bid_size, ask, ask_size = state
        if not (bid and bid_size and ask and ask_size):
            return []  # BBO not fully known yet
        return [Quote(self.name, symbol, bid, bid_size, ask, ask_size, 0, ts_ms * MS, recv_ns)]

    def _control(self, frame: _Frame, payload: bytes, recv_ns: int) -> list[Output]:
        if frame.ret_msg == "pong" or frame.op == "pong":
            if self._ping_pending_ns:
                self.last_rtt_ns = recv_ns - self._ping_pending_ns
            self._ping_pending_ns = 0
            self.last_pong_ns = recv_ns
            self.pongs += 1
            return []
        if frame.success is None:
            self.stats.unknown += 1
            return [self.bad_frame("unknown frame", payload, recv_ns)]
        req_id = frame.req_id
        request = self._requests.pop(str(req_id), None) if req_id not in (None, "") else None
        if frame.success:
            if request is not None and request[0] == "subscribe":
                self.acked.update(request[1])
                self.rejected.difference_update(request[1])
            return []
        # success:false answers the whole request (§2.11): every topic in it is refused.
        message = frame.ret_msg or ""
        op = frame.op or (request[0] if request else "?")
        topics = request[1] if request is not None else tuple(_TOPIC_IN_TEXT.findall(message))
        if op == "subscribe":
            self.rejected.update(topics)
            self.acked.difference_update(topics)
        by_symbol: dict[str, list[str]] = {}
        for topic in topics:
            by_symbol.setdefault(self._topic_symbol(topic), []).append(topic)
        if not by_symbol:
            return [self.venue_error("", op, message, recv_ns)]
        return [
            self.venue_error(symbol, op, f"{message} (topics: {', '.join(ts)})", recv_ns)
            for symbol, ts in by_symbol.items()
        ]

    def _topic_symbol(self, topic: str) -> str:
        name = topic.rsplit(".", 1)[-1]
        try:
            return self.common_symbol(name)
        except ValueError:
            return name  # not splittable: name it as the venue knows it

    # -- books -----------------------------------------------------------------
    def sequence_rule(self, symbol: str) -> SequenceRule:
        return self._rule

    def snapshot_request(self, symbol: str) -> list[Action]:
        """No snapshot call exists: unsubscribe and subscribe the book topic (§2.6)."""
        topic = self.book_topic(symbol)
        return [self._request("unsubscribe", [topic]), self._request("subscribe", [topic])]

    # -- venue clock -----------------------------------------------------------
    def time_url(self) -> str:
        return f"{self.endpoints.rest_url}/v5/market/time"

    def parse_server_time(self, body: bytes) -> tuple[int, int]:
        """``result.timeNano``: Bybit gives nanoseconds; counted here at 1 µs resolution."""
        try:
            reply = msgspec.json.decode(body, type=_TimeReply)
            if reply.retCode != 0:
                raise ValueError(f"retCode {reply.retCode} {reply.retMsg!r}")
            ns = int(reply.result.timeNano)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            raise ValueError(f"{self.name} server time: {exc}: {body[:200]!r}") from exc
        if ns <= 0:
            raise ValueError(f"{self.name} server time: {ns} is not a time: {body[:200]!r}")
        return ns, 1_000


class _TimeResult(msgspec.Struct):
    timeNano: str


class _TimeReply(msgspec.Struct):
    retCode: int
    result: _TimeResult
    retMsg: str = ""
