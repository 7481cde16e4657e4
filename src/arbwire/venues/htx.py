"""HTX (Huobi) spot public market data: gzip frames, JSON-number prices, ``mbp`` + ``req``.

Protocol facts: ../shared/docs/exchange-protocols.md §5 (and the §6 checklist).

Links. HTX splits its market data over two paths of one host: the incremental
``market.SYM.mbp.N`` book and its ``req`` snapshot live only on ``/feed``;
``depth.stepN`` full books, ``bbo`` and ``trade.detail`` are documented on ``/ws``
(whether ``/feed`` serves bbo/trades is unconfirmed). One ``HtxSession`` drives
one link, so the usual set-up is two sessions::

    HtxSession(symbols)                     # /feed: mbp.150 books (req snapshots)
    HtxSession(symbols, book_channel=None)  # /ws:   bbo + trade.detail
    HtxSession(symbols, book_channel="depth")  # /ws: 1 s full books + bbo + trades

Frames. Every server frame is gzip-compressed binary (data, acks, errors, pings).
``zlib.decompressobj(16 + MAX_WBITS)`` decompresses it: measured on the 292 real
``depth.step0`` frames (1.5 kB gzip, 3.9 kB JSON, ~200 levels) ``zlib`` takes
21 us/frame against 24 us for ``gzip.decompress``; the object form costs the
same as one-shot ``zlib.decompress`` and also tells a truncated stream from one
with trailing bytes, and bounds the output size.

Numbers. HTX sends prices and sizes as JSON numbers printed from binary doubles
(``14.909733438479636``, ``1.8E-4``, ``4.0E7``, ``188358.0``). They are decoded
EXACTLY as the literal text: msgspec's ``float_hook`` receives the raw literal
of every untyped float, which is kept as is unless it has an exponent, a sign or
more than 19 characters, in which case it goes through ``Decimal`` and
``arbwire.numbers.plain_text``.

Level arrays are cut out as ``msgspec.Raw`` and decoded in one msgspec call
(``_levels``). Digits and dots only: ``float_hook=str``, every literal is its own
text. Otherwise the hook is a lookup in a table from literal to text
(``_LiteralTexts``), so a literal seen before (prices and most sizes of a book
repeat from frame to frame) costs a dict hit inside msgspec and only a new one runs
Python. Counting ``"``, ``[`` and ``.`` in the bytes then shows whether every value
was a float literal; ints (``mbp`` sends ``0`` and ``9144``) take one pass through
``_number``, and anything else, including every error, goes to ``_levels_careful``,
the reference, which checks each value on its own and tells a JSON string
(``"9138.6"``) from a float literal by a marker ``str`` subclass. Measured on the
292 real ``depth.step0`` frames (``bench/htx_decode.py``, minimum of 30 runs):
before, msgspec parsed the arrays in 15 us/frame, the float hook added 15 and the
Python step per value 55 (levels 88 us/frame, the whole ``on_frame`` 119 with 16
of gunzip and 9 of envelope and tick); now levels take 41 (59 from empty tables)
and ``on_frame`` 74. On synthetic 150-level arrays where every size is new:
digits and dots 32 us against 37; exponent prices 66 against 68 (a new literal's
Python call costs what the careful step did).

Sizes with more than 18 decimals (float noise such as ``1.2345678901234567E-5``)
are rounded half-even to 18 decimals, the engine's exact resolution
(``arbwire.numbers.SCALE_DIGITS``), and a non-zero size never rounds to zero. A
price with more than 18 decimals is a bad frame.

Books. ``mbp``: subscribe, then on the first increment the feed asks for a
snapshot and this session sends ``req`` for the same topic on the same link (at
most one ``req`` per ``req_interval_s`` per link, HTX allows one per 100 ms; the
rest wait in a queue drained by later frames and the timer). The ``rep`` can be
older than increments already buffered by ``BookSync``; ``HtxMbpRule`` aligns
backwards (drop ``seqNum <= snapshot``, the first kept one has ``prevSeqNum ==
snapshot``), then each ``prevSeqNum`` must equal the last applied ``seqNum``
(``seqNum`` itself is not contiguous). A ``rep`` with ``data: null`` or a
``req`` error is a failed snapshot: reported as a ``VenueError`` and retried with
backoff. A ``429 too many request`` answer is the session's own pacing falling short
(the gap HTX measures is between arrivals, and a send can leave late on a busy loop):
it is asked again, logged rather than reported (a warning once the spacing is at its
ceiling), and the spacing between ``req``s doubles (at most ``req_interval_max_s``),
easing back to ``req_interval_s`` by a tenth with every answered ``req``. ``depth``:
every frame is a full book, emitted as a snapshot ``BookUpdate``; older or repeated
``version`` values are dropped.

Keepalive. The server sends ``{"ping": n}`` every 5 s and drops the link after
two unanswered ones; the answer ``{"pong":n}`` (same integer, same text the
reference client sent) is always the first output of that frame. ``on_timer``
asks for a ``Reconnect`` when no ping came for ``ping_timeout_s``.
"""

from __future__ import annotations

import logging
import struct
import zlib
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Context, Decimal
from typing import Any, Union

import msgspec

from arbwire.book import C_EXTENSION
from arbwire.model import BUY, SELL, BadFrame, BookUpdate, Level, Quote, Trade
from arbwire.numbers import SCALE_DIGITS, plain_text
from arbwire.symbols import GluedSymbols
from arbwire.sync import APPLY, GAP, STALE, PrevIdChain, SequenceRule, Verdict
from arbwire.venues.base import (
    Action,
    Endpoints,
    Output,
    Reconnect,
    Send,
    VenueSession,
    server_time,
)

HTX = Endpoints("wss://api.huobi.pro", "https://api.huobi.pro")
HTX_AWS = Endpoints("wss://api-aws.huobi.pro", "https://api-aws.huobi.pro")
MS = 1_000_000
log = logging.getLogger("arbwire.venues")
MBP_LEVELS = (5, 20, 150)  # the levels HTX serves a ``req`` snapshot for
_GZIP_WBITS = 16 + zlib.MAX_WBITS


def _load_libdeflate():  # type: ignore[no-untyped-def]
    try:
        import deflate
    except ImportError:
        return None, zlib.crc32, ()
    return deflate.gzip_decompress, deflate.crc32, (deflate.DeflateError, ValueError)


_LIBDEFLATE, _CRC32, _LIBDEFLATE_ERRORS = _load_libdeflate()
_TRAILER = struct.Struct("<II").unpack_from  # gzip's CRC32 and ISIZE, little-endian


def _gunzip_fast(payload: bytes, limit: int) -> bytes | bytearray | None:
    """One gzip member, whole, by libdeflate; None when it is not that plainly (the zlib
    path then decides and words the error).

    Every HTX frame is a separate gzip member, so zlib sets up (and frees) a 32 KB
    window for each; libdeflate decodes a whole buffer at once: 3.1 -> 2.5 µs for an
    ``mbp`` increment, 15.6 -> 8.5 µs for a 150-level ``depth.step0`` book
    (docs/benchmarks.md). It stops after the first member and trusts the trailer's
    length (a zeroed trailer gives an empty answer), so the answer is kept only if the
    frame's last eight bytes are that member's own CRC and length, i.e. nothing trails
    it (unless what trails ends in the very same CRC and length: a second copy of the
    member, which decodes as the one). The length is checked against ``limit`` before
    anything is allocated. The text is libdeflate's own buffer (a bytearray, not copied):
    msgspec decodes it as it is.
    """
    n = len(payload)
    if _LIBDEFLATE is None or n < 18:
        return None
    crc, size = _TRAILER(payload, n - 8)
    if size > limit:
        return None
    try:
        text = _LIBDEFLATE(payload)
    except _LIBDEFLATE_ERRORS:
        return None
    if size != len(text) or crc != _CRC32(text):
        return None
    return text


# -- numbers -------------------------------------------------------------------


class _Lit(str):
    """A JSON float literal exactly as written (``float_hook``), told apart from a JSON string."""

    __slots__ = ()


_CTX = Context(prec=200)
_QUANTUM = Decimal(1).scaleb(-SCALE_DIGITS)
_MAX_ADJUSTED = 40  # 1e40: no price or size is larger; bounds the text a literal can expand to
# Literal -> plain text for literals that needed Decimal (exponent, long). Prices and
# sizes repeat from frame to frame (a depth.step0 book barely moves in 1 s), so this
# turns most of the Decimal work on small-price symbols (9.121E-7) into a dict hit.
_NORMALIZED: dict[str, str] = {}
_NORMALIZED_MAX = 1 << 16


def _normalize(text: str, size: bool) -> str:
    """Plain decimal text for a JSON number literal that is not already plain and short."""
    value = Decimal(text)  # a JSON number literal always parses
    if value.is_signed():
        if value:
            raise ValueError(f"negative number {text}")
        return "0"
    if not value:
        return "0"
    adjusted = value.adjusted()
    if adjusted > _MAX_ADJUSTED:
        raise ValueError(f"number out of range {text}")
    if adjusted >= -SCALE_DIGITS:
        out = plain_text(value)
        dot = out.find(".")
        if dot >= 0 and len(out) - dot - 1 > SCALE_DIGITS:  # trailing zeros are no precision
            out = plain_text(value.normalize(_CTX))
            dot = out.find(".")
        if dot < 0 or len(out) - dot - 1 <= SCALE_DIGITS:
            if len(_NORMALIZED) >= _NORMALIZED_MAX:
                _NORMALIZED.clear()
            _NORMALIZED[text] = out
            return out
    # more than 18 decimals
    if not size:
        raise ValueError(f"price {text} has more than {SCALE_DIGITS} decimals")
    if adjusted < -SCALE_DIGITS - 1:
        return plain_text(_QUANTUM)  # dust: keep the level, at the smallest size the engine holds
    return plain_text(value.quantize(_QUANTUM, ROUND_HALF_EVEN, _CTX) or _QUANTUM)


def _plain(value: object, size: bool) -> str:
    """Text of one value decoded with ``float_hook=str`` from bytes holding no JSON string."""
    if value.__class__ is str:
        text: str = value  # type: ignore[assignment]
        if len(text) <= 19 and text[0] != "-" and "E" not in text and "e" not in text:
            return text
        return _NORMALIZED.get(text) or _normalize(text, size)
    return _number(value, size)


def _number(value: object, size: bool) -> str:
    """Text of one value decoded with ``float_hook=_Lit``: an ``int`` or a ``_Lit``, else ValueError."""
    cls = value.__class__
    if cls is _Lit:
        return _plain(str(value), size)
    if cls is int:
        if value < 0:  # type: ignore[operator]
            raise ValueError(f"negative number {value}")
        return str(value)
    raise ValueError(f"not a JSON number: {value!r}")


_LEVELS = msgspec.json.Decoder(list[tuple[Any, Any]], float_hook=str)
_LEVELS_CHECKED = msgspec.json.Decoder(list[tuple[Any, Any]], float_hook=_Lit)


def _levels_careful(raw: msgspec.Raw | bytes) -> list[Level]:
    """``[[price, size], ...]`` JSON numbers -> exact plain decimal text levels, any input.

    The reference for ``_levels``, and where it sends everything it is not sure of:
    the level text and the error of every input come from here.
    """
    if not raw:
        return []
    data = bytes(raw)
    if b'"' in data:  # a JSON string somewhere: tell float literals from strings
        return [(_number(p, False), _number(s, True)) for p, s in _LEVELS_CHECKED.decode(data)]
    levels = _LEVELS.decode(data)  # every str in here is a float literal
    if b"E" in data or b"e" in data or b"-" in data:
        return [(_plain(p, False), _plain(s, True)) for p, s in levels]
    # plain non-negative literals only: touch ints and overlong texts, nothing else
    for i, (p, s) in enumerate(levels):
        if p.__class__ is not str or s.__class__ is not str or len(p) > 19 or len(s) > 19:
            levels[i] = (_plain(p, False), _plain(s, True))
    return levels


class _Undecided(Exception):
    """A literal whose text depends on being a price or a size, or that is refused."""


class _LiteralTexts(dict[str, str]):
    """Float literal -> the text ``_plain`` gives it, for literals where price and size agree.

    Its ``__getitem__`` is the ``float_hook`` of ``_LEVELS_TEXT``: a hit never runs
    Python code, which is what makes exponent-heavy books cheap (small-price symbols
    print every price as ``9.121E-7``, and a book barely moves from frame to frame).
    Literals whose text would differ by role (more than 18 decimals) or that
    ``_plain`` refuses raise ``_Undecided`` and never enter the table.
    """

    __slots__ = ()

    def __missing__(self, literal: str) -> str:
        if len(literal) <= 19 and literal[0] != "-" and "E" not in literal and "e" not in literal:
            text = literal
        else:
            try:
                # a price's text is a size's text unless it has more than 18 decimals,
                # which raises here for a price
                text = _NORMALIZED.get(literal) or _normalize(literal, False)
            except (ValueError, ArithmeticError):
                raise _Undecided(literal) from None
        if len(self) >= _TEXTS_MAX:
            self.clear()
        self[literal] = text
        return text


_TEXTS_MAX = 1 << 15  # emptied when full: ~0.9 ms at this size, once per 32k new literals
_TEXTS = _LiteralTexts()
_LEVELS_TEXT = msgspec.json.Decoder(list[tuple[Any, Any]], float_hook=_TEXTS.__getitem__)
_PLAIN_CHARS = bytes.maketrans(b"0123456789.", b"0" * 11)
_c_htx_levels = C_EXTENSION.htx_levels if C_EXTENSION is not None else None
_OVERLONG = b"0" * 20  # a literal of 20+ characters, once ``_PLAIN_CHARS`` is applied


def _levels(raw: msgspec.Raw) -> list[Level]:
    """``[[price, size], ...]`` JSON numbers -> exact plain decimal text levels.

    The same text and the same errors as ``_levels_careful``, with no Python step
    per value when the bytes show every value is a float literal with a dot (how
    HTX prints its doubles: ``61234.5``, ``9.121E-7``, ``4.0E7``): no JSON string
    (``"``), no array inside a level (``[`` count) and two dots per level. Other
    values (``0`` and ``9144`` in ``mbp`` increments, ``null``) take one pass over
    the levels; anything else and every error go to the careful path.
    """
    if not raw:
        return []
    data = bytes(raw)
    if _c_htx_levels is not None:
        # the common shape, in C: plain literals are their own text, the others come from
        # the table this function's msgspec hook fills; None means "not sure", decided below
        levels = _c_htx_levels(data, _TEXTS)
        if levels is not None:
            return levels
    if b'"' in data:
        return _levels_careful(data)
    try:
        if b"E" in data or b"e" in data or b"-" in data or _OVERLONG in data.translate(_PLAIN_CHARS):
            levels = _LEVELS_TEXT.decode(data)
        else:
            # short digits-and-dot literals are their own text, and most are new
            # (sizes), so no table: ``float_hook=str`` costs nothing per value
            levels = _LEVELS.decode(data)
    except (_Undecided, msgspec.DecodeError):
        return _levels_careful(data)
    n = len(levels)
    if data.count(b"[") != n + 1:  # an array inside a level: the careful path words the error
        return _levels_careful(data)
    if data.count(b".") != 2 * n:
        _other_values(levels)
    return levels


def _other_values(levels: list[Any]) -> None:
    """Pass values that are not float literals (ints, ``null``, bools) through ``_number``.

    Every ``str`` in ``levels`` is already final text, so the first error raised
    here is the first ``_levels_careful`` raises on the same levels.
    """
    for i, (p, s) in enumerate(levels):
        if p.__class__ is not str or s.__class__ is not str:
            levels[i] = (
                p if p.__class__ is str else _number(p, False),
                s if s.__class__ is str else _number(s, True),
            )


# -- wire structs ----------------------------------------------------------------


class _Envelope(msgspec.Struct, gc=False):
    """Any server frame; ``tick``/``data`` stay raw until the channel is known."""

    ch: str | None = None
    ts: int = 0
    tick: msgspec.Raw = msgspec.Raw()
    ping: int | None = None
    id: int | str | None = None
    status: str | None = None
    subbed: Any = None
    unsubbed: Any = None
    rep: str | None = None
    data: msgspec.Raw = msgspec.Raw()
    err_code: Any = msgspec.field(name="err-code", default=None)
    err_msg: Any = msgspec.field(name="err-msg", default=None)


class _MbpTick(msgspec.Struct, gc=False):
    seqNum: int
    prevSeqNum: int
    bids: msgspec.Raw = msgspec.Raw()
    asks: msgspec.Raw = msgspec.Raw()


class _RepData(msgspec.Struct, gc=False):
    seqNum: int
    bids: msgspec.Raw = msgspec.Raw()
    asks: msgspec.Raw = msgspec.Raw()


class _DepthTick(msgspec.Struct, gc=False):
    bids: msgspec.Raw = msgspec.Raw()
    asks: msgspec.Raw = msgspec.Raw()
    version: int = 0
    ts: int = 0


class _BboTick(msgspec.Struct, gc=False):
    bid: Any
    bidSize: Any
    ask: Any
    askSize: Any
    seqId: int = 0
    quoteTime: int = 0


class _TradeItem(msgspec.Struct, gc=False):
    # ``id`` (a ~28-digit number) is not declared: skipped, never converted
    tradeId: int
    price: Any
    amount: Any
    direction: str
    ts: int = 0


class _TradeTick(msgspec.Struct, gc=False):
    data: list[_TradeItem]
    ts: int = 0


# -- sequence rules ----------------------------------------------------------------


class HtxMbpRule(PrevIdChain):
    """§5.6: align the ``req`` snapshot backwards, then ``prevSeqNum == last seqNum``.

    ``seqNum`` is not contiguous, so ids are never compared by +1. After a
    snapshot with ``seqNum = S``: increments with ``seqNum <= S`` are already in
    it; the first one kept must have ``prevSeqNum == S``. Afterwards an increment
    whose ``seqNum`` is not newer than the last applied one is a duplicate.
    """

    def first(self, snap_id: int, upd: BookUpdate) -> Verdict:
        if upd.last_id <= snap_id:
            return STALE
        if upd.prev_id == snap_id:
            return APPLY
        return GAP


class HtxDepthRule(SequenceRule):
    """``depth.stepN``: every message is a full book, so there is nothing to chain."""

    snapshot_in_stream = True


# -- session -----------------------------------------------------------------------

_KIND_MBP, _KIND_DEPTH, _KIND_BBO, _KIND_TRADE, _KIND_OTHER = range(5)
_THROTTLED = "too many request"  # HTX's err-msg "429 too many request"
_NO_RETRY = ("invalid symbol", "invalid topic", "symbol trade not open")


class HtxSession(VenueSession):
    """One HTX link (``/feed`` or ``/ws``), sans-I/O.

    ``book_channel``: ``"mbp"`` (incremental ``mbp.<mbp_levels>`` + ``req``, on
    ``/feed``), ``"depth"`` (1 s full books ``depth.<depth_type>``, on ``/ws``) or
    ``None`` (no book). ``link`` defaults to ``"feed"`` for mbp and ``"ws"``
    otherwise. ``quotes``/``trades`` (``bbo``, ``trade.detail``) default to on
    for the ``/ws`` link and off for ``/feed``; ``ws_companion`` (default: on for a
    ``/feed`` link without them) has the link open a ``/ws`` connection beside it
    for them (``companions()``).
    """

    name = "htx"

    def __init__(
        self,
        symbols: Sequence[str],
        endpoints: Endpoints = HTX,
        *,
        book_channel: str | None = "mbp",
        link: str | None = None,
        mbp_levels: int = 150,
        depth_type: str = "step0",
        quotes: bool | None = None,
        trades: bool | None = None,
        ws_companion: bool | None = None,
        ping_timeout_s: float = 15.0,
        req_interval_s: float = 0.12,
        req_interval_max_s: float = 2.0,
        req_timeout_s: float = 5.0,
        req_retry_max_s: float = 30.0,
        max_frame_bytes: int = 16 << 20,
    ) -> None:
        super().__init__(symbols, endpoints)
        if book_channel not in ("mbp", "depth", None):
            raise ValueError(f"book_channel must be 'mbp', 'depth' or None, not {book_channel!r}")
        if link is None:
            link = "feed" if book_channel == "mbp" else "ws"
        if link not in ("feed", "ws"):
            raise ValueError(f"link must be 'feed' or 'ws', not {link!r}")
        if book_channel == "mbp" and link != "feed":
            raise ValueError("HTX serves mbp increments and their req snapshot only on /feed")
        if book_channel == "depth" and link != "ws":
            raise ValueError("HTX serves depth.stepN on /ws")
        if book_channel == "mbp" and mbp_levels not in MBP_LEVELS:
            raise ValueError(f"mbp_levels must be one of {MBP_LEVELS} (HTX req serves only these)")
        self.book_channel = book_channel
        self.link = link
        self.mbp_levels = mbp_levels
        self.depth_type = depth_type
        self.quotes = link == "ws" if quotes is None else quotes
        self.trades = link == "ws" if trades is None else trades
        # /feed carries no bbo or trades (documented on /ws only): a second link brings them
        if ws_companion is None:
            ws_companion = link == "feed" and not (self.quotes or self.trades)
        self.ws_companion = ws_companion
        self.carries_books = book_channel is not None
        self._ping_timeout_s = ping_timeout_s
        self.ping_timeout_ns = int(ping_timeout_s * 1e9)
        if not 0 < req_interval_s <= req_interval_max_s:
            raise ValueError(
                f"req_interval_s must be positive and at most req_interval_max_s ({req_interval_max_s}),"
                f" got {req_interval_s}"
            )
        self.req_interval_ns = int(req_interval_s * 1e9)
        self.req_interval_max_ns = int(req_interval_max_s * 1e9)
        self.req_gap_ns = self.req_interval_ns  # the spacing in force: widened by throttle answers
        self.req_timeout_ns = int(req_timeout_s * 1e9)
        self.req_retry_max_ns = int(req_retry_max_s * 1e9)
        self.max_frame_bytes = max_frame_bytes
        self.names = GluedSymbols(self.symbols, lower=True)
        self._rule: SequenceRule = HtxMbpRule() if book_channel == "mbp" else HtxDepthRule()
        self._env = msgspec.json.Decoder(_Envelope)
        self._mbp = msgspec.json.Decoder(_MbpTick)
        self._rep = msgspec.json.Decoder(_RepData)
        self._depth = msgspec.json.Decoder(_DepthTick)
        self._bbo = msgspec.json.Decoder(_BboTick, float_hook=_Lit)
        self._trade = msgspec.json.Decoder(_TradeTick, float_hook=_Lit)
        self._tick_decoders: dict[int, msgspec.json.Decoder[Any]] = {
            _KIND_MBP: self._mbp, _KIND_DEPTH: self._depth, _KIND_BBO: self._bbo, _KIND_TRADE: self._trade,
        }
        self._routes: dict[str, tuple[int, str]] = {}
        self._typed: dict[type, tuple[int, str]] = {}
        self._decode = self._typed_decoder().decode
        # counters the monitor may export
        self.pings = 0
        self.snapshots_failed = 0
        self.req_timeouts = 0
        self.req_throttled = 0
        self.stale_depth = 0
        self._next_id = 0  # ids never repeat over the session's life, across links
        self._reset(None)

    def companions(self) -> list[VenueSession]:
        """With ``ws_companion``: a ``/ws`` session for bbo and trade.detail of the same
        symbols, beside this ``/feed`` one (its mbp books)."""
        if not self.ws_companion:
            return []
        return [
            HtxSession(
                self.symbols, self.endpoints, book_channel=None, link="ws",
                ping_timeout_s=self._ping_timeout_s, max_frame_bytes=self.max_frame_bytes,
            )
        ]

    def _reset(self, now_ns: int | None) -> None:
        self._now_ns = now_ns or 0
        self._last_ping_ns = now_ns  # None until the link opens or the timer first runs
        self._requests: dict[str, tuple[str, str, bool]] = {}  # id -> (symbol, topic, is_req)
        self._pending: dict[str, int] = {}  # symbol -> earliest ns its req may go
        self._outstanding: dict[str, tuple[str, int]] = {}  # symbol -> (req id, sent ns)
        self._failures: dict[str, int] = {}
        self._last_req_ns: int | None = None
        self._depth_seen: dict[str, int] = {}

    # -- topics and link ------------------------------------------------------------
    def book_topic(self, symbol: str) -> str | None:
        name = self.names.to_venue(symbol)
        if self.book_channel == "mbp":
            return f"market.{name}.mbp.{self.mbp_levels}"
        if self.book_channel == "depth":
            return f"market.{name}.depth.{self.depth_type}"
        return None

    def topics(self) -> list[tuple[str, str]]:
        """(symbol, topic) for every subscription of this link."""
        out = []
        for symbol in self.symbols:
            name = self.names.to_venue(symbol)
            book = self.book_topic(symbol)
            if book:
                out.append((symbol, book))
            if self.quotes:
                out.append((symbol, f"market.{name}.bbo"))
            if self.trades:
                out.append((symbol, f"market.{name}.trade.detail"))
        return out

    def url(self) -> str:
        return f"{self.endpoints.ws_url}/{self.link}"

    def _new_id(self, symbol: str, topic: str, is_req: bool) -> str:
        self._next_id += 1
        rid = str(self._next_id)
        self._requests[rid] = (symbol, topic, is_req)
        return rid

    def on_open(self, now_ns: int) -> list[Action]:
        # Snapshots asked for and not received die with the old link; ask again on this
        # one (the book may still wait for them if the feed was not told the link dropped).
        waiting = [*self._pending, *self._outstanding]
        self._reset(now_ns)
        self._pending.update(dict.fromkeys(waiting, 0))
        out: list[Action] = []
        for symbol, topic in self.topics():
            rid = self._new_id(symbol, topic, False)
            out.append(Send(f'{{"sub":"{topic}","id":"{rid}"}}'))
        return out

    def on_timer(self, now_ns: int, last_recv_ns: int) -> list[Action]:
        self._now_ns = now_ns
        out: list[Action] = []
        if self._last_ping_ns is None:
            self._last_ping_ns = now_ns
        elif now_ns - self._last_ping_ns >= self.ping_timeout_ns:
            silent_s = (now_ns - self._last_ping_ns) / 1e9
            self._last_ping_ns = now_ns  # one Reconnect per silent period
            out.append(Reconnect(f"htx: no ping from the server for {silent_s:.1f} s"))
        for symbol, (rid, sent_ns) in list(self._outstanding.items()):
            if now_ns - sent_ns >= self.req_timeout_ns:
                self.req_timeouts += 1
                del self._outstanding[symbol]
                self._requests.pop(rid, None)
                self._pending.setdefault(symbol, 0)
        out += self._drain(now_ns)
        return out

    # -- snapshots (req on the same link) ---------------------------------------------
    def sequence_rule(self, symbol: str) -> SequenceRule:
        return self._rule

    def snapshot_request(self, symbol: str) -> list[Action]:
        """``req`` the mbp topic now, or as soon as HTX's one-req-per-100-ms allows."""
        if self.book_channel != "mbp":
            return []  # depth books are full every second; nothing to ask for
        if symbol not in self._outstanding:
            self._pending[symbol] = 0
        return self._drain(self._now_ns)

    def _drain(self, now_ns: int) -> list[Action]:
        if not self._pending:
            return []
        last = self._last_req_ns
        if last is not None and 0 <= now_ns - last < self.req_gap_ns:
            return []
        symbol = next((s for s, not_before in self._pending.items() if not_before <= now_ns), None)
        if symbol is None:
            return []
        del self._pending[symbol]
        topic = self.book_topic(symbol)
        assert topic is not None
        rid = self._new_id(symbol, topic, True)
        self._outstanding[symbol] = (rid, now_ns)
        self._last_req_ns = now_ns
        return [Send(f'{{"req":"{topic}","id":"{rid}"}}')]

    def _snapshot_failed(self, symbol: str, retry: bool, throttled: bool = False) -> None:
        self.snapshots_failed += 1
        outstanding = self._outstanding.pop(symbol, None)
        if outstanding:
            self._requests.pop(outstanding[0], None)
        if throttled and symbol:
            # nothing wrong with the req: ask again once the (widened) spacing allows
            self._pending[symbol] = self._now_ns
        elif retry and symbol:
            failures = self._failures.get(symbol, 0) + 1
            self._failures[symbol] = failures
            delay = min(self.req_retry_max_ns, self.req_interval_ns * 5 * (1 << min(failures, 20)))
            self._pending[symbol] = self._now_ns + delay

    # -- frames ----------------------------------------------------------------------
    def _route(self, ch: str) -> tuple[int, str]:
        parts = ch.split(".")
        kind = _KIND_OTHER
        if len(parts) >= 3 and parts[0] == "market":
            channel = parts[2]
            # only the book this session keeps: mbp.5 and mbp.150 of one symbol are two books
            if channel == "mbp" and len(parts) == 4 and parts[3] == str(self.mbp_levels):
                kind = _KIND_MBP if self.book_channel == "mbp" else _KIND_OTHER
            elif channel == "depth" and len(parts) == 4 and parts[3] == self.depth_type:
                kind = _KIND_DEPTH if self.book_channel == "depth" else _KIND_OTHER
            elif channel == "bbo" and len(parts) == 3:
                kind = _KIND_BBO
            elif channel == "trade" and len(parts) == 4 and parts[3] == "detail":
                kind = _KIND_TRADE
        symbol = self.names.to_common(parts[1]) if kind != _KIND_OTHER else ""
        route = (kind, symbol)
        self._routes[ch] = route
        return route

    def _typed_decoder(self) -> msgspec.json.Decoder[Any]:
        """One decoder for the data frames of every topic this session subscribes: a
        tagged union with one Struct per topic (the tag is ``ch``), so a book increment,
        quote or trade is parsed in one pass and its type names its route. Every other
        frame (ping, replies, errors, a topic not asked for) fails it and takes the
        envelope path, which is also the reference the union is tested against."""
        ticks = {_KIND_MBP: _MbpTick, _KIND_DEPTH: _DepthTick, _KIND_BBO: _BboTick, _KIND_TRADE: _TradeTick}
        members: list[type] = []
        seen: set[str] = set()
        for _, topic in self.topics():
            route = self._routes.get(topic) or self._route(topic)
            if route[0] == _KIND_OTHER or topic in seen:  # a symbol given twice
                continue
            seen.add(topic)
            cls = msgspec.defstruct(
                f"_{len(members)}", [("tick", ticks[route[0]]), ("ts", int, 0)], tag_field="ch", tag=topic, gc=False
            )
            self._typed[cls] = route
            members.append(cls)
        if not members:  # nothing subscribed: every frame takes the envelope path
            members.append(msgspec.defstruct("_none", [("tick", msgspec.Raw)], tag_field="ch", tag="", gc=False))
        return msgspec.json.Decoder(Union[tuple(members)], float_hook=_Lit)  # noqa: UP007  (a runtime tuple)

    def on_frame(self, payload: bytes, recv_ns: int) -> list[Output]:
        self.stats.frames += 1
        self._now_ns = recv_ns
        text = _gunzip_fast(payload, self.max_frame_bytes)
        if text is None:
            text = self._gunzip(payload, recv_ns)
            if text.__class__ is BadFrame:
                return [text]  # type: ignore[list-item]
        try:
            try:
                frame = self._decode(text)
            except (msgspec.DecodeError, msgspec.ValidationError):
                out = self._envelope(text, recv_ns)  # type: ignore[arg-type]
            else:
                kind, symbol = self._typed[frame.__class__]
                out = self._tick(kind, symbol, frame.tick, frame.ts, recv_ns)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return [self.bad_frame(f"decode: {exc}", text, recv_ns)]  # type: ignore[arg-type]
        except (ValueError, ArithmeticError) as exc:  # a number, a symbol we cannot map
            return [self.bad_frame(f"value: {exc}", text, recv_ns)]  # type: ignore[arg-type]
        if self._pending:
            out += self._drain(recv_ns)
        return out

    def _gunzip(self, payload: bytes, recv_ns: int) -> bytes | BadFrame:
        """zlib's gunzip, with the frame checks: the reference and the fallback of
        ``_gunzip_fast``, and the one that words every error."""
        try:
            d = zlib.decompressobj(_GZIP_WBITS)
            text = d.decompress(payload, self.max_frame_bytes)
            if d.unconsumed_tail:
                return self.bad_frame(f"gzip: more than {self.max_frame_bytes} bytes", payload, recv_ns)
            if not d.eof:
                return self.bad_frame("gzip: truncated stream", payload, recv_ns)
            if d.unused_data:
                return self.bad_frame("gzip: trailing bytes after the stream", payload, recv_ns)
        except zlib.error as exc:
            return self.bad_frame(f"gzip: {exc}", payload, recv_ns)
        return text

    def _envelope(self, text: bytes, recv_ns: int) -> list[Output]:
        """Any frame, envelope first: control frames, and data frames the union refused."""
        env = self._env.decode(text)
        ch = env.ch
        if ch is not None and env.tick:
            kind, symbol = self._routes.get(ch) or self._route(ch)
            decoder = self._tick_decoders.get(kind)
            if decoder is None:
                self.stats.unknown += 1
                return []
            return self._tick(kind, symbol, decoder.decode(env.tick), env.ts, recv_ns)
        if env.ping is not None:
            self.pings += 1
            self._last_ping_ns = recv_ns
            return [Send(f'{{"pong":{env.ping}}}')]
        return self._control(env, text, recv_ns)

    def _tick(self, kind: int, symbol: str, t: Any, env_ts: int, recv_ns: int) -> list[Output]:
        """One decoded ``tick`` of a data topic: its book update, quote or trades."""
        if kind == _KIND_MBP:
            return [
                BookUpdate(
                    self.name, symbol, _levels(t.bids), _levels(t.asks), t.prevSeqNum + 1,
                    t.seqNum, t.prevSeqNum, False, None, env_ts * MS, recv_ns,
                )
            ]
        if kind == _KIND_DEPTH:
            key = t.version or t.ts or env_ts
            seen = self._depth_seen.get(symbol)
            if seen is not None and key <= seen:
                self.stale_depth += 1
                return []
            upd = BookUpdate(
                self.name, symbol, _levels(t.bids), _levels(t.asks), key, key, -1, True, None,
                (t.ts or env_ts) * MS, recv_ns,
            )
            self._depth_seen[symbol] = key
            return [upd]
        if kind == _KIND_BBO:
            return [
                Quote(
                    self.name, symbol, _number(t.bid, False), _number(t.bidSize, True),
                    _number(t.ask, False), _number(t.askSize, True), t.seqId,
                    (t.quoteTime or env_ts) * MS, recv_ns,
                )
            ]
        out: list[Output] = []
        for tr in t.data:
            if tr.direction == "buy":
                side = BUY
            elif tr.direction == "sell":
                side = SELL
            else:
                raise ValueError(f"trade direction {tr.direction!r}")
            out.append(
                Trade(
                    self.name, symbol, _number(tr.price, False), _number(tr.amount, True), side,
                    str(tr.tradeId), (tr.ts or t.ts or env_ts) * MS, recv_ns,
                )
            )
        return out

    def _control(self, env: _Envelope, text: bytes, recv_ns: int) -> list[Output]:
        rid = None if env.id is None else str(env.id)
        request = self._requests.get(rid) if rid is not None else None
        if env.status == "error":
            return self._error(env, rid, request, recv_ns)
        if env.rep is not None:
            return self._reply(env, rid, request, text, recv_ns)
        if env.status == "ok" and (env.subbed is not None or env.unsubbed is not None):
            if rid is not None:
                self._requests.pop(rid, None)
            return []
        self.stats.unknown += 1
        return [self.bad_frame("unknown frame", text, recv_ns)]

    def _reply(
        self, env: _Envelope, rid: str | None, request: tuple[str, str, bool] | None, text: bytes,
        recv_ns: int,
    ) -> list[Output]:
        route = self._routes.get(env.rep or "") or self._route(env.rep or "")
        kind, symbol = route
        if kind != _KIND_MBP:
            self.stats.unknown += 1
            return [self.bad_frame("rep for a topic this session never asks for", text, recv_ns)]
        outstanding = self._outstanding.get(symbol)
        if outstanding is None or (rid is not None and rid != outstanding[0]):
            # unsolicited, or the late answer to a req that timed out and was sent again
            if rid is not None:
                self._requests.pop(rid, None)
            self.stats.unknown += 1
            return []
        if not env.data or bytes(env.data) == b"null":
            self._snapshot_failed(symbol, retry=True)
            return [self.venue_error(symbol, "null-data", f"req {env.rep} answered with data null", recv_ns)]
        data = self._rep.decode(env.data)
        upd = BookUpdate(
            self.name, symbol, _levels(data.bids), _levels(data.asks), data.seqNum, data.seqNum, -1,
            True, None, env.ts * MS, recv_ns,
        )
        self._outstanding.pop(symbol, None)
        self._failures.pop(symbol, None)
        self._requests.pop(outstanding[0], None)
        if self.req_gap_ns > self.req_interval_ns:
            self.req_gap_ns = max(self.req_interval_ns, self.req_gap_ns * 9 // 10)
        return [upd]

    def _error(
        self, env: _Envelope, rid: str | None, request: tuple[str, str, bool] | None, recv_ns: int
    ) -> list[Output]:
        code = "" if env.err_code is None else str(env.err_code)
        message = "" if env.err_msg is None else str(env.err_msg)
        symbol = ""
        if request is not None:
            symbol, topic, is_req = request
            self._requests.pop(rid or "", None)
            if is_req and _THROTTLED in message:
                self.req_throttled += 1
                self.req_gap_ns = min(self.req_interval_max_ns, self.req_gap_ns * 2)
                self._snapshot_failed(symbol, retry=True, throttled=True)
                # handled here; a warning only once the spacing is at its ceiling
                at_ceiling = self.req_gap_ns >= self.req_interval_max_ns
                log.log(
                    logging.WARNING if at_ceiling else logging.INFO,
                    "venue=htx symbol=%s req %s throttled (%s): asking again, req spacing now %.0f ms%s",
                    symbol, topic, message, self.req_gap_ns / 1e6, " (the most allowed)" if at_ceiling else "",
                )
                return []
            message = f"{message} ({'req' if is_req else 'sub'} {topic})"
            if is_req:
                self._snapshot_failed(symbol, retry=not message.startswith(_NO_RETRY))
        else:
            symbol = self._symbol_in(message)
        return [self.venue_error(symbol, code, message, recv_ns)]

    def _symbol_in(self, message: str) -> str:
        """The symbol an error names: ``invalid symbol xyz``, ``invalid topic market.xyz.bbo``."""
        words = message.split()
        if len(words) != 3 or words[0] != "invalid" or words[1] not in ("symbol", "topic"):
            return ""
        name = words[2]
        if words[1] == "topic":
            parts = name.split(".")
            if len(parts) < 2 or parts[0] != "market":
                return ""
            name = parts[1]
        try:
            return self.names.to_common(name)
        except ValueError:
            return name  # not BASE+QUOTE we can split: name it as HTX spelled it

    # -- venue clock -----------------------------------------------------------------
    def time_url(self) -> str:
        return f"{self.endpoints.rest_url}/v1/common/timestamp"

    def parse_server_time(self, body: bytes) -> tuple[int, int]:
        def pick(reply: _Timestamp) -> int:
            if reply.status != "ok":
                raise ValueError(f"status {reply.status!r}")
            return reply.data

        return server_time(self.name, body, _Timestamp, pick)


class _Timestamp(msgspec.Struct):
    status: str
    data: int = 0
