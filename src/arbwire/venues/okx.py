"""OKX v5 public market data: ``books`` (snapshot + seqId chain + CRC32), ``bbo-tbt``, ``trades``.

Protocol facts: ../shared/docs/exchange-protocols.md §3. Keepalive is the client's
text ``ping`` answered by a text ``pong``; the server drops a link that pushed no
data for 30 s, so ``on_timer`` pings after ``ping_after_s`` of silence and asks for
a reconnect when the pong is overdue.

Two ways to seed a book:

* ``snapshot_source="ws"`` (today's protocol): the first ``books`` push after a
  subscribe is the snapshot; a broken book is re-seeded by unsubscribe + subscribe.
* ``snapshot_source="rest"`` (OKX's announced procedure once the WS snapshot is
  withdrawn): WS snapshots are ignored, updates are buffered by the sync machine
  and the book is seeded from ``GET /api/v5/market/books?instId=..&sz=400``,
  whose ``seqId`` must be present (the client fails loudly otherwise).

Frames of the older format carry no ``seqId``; each then gets a per-symbol
counter so the sync machine still orders them, and the CRC32 checksum is the
only guard. A checksum of 0 (OKX's retirement of the field) is never checked.
"""

from __future__ import annotations

import re
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Literal

import msgspec

from arbwire.book import C_BOOK, C_EXTENSION, CBookSide, L2Book
from arbwire.model import BookUpdate, Level, Quote, Side, Trade
from arbwire.symbols import SymbolMap
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

OKX = Endpoints("wss://ws.okx.com:8443", "https://www.okx.com")
MS = 1_000_000
CHECKSUM_DEPTH = 25
DEFAULT_CHANNELS = ("books", "bbo-tbt", "trades")
SERVER_IDLE_TIMEOUT_S = 30.0

SnapshotSource = Literal["ws", "rest"]


# -- wire structs (private) -----------------------------------------------------------
class _Lvl(msgspec.Struct, array_like=True, gc=False):
    """``[px, sz, "0", orderCount]``: only the first two are kept (trailing items are skipped).

    Measured on the 287 real ``books`` updates (787 B average): decoding levels into
    this struct and building (px, sz) tuples costs 6.5 us/frame, against 7.5 for
    ``tuple[str, str, str, str]``, 7.9 for ``list[str]`` and 9.0 for ``tuple[str, ...]``
    slicing; decoding ``data`` in the same pass as the envelope (no ``Raw`` second
    pass) brings it to 5.2 us.
    """

    px: str
    sz: str


class _Arg(msgspec.Struct, gc=False):
    channel: str = ""
    instId: str = ""


class _Data(msgspec.Struct, gc=False):
    """One ``data[]`` item of any subscribed channel (books, bbo-tbt, trades).

    The level arrays stay raw here and go through ``_levels``: in C when the extension
    is built (straight into (px, sz) tuples, repeated texts shared), else msgspec.
    """

    asks: msgspec.Raw = msgspec.Raw(b"")  # empty when absent
    bids: msgspec.Raw = msgspec.Raw(b"")
    ts: str = ""
    checksum: int = 0
    seqId: int | None = None
    prevSeqId: int | None = None
    tradeId: str = ""
    px: str = ""
    sz: str = ""
    side: str = ""


class _Frame(msgspec.Struct, gc=False):
    arg: _Arg | None = None
    action: str = ""
    data: list[_Data] | None = None
    event: str = ""
    code: str | int = ""
    msg: str = ""
    id: str = ""


class _RestBook(msgspec.Struct):
    asks: msgspec.Raw  # through ``_levels``, as the stream's
    bids: msgspec.Raw
    ts: str = ""
    seqId: int | str | None = None


class _RestReply(msgspec.Struct):
    code: str | int = ""
    msg: str = ""
    data: list[_RestBook] = []


class _Bad(ValueError):
    """A frame that decoded but does not make sense; becomes a BadFrame."""


_KIND_BOOKS, _KIND_BBO, _KIND_TRADES = 0, 1, 2
_CHANNELS = {"books": _KIND_BOOKS, "bbo-tbt": _KIND_BBO, "trades": _KIND_TRADES}
_SIDES = {"buy": Side.BUY, "sell": Side.SELL}
_INFO_EVENTS = frozenset({"subscribe", "unsubscribe", "channel-conn-count"})
# "instId:BTC-USDTT doesn't exist" and '"instId" : "BTC-USD-191227"' in error texts
_ERR_INST = re.compile(r"instId\W{0,5}([A-Za-z0-9][A-Za-z0-9-]*)")
_BOOKS_INST = re.compile(rb'"channel"\s*:\s*"books"\s*,\s*"instId"\s*:\s*"([^"]{1,64})"')


# -- checksum --------------------------------------------------------------------------
def okx_checksum(bids: Sequence[tuple[str, str]], asks: Sequence[tuple[str, str]]) -> int:
    """OKX's signed CRC32 of ``bid1px:bid1sz:ask1px:ask1sz:...`` over the levels given.

    The levels must be the venue's own strings, best first, at most 25 a side;
    when one side runs out the other side's remaining levels follow. This is the
    reference: ``arbwire._book.okx_checksum`` computes the same value in C.
    """
    # measured: extending one list with the level tuples beats f-strings per level (4.4 vs 5.8 us)
    fields: list[str] = []
    for bid, ask in zip(bids, asks, strict=False):
        fields += bid
        fields += ask
    n = len(fields) >> 2
    for level in bids[n:]:
        fields += level
    for level in asks[n:]:
        fields += level
    crc = zlib.crc32(":".join(fields).encode())
    return crc - 0x1_0000_0000 if crc >= 0x8000_0000 else crc


_c_okx_checksum = C_BOOK.okx_checksum if C_BOOK is not None else None
_c_okx_levels = C_EXTENSION.okx_levels if C_EXTENSION is not None else None
_LEVELS = msgspec.json.Decoder(list[_Lvl]).decode


def _levels_py(raw: msgspec.Raw) -> list[Level]:
    """The reference, and where every input the C scanner is unsure of goes (its errors too)."""
    return [(lv.px, lv.sz) for lv in _LEVELS(raw)]


def level_decoder() -> Callable[[msgspec.Raw], list[Level]]:
    """A side's ``[[px, sz, "0", count], ...]`` -> [(px, sz), ...], with its own text cache.

    In C when the extension is built (``arbwire._levels.okx_levels``: straight into
    tuples, texts repeated from update to update shared, which also makes the book's
    lookups of them cheaper since a str keeps its hash), msgspec into ``_Lvl`` otherwise
    and for anything the scanner is unsure of. docs/benchmarks.md has the figures.
    """
    scan = _c_okx_levels
    if scan is None:
        return _levels_py
    texts = C_EXTENSION.Texts(4096)  # type: ignore[union-attr]

    def levels(raw: msgspec.Raw) -> list[Level]:
        out = scan(raw, texts)
        return out if out is not None else _levels_py(raw)

    return levels


# -- sequence rule -----------------------------------------------------------------------
class OkxRule(SequenceRule):
    """§3.6 seqId rules: an update applies when its ``prevSeqId`` is the last applied ``seqId``.

    That one test covers normal updates, the no-change heartbeat (``prevSeqId ==
    seqId``) and the maintenance reset (``seqId < prevSeqId``). An update lying
    wholly at or before the reference (``prevSeqId < ref`` and ``seqId <= ref``) is
    stale: leftovers of an old subscription, or diffs the snapshot already holds.
    REST seeding adds the documented first-event rule ``prevSeqId <= seqId_snap < seqId``.

    Known limit: ids are only ordered within one reset epoch. If diffs from before a
    maintenance reset are still buffered when a REST snapshot from after it arrives,
    they look newer than the snapshot and the book is fetched again until the
    buffer ages out; a WS-seeded book is not affected.
    """

    def __init__(self, snapshot_source: SnapshotSource = "ws") -> None:
        if snapshot_source not in ("ws", "rest"):
            raise ValueError(f"okx snapshot_source must be 'ws' or 'rest', not {snapshot_source!r}")
        self.snapshot_source = snapshot_source
        self.snapshot_in_stream = snapshot_source == "ws"

    def first(self, snap_id: int, upd: BookUpdate) -> Verdict:
        prev, seq = upd.prev_id, upd.last_id
        if prev == snap_id:
            return APPLY
        if prev < snap_id:
            if seq <= snap_id:
                return STALE
            if not self.snapshot_in_stream:
                return APPLY  # prevSeqId < snapshot seqId < seqId
        return GAP

    def next(self, last_id: int, upd: BookUpdate) -> Verdict:
        prev = upd.prev_id
        if prev == last_id:
            return APPLY
        if prev < last_id and upd.last_id <= last_id:
            return STALE
        return GAP

    def _checksum_py(self, book: L2Book) -> int:
        """The reference: ``okx_checksum`` over the book's top levels as text."""
        return okx_checksum(
            book.bids.text_levels(CHECKSUM_DEPTH), book.asks.text_levels(CHECKSUM_DEPTH)
        )

    def _checksum_c(self, book: L2Book) -> int:
        """The same value computed in C from the sides' own arrays.

        Every OKX update is checked, and the reference spends ~9.8 us of it on the real
        capture building tuples, a list and a joined str of 100 strings;
        ``arbwire._book.okx_checksum`` copies the 100 texts straight from the C sides'
        arrays into one bytes object for zlib.crc32. A book of Python sides (``PyL2Book``)
        takes the reference.
        """
        bids = book.bids
        if bids.__class__ is not CBookSide:
            return self._checksum_py(book)
        return _c_okx_checksum(bids, book.asks, CHECKSUM_DEPTH)  # type: ignore[misc]

    checksum = _checksum_c if C_BOOK is not None else _checksum_py


# -- symbols -----------------------------------------------------------------------------
class OkxSymbols(SymbolMap):
    """arbwire ``BTC-USDT-PERP`` <-> OKX ``BTC-USDT-SWAP``; every other name is the same on both."""

    __slots__ = ()

    def venue_name(self, symbol: str) -> str:
        return symbol[:-5] + "-SWAP" if symbol.endswith("-PERP") else symbol

    def common_name(self, name: str) -> str:
        return name[:-5] + "-PERP" if name.endswith("-SWAP") else name


REQUESTS_PER_HOUR = 480  # §3.3: subscribe/unsubscribe/login requests per hour per connection
HOUR_NS = 3_600_000_000_000


# -- session -----------------------------------------------------------------------------
class OkxSession(VenueSession):
    name = "okx"

    def __init__(
        self,
        symbols: Sequence[str],
        endpoints: Endpoints = OKX,
        *,
        snapshot_source: SnapshotSource = "ws",
        channels: Sequence[str] = DEFAULT_CHANNELS,
        snapshot_depth: int = 400,
        ping_after_s: float = 25.0,
        pong_timeout_s: float = 5.0,
        max_args_per_message: int = 100,
        max_requests_per_hour: int = REQUESTS_PER_HOUR,
    ) -> None:
        super().__init__(symbols, endpoints)
        if max_requests_per_hour < 2:
            raise ValueError(f"okx max_requests_per_hour must be at least 2, got {max_requests_per_hour}")
        if not 0 < ping_after_s < SERVER_IDLE_TIMEOUT_S:
            raise ValueError(
                f"okx ping_after_s must be in (0, 30): the server drops idle links at 30 s, got {ping_after_s}"
            )
        if pong_timeout_s <= 0:
            raise ValueError(f"okx pong_timeout_s must be positive, got {pong_timeout_s}")
        unknown = set(channels) - set(_CHANNELS)
        if unknown:
            raise ValueError(f"okx channels not supported: {sorted(unknown)}")
        self.snapshot_source: SnapshotSource = snapshot_source
        self.rest_seeded = snapshot_source == "rest"
        self.channels = tuple(channels)
        self.snapshot_depth = snapshot_depth
        self.ping_after_ns = int(ping_after_s * 1e9)
        self.pong_timeout_ns = int(pong_timeout_s * 1e9)
        self.max_args_per_message = max_args_per_message
        self.names = OkxSymbols(self.symbols)
        self._rule = OkxRule(snapshot_source)  # holds no state: one for every symbol
        self._decode = msgspec.json.Decoder(_Frame).decode
        self._levels = level_decoder()
        self._decode_rest = msgspec.json.Decoder(_RestReply).decode
        self._counter: dict[str, int] = {}  # symbol -> pseudo seqId for frames without one
        self._request_args: dict[str, list[str]] = {}  # request id -> instIds, to name errors
        self._next_id = 0
        # liveness and counters the monitor exports
        self.opened_ns = 0
        self.ping_sent_ns = 0  # 0 when no ping is outstanding
        self.last_pong_ns = 0
        self.last_rtt_ns = 0
        self.pings_sent = 0
        self.pongs = 0
        self.pongs_overdue = 0
        self.acks = 0
        self.requests = 0  # subscribe/unsubscribe messages sent on this link (OKX allows 480/h)
        self.max_requests_per_hour = max_requests_per_hour
        self._request_ns: deque[int] = deque()  # when this link's requests went, the last hour
        self._clock_ns = 0  # the session's idea of now: on_open and on_timer (twice a second)
        self.budget_reconnects = 0
        self.resubscribes = 0
        self.ws_snapshots_ignored = 0
        self.one_sided_bbo = 0

    # -- link ------------------------------------------------------------------------------
    def url(self) -> str:
        return self.endpoints.ws_url + "/ws/v5/public"

    def _request(self, op: str, args: list[dict[str, str]]) -> Send:
        self._next_id += 1
        rid = str(self._next_id)
        self._request_args[rid] = [a["instId"] for a in args]
        if len(self._request_args) > 1024:
            del self._request_args[next(iter(self._request_args))]
        self.requests += 1
        self._request_ns.append(self._clock_ns)
        return Send(msgspec.json.encode({"id": rid, "op": op, "args": args}).decode())

    def requests_left(self) -> int:
        """Subscribe/unsubscribe requests this connection may still send in the rolling hour."""
        sent, cutoff = self._request_ns, self._clock_ns - HOUR_NS
        while sent and sent[0] <= cutoff:
            sent.popleft()
        return self.max_requests_per_hour - len(sent)

    def on_open(self, now_ns: int) -> list[Action]:
        self.opened_ns = self._clock_ns = now_ns
        self.ping_sent_ns = 0
        self.requests = 0
        self._request_ns.clear()  # the limit is per connection: a new one starts afresh
        args = [
            {"channel": channel, "instId": self.names.to_venue(symbol)}
            for symbol in self.symbols
            for channel in self.channels
        ]
        step = max(1, self.max_args_per_message)
        return [self._request("subscribe", args[i : i + step]) for i in range(0, len(args), step)]

    def on_timer(self, now_ns: int, last_recv_ns: int) -> list[Action]:
        self._clock_ns = now_ns
        if self.ping_sent_ns:
            if now_ns - self.ping_sent_ns >= self.pong_timeout_ns:
                self.ping_sent_ns = 0
                self.pongs_overdue += 1
                return [Reconnect("okx pong overdue")]
            return []
        if now_ns - max(last_recv_ns, self.opened_ns) >= self.ping_after_ns:
            self.ping_sent_ns = now_ns
            self.pings_sent += 1
            return [Send("ping")]
        return []

    # -- frames ------------------------------------------------------------------------------
    def on_frame(self, payload: bytes, recv_ns: int) -> list[Output]:
        self.stats.frames += 1
        if payload == b"pong":
            self.pongs += 1
            self.last_pong_ns = recv_ns
            if self.ping_sent_ns:
                self.last_rtt_ns = recv_ns - self.ping_sent_ns
                self.ping_sent_ns = 0
            return []
        try:
            frame = self._decode(payload)
            if frame.event:
                return self._event(frame, payload, recv_ns)
            arg, data = frame.arg, frame.data
            if arg is None or data is None:
                raise _Bad("frame without arg/data")
            kind = _CHANNELS.get(arg.channel)
            if kind is None:
                self.stats.unknown += 1  # a channel this session did not ask for
                return []
            symbol = self.names.to_common(arg.instId)
            if kind == _KIND_BOOKS:
                return self._books(symbol, frame.action, data, recv_ns)
            if kind == _KIND_BBO:
                return self._bbo(symbol, data, recv_ns)
            return self._trades(symbol, data, recv_ns)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self._bad(f"decode: {exc}", payload, recv_ns)
        except _Bad as exc:
            return self._bad(str(exc), payload, recv_ns)
        except ValueError as exc:  # int(ts) of a non-number
            return self._bad(f"value: {exc}", payload, recv_ns)

    def _bad(self, reason: str, payload: bytes, recv_ns: int) -> list[Output]:
        # A lost ``books`` frame of the seqId-less format would go unnoticed by the
        # pseudo-seqId counter; skip one count so the next update is seen as a gap.
        m = _BOOKS_INST.search(payload)
        if m is not None:
            symbol = self.names.to_common(m[1].decode("utf-8", "replace"))
            if symbol in self._counter:
                self._counter[symbol] += 1
        return [self.bad_frame(reason, payload, recv_ns)]

    def _books(self, symbol: str, action: str, data: list[_Data], recv_ns: int) -> list[Output]:
        if action == "snapshot":
            snapshot = True
            if (
                self.rest_seeded
            ):  # the REST snapshot seeds the book; the WS one is not aligned to it
                self.ws_snapshots_ignored += 1
                return []
        elif action == "update":
            snapshot = False
        else:
            raise _Bad(f"books action {action!r}")
        out: list[Output] = []
        for d in data:
            asks, bids = d.asks, d.bids
            if not asks or not bids:
                raise _Bad("books without asks/bids")
            seq = d.seqId
            if seq is None:
                if self.rest_seeded:
                    raise _Bad("books without seqId: REST seeding needs it")
                seq = self._counter.get(symbol, 0) + 1
                self._counter[symbol] = seq
                prev = -1 if snapshot else seq - 1
            elif snapshot:
                prev = -1
            elif d.prevSeqId is None:
                raise _Bad("books update without prevSeqId")
            else:
                prev = d.prevSeqId
            out.append(
                BookUpdate(
                    self.name,
                    symbol,
                    self._levels(bids),
                    self._levels(asks),
                    seq,
                    seq,
                    prev,
                    snapshot,
                    d.checksum or None,
                    int(d.ts) * MS,
                    recv_ns,
                )
            )
        return out

    def _bbo(self, symbol: str, data: list[_Data], recv_ns: int) -> list[Output]:
        out: list[Output] = []
        for d in data:
            asks, bids = d.asks, d.bids
            if not asks or not bids:
                raise _Bad("bbo-tbt without asks/bids")
            ts = int(d.ts) * MS
            bid_levels, ask_levels = self._levels(bids), self._levels(asks)
            if not ask_levels or not bid_levels:
                self.one_sided_bbo += 1  # a Quote needs both sides
                continue
            (bid, bid_size), (ask, ask_size) = bid_levels[0], ask_levels[0]
            out.append(Quote(self.name, symbol, bid, bid_size, ask, ask_size, d.seqId or 0, ts, recv_ns))
        return out

    def _trades(self, symbol: str, data: list[_Data], recv_ns: int) -> list[Output]:
        out: list[Output] = []
        for d in data:
            side = _SIDES.get(d.side)
            if side is None:
                raise _Bad(f"trade side {d.side!r}")
            if not d.px or not d.sz:
                raise _Bad("trade without px/sz")
            out.append(
                Trade(self.name, symbol, d.px, d.sz, side, d.tradeId, int(d.ts) * MS, recv_ns)
            )
        return out

    def _event(self, frame: _Frame, payload: bytes, recv_ns: int) -> list[Output]:
        event = frame.event
        if event in _INFO_EVENTS:
            self.acks += 1
            return []
        code = str(frame.code)
        if event == "notice":
            if code == "64008":
                return [Reconnect(f"okx notice 64008: {frame.msg}")]
            return [self.venue_error("", code, frame.msg, recv_ns)]
        if event in ("error", "channel-conn-count-error"):
            return [self.venue_error(self._error_symbol(frame), code, frame.msg, recv_ns)]
        raise _Bad(f"unknown event {event!r}")

    def _error_symbol(self, frame: _Frame) -> str:
        """The symbol an error is about: its arg, the instId in its text, or its request's one instId."""
        if frame.arg is not None and frame.arg.instId:
            return self.names.to_common(frame.arg.instId)
        m = _ERR_INST.search(frame.msg)
        if m is not None:
            return self.names.to_common(m[1])
        inst_ids = set(self._request_args.get(frame.id, ()))
        if len(inst_ids) == 1:
            return self.names.to_common(inst_ids.pop())
        return ""

    # -- books -------------------------------------------------------------------------------
    def sequence_rule(self, symbol: str) -> SequenceRule:
        return self._rule

    def snapshot_url(self, symbol: str) -> str:
        return (
            f"{self.endpoints.rest_url}/api/v5/market/books"
            f"?instId={self.names.to_venue(symbol)}&sz={self.snapshot_depth}"
        )

    def snapshot_request(self, symbol: str) -> list[Action]:
        if self.rest_seeded:
            return [FetchSnapshot(symbol, self.snapshot_url(symbol))]
        if self.requests_left() < 2:
            # §3.3: past 480 requests an hour OKX refuses them on this connection; a new
            # connection has a fresh allowance and resubscribes every book (make-before-break)
            self.budget_reconnects += 1
            return [Reconnect(f"okx subscribe budget spent ({self.max_requests_per_hour}/h on this connection)")]
        self.resubscribes += 1
        args = [{"channel": "books", "instId": self.names.to_venue(symbol)}]
        return [self._request("unsubscribe", args), self._request("subscribe", args)]

    def parse_snapshot(self, symbol: str, body: bytes, recv_ns: int) -> BookUpdate:
        where = f"{self.name} {symbol} books snapshot"
        try:
            reply = self._decode_rest(body)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"{where}: {exc}: {body[:200]!r}") from exc
        if str(reply.code) != "0":
            raise ValueError(f"{where}: code {reply.code!r} {reply.msg!r}")
        if len(reply.data) != 1:
            raise ValueError(f"{where}: expected one book in data, got {len(reply.data)}")
        book = reply.data[0]
        if book.seqId is None:
            raise ValueError(
                f"{where}: no seqId, so it cannot be aligned with the stream: {body[:200]!r}"
            )
        try:
            seq = int(book.seqId)
            ts = int(book.ts) * MS if book.ts else 0
            bids, asks = self._levels(book.bids), self._levels(book.asks)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ValueError(f"{where}: {exc}: {body[:200]!r}") from exc
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
        return BookUpdate(self.name, symbol, bids, asks, seq, seq, -1, True, None, ts, recv_ns)

    # -- venue clock -------------------------------------------------------------------------
    def time_url(self) -> str:
        return f"{self.endpoints.rest_url}/api/v5/public/time"

    def parse_server_time(self, body: bytes) -> tuple[int, int]:
        def pick(reply: _TimeReply) -> str:
            if str(reply.code) != "0":
                raise ValueError(f"code {reply.code!r} {reply.msg!r}")
            return reply.data[0].ts

        return server_time(self.name, body, _TimeReply, pick)


class _TimeData(msgspec.Struct):
    ts: str


class _TimeReply(msgspec.Struct):
    code: str | int = ""
    msg: str = ""
    data: list[_TimeData] = []
