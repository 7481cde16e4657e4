"""What travels on the bus: subjects and msgpack messages (msgspec).

Subjects are ``<prefix>.<kind>.<venue>.<symbol>`` (prefix ``arbwire``); a venue or
symbol keeps its name (``BTC-USDT``: ``-`` is a valid NATS token character), only the
characters NATS reserves (``.``, ``*``, ``>``, whitespace) become ``_``. Receivers
read venue and symbol from the message body, never from the subject.

=========  ==========  ==============================================================
kind       body        what
=========  ==========  ==============================================================
book       BusBook     a book as applied: the whole book when it syncs (and again
                       every ``snapshot_every_s``), then each delta as the venue sent it
state      BusState    a ``FeedState`` change of that book (gap, checksum, link lost..)
trade      Trade       ``arbwire.model.Trade`` as is
quote      Quote       ``arbwire.model.Quote`` as is
snapshot   request     empty request; the reply is a ``BusBook`` snapshot of the
                       publisher's book now, or ``NoSnapshot`` when it is not synced
=========  ==========  ==============================================================

Sequence on the bus. Venues chain their update ids in five different ways; the bus
uses one rule for all: the publisher numbers each book's applied updates ``seq`` 1, 2,
3.. (a snapshot when the book (re)syncs takes the next number too), and a receiver
applies delta ``seq`` only onto ``seq - 1``. ``epoch`` is random per publisher start,
so a restarted publisher (seq from 1 again) is told apart from an old one. The
venue's own ids stay in ``update`` (``first_id``/``last_id``/``prev_id``).
A snapshot (periodic or a reply) carries the ``seq`` of the last update its book
contains. ``BusState.seq`` is the book's ``seq`` when its state changed, so a
receiver knows which snapshots came before the break (``seq <= state.seq``) and
cannot be trusted for it.
"""

from __future__ import annotations

import re

import msgspec

from arbwire.model import BookUpdate, FeedState, Quote, Trade

PREFIX = "arbwire"

BOOK = "book"
STATE = "state"
TRADE = "trade"
QUOTE = "quote"
SNAPSHOT = "snapshot"

_RESERVED = re.compile(r"[.*>\s]")


def token(name: str) -> str:
    """``name`` as one NATS subject token: reserved characters become ``_``."""
    return _RESERVED.sub("_", name) or "_"


def subject(prefix: str, kind: str, venue: str, symbol: str) -> str:
    return f"{prefix}.{kind}.{token(venue)}.{token(symbol)}"


class BusBook(msgspec.Struct, tag="book", kw_only=True, gc=False):
    """One book update on the bus (see the module doc for ``epoch`` and ``seq``)."""

    epoch: int
    seq: int
    update: BookUpdate  # the venue's update; a snapshot holds the whole book
    size_decimals: int | None = None  # the venue's lot precision for the symbol, when known
    sent_ns: int = 0  # publisher's clock when it went on the bus


class BusState(msgspec.Struct, tag="state", kw_only=True):
    epoch: int
    seq: int
    state: FeedState


class NoSnapshot(msgspec.Struct, tag="nosnap", kw_only=True):
    """Reply to a snapshot request the publisher cannot serve (book not synced)."""

    venue: str
    symbol: str
    reason: str


SnapshotReply = BusBook | NoSnapshot

encoder = msgspec.msgpack.Encoder()
decode_book = msgspec.msgpack.Decoder(BusBook).decode
decode_state = msgspec.msgpack.Decoder(BusState).decode
decode_reply = msgspec.msgpack.Decoder(SnapshotReply).decode
decode_trade = msgspec.msgpack.Decoder(Trade).decode
decode_quote = msgspec.msgpack.Decoder(Quote).decode
