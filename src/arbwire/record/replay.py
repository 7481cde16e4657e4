"""Drive recorded traffic through the same ``VenueFeed`` the live engine uses.

REST snapshots found in a recording are handed to the book sync at the time they
were received, so the official snapshot+diff procedure runs exactly as it did
live. A book whose capture holds no usable snapshot stays unsynced: it is never
guessed.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from urllib.parse import parse_qs, urlsplit

from arbwire.feed import VenueFeed
from arbwire.record.importers import Kind, Record
from arbwire.venues.base import Action

SnapshotSymbol = Callable[[Record], str | None]


def query_symbol(record: Record, *keys: str) -> str | None:
    """The venue's symbol named in a REST URL's query (``symbol=``, ``instId=``, ...)."""
    query = parse_qs(urlsplit(record.url).query)
    for key in keys:
        if key in query:
            return query[key][0]
    return None


def merge(*streams: Iterable[Record]) -> Iterator[Record]:
    """Records of several files of one session, in receive-time order."""
    return heapq.merge(*streams, key=lambda r: r.recv_ns)


def replay(
    feed: VenueFeed,
    records: Iterable[Record],
    snapshot_symbol: SnapshotSymbol,
    on_actions: Callable[[list[Action]], None] | None = None,
) -> int:
    """Feed every received frame and REST snapshot; returns the number of frames fed."""
    frames = 0
    for record in records:
        if record.kind is Kind.RECV:
            frames += 1
            actions = feed.on_frame(record.payload, record.recv_ns)
        elif record.kind is Kind.HTTP:
            symbol = snapshot_symbol(record)
            if symbol is None:
                continue
            try:
                actions = feed.on_snapshot(symbol, record.payload, record.recv_ns)
            except ValueError as exc:  # an unusable snapshot leaves the book unsynced
                feed.on_event(feed.session.bad_frame(f"snapshot: {exc}", record.payload, record.recv_ns))
                continue
        else:
            continue
        if actions and on_actions is not None:
            on_actions(actions)
    return frames
