"""The public vocabulary: normalized events every room of arbwire speaks.

Venue wire formats stay private to their venue module; once a frame is decoded it
becomes one of these Structs. Every event carries two clocks, both integer ns:
``venue_ts_ns`` (the venue's own stamp, 0 when the venue sends none) and
``recv_ns`` (``time.time_ns()`` taken once, where the frame left the socket), so
latency is always a difference of the two and never guessed later.

Prices and sizes travel as the decimal text the venue sent (``"2683.80000000"``).
Text is exact, costs nothing to keep, and is what checksums such as OKX's are
computed over; ``arbwire.numbers`` turns it into exact scaled integers where
arithmetic is needed.
"""

from __future__ import annotations

import enum

import msgspec

Level = tuple[str, str]
"""One price level as sent by the venue: (price text, size text). Size "0" deletes."""


class Side(enum.IntEnum):
    BUY = 1
    SELL = -1


# For hot paths: an enum member lookup costs ~80 ns on CPython 3.11, a module global ~10.
BUY, SELL = Side.BUY, Side.SELL


class SyncState(enum.IntEnum):
    """Where a venue+symbol book stands; only SYNCED books feed the detector."""

    INIT = 0
    BUFFERING = 1
    SYNCED = 2
    RESYNCING = 3


class Trade(msgspec.Struct, frozen=True, gc=False):
    venue: str
    symbol: str
    price: str
    size: str
    side: Side  # taker side
    trade_id: str
    venue_ts_ns: int
    recv_ns: int


class Quote(msgspec.Struct, frozen=True, gc=False):
    """Best bid/offer as pushed by the venue's own BBO channel."""

    venue: str
    symbol: str
    bid: str
    bid_size: str
    ask: str
    ask_size: str
    update_id: int  # venue's book update id when it has one, else 0
    venue_ts_ns: int
    recv_ns: int


class BookUpdate(msgspec.Struct, gc=False):
    """A snapshot or delta with the venue's sequence ids, before it is applied.

    ``first_id``/``last_id`` span the venue's update ids the message covers
    (Binance ``U``/``u``); ``prev_id`` is the id the venue says came just before
    (Binance futures ``pu``, OKX ``prevSeqId``, HTX ``prevSeqNum``), or -1 when the
    venue sends none. ``checksum`` is the venue's CRC when it sends a non-zero one.
    """

    venue: str
    symbol: str
    bids: list[Level]
    asks: list[Level]
    first_id: int
    last_id: int
    prev_id: int = -1
    is_snapshot: bool = False
    checksum: int | None = None
    venue_ts_ns: int = 0
    recv_ns: int = 0


class FeedState(msgspec.Struct, frozen=True):
    """A change in a book's sync state, with the reason (gap, checksum, crossed, ...)."""

    venue: str
    symbol: str
    state: SyncState
    reason: str
    recv_ns: int


class VenueError(msgspec.Struct, frozen=True):
    """An error the venue itself reported, e.g. a subscription to an unknown symbol."""

    venue: str
    symbol: str
    code: str
    message: str
    recv_ns: int


class BadFrame(msgspec.Struct, frozen=True):
    """A frame that could not be decoded; counted and logged, never fatal."""

    venue: str
    reason: str
    excerpt: str
    recv_ns: int


class OpportunityEvent(enum.StrEnum):
    OPENED = "opened"
    CHANGED = "changed"
    CLOSED = "closed"


class Opportunity(msgspec.Struct, frozen=True):
    """Buy ``size`` on ``buy_venue`` and sell it on ``sell_venue`` at the walked prices.

    Prices, size and profit are exact decimal text; bps figures are floats since
    they are ratios for display and thresholds, never summed back into a book.
    """

    event: OpportunityEvent
    symbol: str
    buy_venue: str
    sell_venue: str
    buy_price: str  # average fill price walking the buy venue's asks
    sell_price: str  # average fill price walking the sell venue's bids
    size: str
    gross_bps: float
    net_bps: float
    profit: str  # expected profit in the quote currency, net of taker fees
    buy_quote_age_ns: int
    sell_quote_age_ns: int
    opened_ns: int
    recv_ns: int
    lifetime_ns: int = 0  # set when event is CLOSED


Event = Trade | Quote | BookUpdate | FeedState | VenueError | BadFrame | Opportunity
