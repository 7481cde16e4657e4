"""Gate (API v4) spot public market data: ``spot.obu`` or ``spot.order_book_update`` books,
``spot.book_ticker`` quotes and ``spot.trades``, all on one WebSocket.

Protocol facts: ../shared/docs/exchange-protocols.md §4 and §6. Two book modes:

* ``book_channel="obu"`` (default, Order Book V2): payload ``ob.PAIR.50`` (or 400).
  The first push after subscribing is a ``full: true`` snapshot; each increment
  must have ``U == local + 1``. A gap is repaired by unsubscribing and
  subscribing that one stream again, which makes the server push a new full book.
* ``book_channel="order_book_update"``: payload ``[PAIR, "100ms"]``, synced against
  REST ``/api/v4/spot/order_book?...&with_id=true`` (its ``id`` is the base id):
  drop ``u <= id``, start at ``U <= id + 1 <= u``, and later ``U > local + 1`` is a
  gap that refetches. A ``full: true`` push replaces the book like a snapshot.

Frames are routed on ``channel`` plus the data in ``result``; neither ``event``
nor ``time`` is required (real ``spot.obu`` pushes carry no ``time``, the docs'
examples no ``event``). Gate sends WebSocket ping frames, which the transport
answers; the JSON ``spot.ping``/``spot.pong`` heartbeat is sent on top, as the
official SDK does, and a missing pong drops the link.

Unconfirmed points (§4), all constructor options: the ping interval
(``ping_interval_s``, SDK uses 5 s) and the pong timeout (``pong_timeout_s``; the
server's own timeout is undocumented); whether a multi-pair subscribe fails
entirely when one pair is unknown (hence ``batch_pairs=False``: one request per
pair, so an unknown pair cannot take others down); the REST ``limit`` maximum
(``snapshot_limit``, 100 as in the official example); and the wording of error
messages (the pair is taken from the message, else from the echoed payload or
the request id).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, Union

import msgspec

from arbwire.model import BUY, SELL, BookUpdate, Level, Quote, Trade
from arbwire.symbols import SymbolError, SymbolMap, split
from arbwire.sync import APPLY, GAP, STALE, SequenceRule, Verdict
from arbwire.venues.base import (
    Action,
    Endpoints,
    FetchSnapshot,
    Output,
    Reconnect,
    Send,
    VenueSession,
    server_time,
)

SPOT = Endpoints("wss://api.gateio.ws", "https://api.gateio.ws")
MS = 1_000_000
S = 1_000_000_000

OBU = "spot.obu"
ORDER_BOOK_UPDATE = "spot.order_book_update"
BOOK_TICKER = "spot.book_ticker"
TRADES = "spot.trades"
PING = "spot.ping"
PONG = "spot.pong"

#: Gate spot channels that are valid but not consumed here: counted in
#: ``stats.unknown`` and dropped, never reported as bad frames.
OTHER_CHANNELS = frozenset(
    {
        "spot.tickers",
        "spot.candlesticks",
        "spot.order_book",
        "spot.trades_v2",
        "spot.orders",
        "spot.usertrades",
        "spot.balances",
    }
)

_ACK_EVENTS = frozenset({"subscribe", "unsubscribe"})
_NOT_PUSHES = _ACK_EVENTS | {"upgrade"}  # events the typed path leaves to _control
_PAIR_IN_TEXT = re.compile(r"\b([A-Z0-9]+_[A-Z0-9]+)\b")
_MAX_PENDING_REQUESTS = 4096


# -- wire shapes (private) ----------------------------------------------------------
class _Error(msgspec.Struct):
    code: int | str = 0
    message: str = ""


class _Frame(msgspec.Struct):
    """Any frame: a data push, an acknowledgement, a pong or an upgrade request.

    The typed union (``GateioSession._typed_decoder``) repeats these fields with the same
    types, so a push it accepts is one this envelope accepts too.
    """

    channel: str = ""
    event: str = ""
    result: msgspec.Raw = msgspec.Raw()  # empty when absent
    error: _Error | None = None
    payload: list[str] | None = None  # echoed by newer servers on acknowledgements
    id: int | str | None = None
    # ``time``/``time_ms`` (send time) are not read: real spot.obu pushes lack ``time``.


class _Obu(msgspec.Struct, gc=False):
    """``spot.obu`` result: a ``full`` snapshot (no ``U``) or an increment ``U..u``."""

    s: str
    u: int
    t: int = 0
    U: int = -1
    full: bool = False
    b: list[Level] = []
    a: list[Level] = []


class _ObUpdate(msgspec.Struct, gc=False):
    """``spot.order_book_update`` result; ``full``/``l`` exist since 2025 only."""

    s: str
    U: int
    u: int
    t: int = 0
    full: bool = False
    b: list[Level] = []
    a: list[Level] = []


class _BookTicker(msgspec.Struct, gc=False):
    s: str
    b: str
    B: str
    a: str
    A: str
    u: int = 0
    t: int = 0


class _Trade(msgspec.Struct, gc=False):
    id: int
    currency_pair: str
    side: Literal["buy", "sell"]  # taker side
    amount: str
    price: str
    create_time_ms: str | int  # ms, a string that may carry sub-ms decimals
    create_time: int = 0


class _Snapshot(msgspec.Struct):
    id: int  # present only with with_id=true: the book update id of this snapshot
    bids: list[Level]
    asks: list[Level]
    current: int = 0  # response time, ms
    update: int = 0  # time of the last book change, ms


class _BadFrame(ValueError):
    """A frame that parsed as JSON but cannot be used."""


_Handler = Callable[[Any, int], list[Output]]  # a decoded ``result`` and recv_ns -> outputs
_ENVELOPE: list[tuple[str, Any, Any]] = [  # _Frame's fields besides channel and result
    ("event", str, ""),
    ("error", _Error | None, None),
    ("payload", list[str] | None, None),
    ("id", int | str | None, None),
]


# -- sequence rules ------------------------------------------------------------------
class ObuRule(SequenceRule):
    """``spot.obu``: the full snapshot comes in the stream, then strictly ``U == local + 1``.

    Increments wholly at or below the local id are duplicates and dropped; any
    other discontinuity (including an overlap) is a gap, per Gate's rule.
    """

    snapshot_in_stream = True

    def first(self, snap_id: int, upd: BookUpdate) -> Verdict:
        return self.next(snap_id, upd)

    def next(self, last_id: int, upd: BookUpdate) -> Verdict:
        if upd.last_id <= last_id:
            return STALE
        if upd.first_id == last_id + 1:
            return APPLY
        return GAP


class OrderBookUpdateRule(SequenceRule):
    """``spot.order_book_update`` against a REST ``with_id`` snapshot (Gate's procedure).

    First: drop ``u < id + 1``, apply when ``U <= id + 1 <= u``. Later: drop
    ``u <= local``, and only ``U > local + 1`` is a gap; an overlapping update is
    applied, since its amounts are absolute (as Gate's own example client does).
    """

    def next(self, last_id: int, upd: BookUpdate) -> Verdict:
        if upd.last_id <= last_id:
            return STALE
        if upd.first_id <= last_id + 1:
            return APPLY
        return GAP


# -- symbols ---------------------------------------------------------------------------
class UnderscoreSymbols(SymbolMap):
    """``BTC-USDT`` <-> ``BTC_USDT``; every Gate spot pair has exactly one underscore."""

    __slots__ = ()

    def venue_name(self, symbol: str) -> str:
        base, quote = split(symbol)
        return f"{base}_{quote}"

    def common_name(self, name: str) -> str:
        base, sep, quote = name.partition("_")
        if not sep or not base or not quote or "_" in quote or not name.isascii():
            raise SymbolError(f"{name!r} is not a Gate pair such as BTC_USDT")
        return f"{base.upper()}-{quote.upper()}"


def ms_text_to_ns(value: str | int) -> int:
    """Gate's ``create_time_ms`` (``"1606292218213.4578"``) as exact integer ns.

    Digits beyond the nanosecond are truncated; anything but plain digits raises.
    """
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"negative time {value}")
        return value * MS
    whole, dot, frac = value.partition(".")
    if not (whole.isascii() and whole.isdigit()) or (
        dot and not (frac.isascii() and frac.isdigit())
    ):
        raise ValueError(f"not a time in ms: {value!r}")
    return int(whole) * MS + (int((frac + "000000")[:6]) if frac else 0)


def _stream_pair(entry: str) -> str | None:
    """The pair named by one payload entry: ``ob.BTC_USDT.50`` / ``BTC_USDT`` / ``100ms``."""
    if entry.startswith("ob."):
        entry = entry[3:].rpartition(".")[0] or entry[3:]
    return entry if "_" in entry else None


# -- session ---------------------------------------------------------------------------
class GateioSession(VenueSession):
    """Gate v4 spot. Public API: ``url``, ``on_open``, ``on_frame``, ``on_timer``,
    ``sequence_rule``, ``snapshot_request``, ``snapshot_url``, ``parse_snapshot``,
    ``subscriptions``; counters ``pings_sent``, ``pongs``, ``last_pong_ns``,
    ``last_rtt_ns``, ``resubscribes`` besides ``stats``.
    """

    name = "gateio"

    def __init__(
        self,
        symbols: Sequence[str],
        endpoints: Endpoints = SPOT,
        *,
        book_channel: Literal["obu", "order_book_update"] = "obu",
        obu_depth: int = 50,
        update_interval: str = "100ms",
        snapshot_limit: int = 100,
        book_ticker: bool = True,
        trades: bool = True,
        batch_pairs: bool = False,
        ping_interval_s: float | None = 5.0,
        pong_timeout_s: float = 20.0,
        ignored_channels: Iterable[str] = OTHER_CHANNELS,
    ) -> None:
        """
        ``obu_depth``: 50 (20 ms) or 400 (100 ms). ``update_interval``: the
        ``spot.order_book_update`` interval, "100ms" (100 levels) or "20ms" (20).
        ``snapshot_limit``: REST depth; its maximum is unconfirmed.
        ``batch_pairs``: one request naming every pair for trades and book
        tickers; off by default because a multi-pair request reportedly fails
        whole when one pair is unknown (unconfirmed).
        ``ping_interval_s``: ``spot.ping`` period (unconfirmed need; the SDK
        uses 5 s, the docs 5-10 s); None sends no JSON ping and never times out.
        ``pong_timeout_s``: reconnect when a ``spot.ping`` stays unanswered this
        long (unconfirmed; the server's own timeout is undocumented).
        """
        if book_channel not in ("obu", "order_book_update"):
            raise ValueError(
                f"book_channel must be 'obu' or 'order_book_update', not {book_channel!r}"
            )
        if obu_depth not in (50, 400):
            raise ValueError(f"obu_depth must be 50 or 400, not {obu_depth}")
        super().__init__(symbols, endpoints)
        self.book_channel = book_channel
        self.obu_depth = obu_depth
        self.update_interval = update_interval
        self.snapshot_limit = snapshot_limit
        self.book_ticker = book_ticker
        self.trades = trades
        self.batch_pairs = batch_pairs
        self.ping_interval_ns = int(ping_interval_s * S) if ping_interval_s else 0
        self.pong_timeout_ns = int(pong_timeout_s * S)
        self.ignored_channels = frozenset(ignored_channels)
        self.names = UnderscoreSymbols(self.symbols)
        self._rule: SequenceRule = ObuRule() if book_channel == "obu" else OrderBookUpdateRule()
        self._book_channel = OBU if book_channel == "obu" else ORDER_BOOK_UPDATE
        self._other_book_channel = ORDER_BOOK_UPDATE if book_channel == "obu" else OBU
        self._frame = msgspec.json.Decoder(_Frame)
        self._snapshot = msgspec.json.Decoder(_Snapshot)
        self._encoder = msgspec.json.Encoder()
        results: dict[str, tuple[type, _Handler]] = {
            self._book_channel: (_Obu, self._on_obu)
            if book_channel == "obu"
            else (_ObUpdate, self._on_ob_update),
            BOOK_TICKER: (_BookTicker, self._on_ticker),
            TRADES: (_Trade, self._on_trade),
        }
        self._handlers: dict[str, tuple[Callable[[msgspec.Raw], Any], _Handler]] = {
            ch: (msgspec.json.Decoder(t).decode, h) for ch, (t, h) in results.items()
        }
        self._typed: dict[type, _Handler] = {}
        self._decode = self._typed_decoder(results).decode
        self._obu_symbols: dict[str, str] = {}
        self._requests: dict[int, tuple[str, list[str]]] = {}
        self._req_id = 0
        self._now_ns = 0
        self._opened_ns = 0
        self._last_ping_ns = 0
        self._awaiting_pong_since = 0
        self._timed_out = False
        self.pings_sent = 0
        self.pongs = 0
        self.last_pong_ns = 0
        self.last_rtt_ns = 0
        self.resubscribes = 0

    # -- link ------------------------------------------------------------------
    def url(self) -> str:
        return f"{self.endpoints.ws_url}/ws/v4/"

    def _request(self, channel: str, event: str, payload: list[str] | None = None) -> Send:
        msg: dict[str, object] = {"time": self._now_ns // S}
        if payload is not None:
            self._req_id += 1
            msg["id"] = self._req_id
        msg["channel"] = channel
        if payload is not None:
            msg["event"] = event
            msg["payload"] = payload
            if len(self._requests) >= _MAX_PENDING_REQUESTS:
                del self._requests[next(iter(self._requests))]
            self._requests[self._req_id] = (channel, payload)
        return Send(self._encoder.encode(msg).decode())

    def book_payload(self, symbol: str) -> list[str]:
        pair = self.names.to_venue(symbol)
        if self.book_channel == "obu":
            return [f"ob.{pair}.{self.obu_depth}"]
        return [pair, self.update_interval]

    def subscriptions(self) -> list[Send]:
        """Every subscribe request for the session's symbols, stamped with the current time."""
        pairs = [self.names.to_venue(s) for s in self.symbols]
        out = [
            self._request(self._book_channel, "subscribe", self.book_payload(s))
            for s in self.symbols
        ]
        for enabled, channel in ((self.book_ticker, BOOK_TICKER), (self.trades, TRADES)):
            if not enabled or not pairs:
                continue
            if self.batch_pairs:
                out.append(self._request(channel, "subscribe", pairs))
            else:
                out += [self._request(channel, "subscribe", [pair]) for pair in pairs]
        return out

    def on_open(self, now_ns: int) -> list[Action]:
        self._now_ns = self._opened_ns = self._last_ping_ns = now_ns
        self._awaiting_pong_since = 0
        self._timed_out = False
        self._requests.clear()
        return list(self.subscriptions())

    def on_timer(self, now_ns: int, last_recv_ns: int) -> list[Action]:
        """``spot.ping`` every ``ping_interval_s``; Reconnect once if a ping stays unanswered."""
        self._now_ns = now_ns
        if not self._opened_ns or not self.ping_interval_ns or self._timed_out:
            return []
        waiting = self._awaiting_pong_since
        if waiting and now_ns - waiting >= self.pong_timeout_ns:
            self._timed_out = True
            return [Reconnect(f"gateio: no spot.pong for {(now_ns - waiting) / S:.1f}s")]
        if now_ns - self._last_ping_ns >= self.ping_interval_ns:
            self._last_ping_ns = now_ns
            if not waiting:
                self._awaiting_pong_since = now_ns
            self.pings_sent += 1
            return [self._request(PING, "")]
        return []

    # -- frames ----------------------------------------------------------------
    def _typed_decoder(self, results: dict[str, tuple[type, _Handler]]) -> msgspec.json.Decoder[Any]:
        """One decoder for the pushes: a tagged union with one Struct per channel (the tag
        is ``channel``; the pair is in ``result``), so a push is parsed once, validated
        against its channel's fields, and its type names its handler. Channels that are
        counted and dropped get a member with a raw ``result``, so they skip the second
        pass too. Envelope-then-result decoding costs 23-31% more per book or quote push
        and 13-14% per trade or dropped push on the real frames (bench/onepass.py).
        Acknowledgements share the channel but carry another ``result``: the union
        refuses them (~1 µs for the refusal, once per subscription), and they, pongs and
        anything else take the two-step path."""
        ignored = (self.ignored_channels | {self._other_book_channel}) - results.keys() - {PONG}
        members: list[tuple[str, tuple[Any, ...], _Handler]] = [
            (ch, ("result", t), h) for ch, (t, h) in results.items()
        ]
        members += [(ch, ("result", msgspec.Raw, msgspec.Raw()), self._skip) for ch in sorted(ignored)]
        union: list[type] = []
        for channel, result, handler in members:
            cls = msgspec.defstruct(
                f"_{len(union)}", [result, *_ENVELOPE], tag_field="channel", tag=channel, gc=False
            )
            self._typed[cls] = handler
            union.append(cls)
        return msgspec.json.Decoder(Union[tuple(union)])  # noqa: UP007  (a runtime tuple)

    def on_frame(self, payload: bytes, recv_ns: int) -> list[Output]:
        self.stats.frames += 1
        self._now_ns = recv_ns
        try:
            frame = self._decode(payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return self._two_step(payload, recv_ns)
        if frame.error is not None or frame.event in _NOT_PUSHES:
            return self._two_step(payload, recv_ns)
        try:
            return self._typed[type(frame)](frame.result, recv_ns)
        except ValueError:
            # Handlers keep no state but caches, so the reference path refuses the frame
            # again and names the reason.
            return self._two_step(payload, recv_ns)

    def _skip(self, result: msgspec.Raw, recv_ns: int) -> list[Output]:
        """A push of a channel that is valid but not consumed here."""
        self.stats.unknown += 1
        return []

    def _two_step(self, payload: bytes, recv_ns: int) -> list[Output]:
        """Envelope first, then ``result`` by channel: every frame the typed union refuses
        (acknowledgements, pongs, other channels, malformed pushes, which get their reason
        here) and the reference the union must equal."""
        try:
            frame = self._frame.decode(payload)
            if frame.error is None and frame.event not in _ACK_EVENTS:
                handler = self._handlers.get(frame.channel)
                if handler is not None:
                    result = frame.result
                    if not result or bytes(result) == b"null":
                        return [self.bad_frame(f"no result: {frame.channel}", payload, recv_ns)]
                    decode, on_result = handler
                    return on_result(decode(result), recv_ns)
            return self._control(frame, payload, recv_ns)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return [self.bad_frame(f"decode: {exc}", payload, recv_ns)]
        except SymbolError as exc:
            return [self.bad_frame(f"symbol: {exc}", payload, recv_ns)]
        except ValueError as exc:  # _BadFrame, bad trade time
            return [self.bad_frame(f"invalid: {exc}", payload, recv_ns)]

    def _on_obu(self, r: _Obu, recv_ns: int) -> list[Output]:
        symbol = self._obu_symbols.get(r.s)
        if symbol is None:
            symbol = self._obu_symbol(r.s)
        if r.full:
            return [
                BookUpdate(self.name, symbol, r.b, r.a, r.u, r.u, -1, True, None, r.t * MS, recv_ns)
            ]
        if r.U < 0:
            raise _BadFrame("spot.obu increment without U")
        return [
            BookUpdate(self.name, symbol, r.b, r.a, r.U, r.u, -1, False, None, r.t * MS, recv_ns)
        ]

    def _obu_symbol(self, stream: str) -> str:
        prefix, _, rest = stream.partition(".")
        pair, _, depth = rest.rpartition(".")
        if prefix != "ob" or not pair or not depth.isdigit():
            raise SymbolError(f"{stream!r} is not a spot.obu stream such as ob.BTC_USDT.50")
        symbol = self.names.to_common(pair)
        self._obu_symbols[stream] = symbol
        return symbol

    def _on_ob_update(self, r: _ObUpdate, recv_ns: int) -> list[Output]:
        symbol = self.names.to_common(r.s)
        if r.full:
            return [
                BookUpdate(self.name, symbol, r.b, r.a, r.u, r.u, -1, True, None, r.t * MS, recv_ns)
            ]
        return [
            BookUpdate(self.name, symbol, r.b, r.a, r.U, r.u, -1, False, None, r.t * MS, recv_ns)
        ]

    def _on_ticker(self, t: _BookTicker, recv_ns: int) -> list[Output]:
        symbol = self.names.to_common(t.s)
        return [Quote(self.name, symbol, t.b, t.B, t.a, t.A, t.u, t.t * MS, recv_ns)]

    def _on_trade(self, tr: _Trade, recv_ns: int) -> list[Output]:
        symbol = self.names.to_common(tr.currency_pair)
        side = BUY if tr.side == "buy" else SELL
        ts = ms_text_to_ns(tr.create_time_ms)
        return [Trade(self.name, symbol, tr.price, tr.amount, side, str(tr.id), ts, recv_ns)]

    def _control(self, frame: _Frame, payload: bytes, recv_ns: int) -> list[Output]:
        channel, event = frame.channel, frame.event
        if event == "upgrade":
            return [Reconnect("gateio: server requested a connection upgrade")]
        if frame.error is not None or event in _ACK_EVENTS:
            return self._ack(frame, recv_ns)
        if channel == PONG:
            self.pongs += 1
            self.last_pong_ns = recv_ns
            self.last_rtt_ns = recv_ns - self._last_ping_ns
            self._awaiting_pong_since = 0
            return []
        if channel in self.ignored_channels or channel == self._other_book_channel:
            self.stats.unknown += 1
            return []
        if channel:
            self.stats.unknown += 1
            return [self.bad_frame(f"unknown channel: {channel}", payload, recv_ns)]
        return [self.bad_frame("unknown frame: no channel", payload, recv_ns)]

    def _ack(self, frame: _Frame, recv_ns: int) -> list[Output]:
        request = self._requests.pop(frame.id, None) if type(frame.id) is int else None
        error = frame.error
        if error is None:
            return []  # error == null: the request succeeded
        entries = frame.payload or (request[1] if request else [])
        pairs = [p for p in map(_stream_pair, entries) if p]
        found = _PAIR_IN_TEXT.search(error.message)
        pair = found[1] if found else (pairs[0] if len(pairs) == 1 else "")
        try:
            symbol = self.names.to_common(pair) if pair else ""
        except SymbolError:
            symbol = ""
        return [self.venue_error(symbol, str(error.code), error.message, recv_ns)]

    # -- books -----------------------------------------------------------------
    def sequence_rule(self, symbol: str) -> SequenceRule:
        return self._rule

    def snapshot_url(self, symbol: str) -> str:
        pair = self.names.to_venue(symbol)
        return (
            f"{self.endpoints.rest_url}/api/v4/spot/order_book"
            f"?currency_pair={pair}&limit={self.snapshot_limit}&with_id=true"
        )

    def snapshot_request(self, symbol: str) -> list[Action]:
        """obu: unsubscribe + subscribe that one stream (a new full push follows); else REST."""
        if self.book_channel == "obu":
            self.resubscribes += 1
            payload = self.book_payload(symbol)
            return [
                self._request(OBU, "unsubscribe", payload),
                self._request(OBU, "subscribe", payload),
            ]
        return [FetchSnapshot(symbol, self.snapshot_url(symbol))]

    def parse_snapshot(self, symbol: str, body: bytes, recv_ns: int) -> BookUpdate:
        """A REST ``with_id=true`` order book; without ``id`` it cannot be aligned (ValueError)."""
        try:
            s = self._snapshot.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(
                f"{self.name} {symbol} order book snapshot: {exc}: {body[:200]!r}"
            ) from exc
        ts = (s.update or s.current) * MS
        return BookUpdate(
            self.name, symbol, s.bids, s.asks, s.id, s.id, -1, True, None, ts, recv_ns
        )

    # -- venue clock -----------------------------------------------------------
    def time_url(self) -> str:
        return f"{self.endpoints.rest_url}/api/v4/spot/time"

    def parse_server_time(self, body: bytes) -> tuple[int, int]:
        return server_time(self.name, body, _ServerTime, lambda t: t.server_time)


class _ServerTime(msgspec.Struct):
    server_time: int
