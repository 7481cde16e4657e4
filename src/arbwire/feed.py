"""One venue's hot path, sans-I/O: frame -> session -> book sync -> callbacks.

Live links, replays and benchmarks all drive this same object, so what is
measured and tested is what trades. It returns the actions (send, fetch a
snapshot, reconnect) for whoever owns the I/O to carry out.
"""

from __future__ import annotations

from collections.abc import Callable

from arbwire.model import BookUpdate, Event, FeedState, Quote, Trade
from arbwire.sync import APPLIED, NEED_SNAPSHOT, BookSync
from arbwire.venues.base import Action, FetchSnapshot, Reconnect, Send, VenueSession

BookCallback = Callable[[BookSync, BookUpdate], None]
EventCallback = Callable[[Event], None]

_ACTIONS = frozenset((Send, FetchSnapshot, Reconnect))


def _ignore(*_: object) -> None:
    return None


class VenueFeed:
    """A venue session plus one ``BookSync`` per symbol."""

    def __init__(
        self,
        session: VenueSession,
        *,
        max_depth: int = 5000,
        on_book: BookCallback = _ignore,
        on_event: EventCallback = _ignore,
    ) -> None:
        self.session = session
        self.venue = session.name
        self.max_depth = max_depth
        self.on_book = on_book
        self.on_event = on_event
        self.syncs: dict[str, BookSync] = {}
        self.last_recv_ns = 0
        for symbol in session.symbols:
            self.sync_for(symbol)

    def sync_for(self, symbol: str) -> BookSync:
        sync = self.syncs.get(symbol)
        if sync is None:
            sync = BookSync(
                self.venue,
                symbol,
                self.session.sequence_rule(symbol),
                max_depth=self.max_depth,
                on_state=self._on_state,
            )
            self.syncs[symbol] = sync
        return sync

    def _on_state(self, state: FeedState) -> None:
        self.on_event(state)

    def on_frame(self, payload: bytes, recv_ns: int) -> list[Action]:
        """Everything one received frame causes; returns the I/O actions it needs."""
        self.last_recv_ns = recv_ns
        actions: list[Action] = []
        for item in self.session.on_frame(payload, recv_ns):
            kind = type(item)
            # most frames are quotes and trades: they are tested first
            if kind is Quote or kind is Trade:
                self.on_event(item)  # type: ignore[arg-type]
            elif kind is BookUpdate:
                actions += self.on_update(item)  # type: ignore[arg-type]
            elif kind in _ACTIONS:
                actions.append(item)  # type: ignore[arg-type]
            else:
                self.on_event(item)  # type: ignore[arg-type]
        return actions

    def on_snapshot(self, symbol: str, body: bytes, recv_ns: int) -> list[Action]:
        """A REST snapshot body arrived for ``symbol``. Raises ValueError if it is unusable."""
        return self.on_update(self.session.parse_snapshot(symbol, body, recv_ns))

    def on_update(self, upd: BookUpdate) -> list[Action]:
        """One decoded snapshot or diff into its book; returns the actions it needs."""
        sync = self.syncs.get(upd.symbol) or self.sync_for(upd.symbol)
        try:
            outcome = sync.on_update(upd)
        except ValueError as exc:
            # A level that is not a decimal: the book may be half-applied, so it is
            # wiped and resynced; the frame is reported like any other bad frame.
            self.on_event(self.session.bad_frame(f"bad level for {upd.symbol}: {exc}", repr(upd)[:200], upd.recv_ns))
            return self.resync(upd.symbol, "bad level", upd.recv_ns)
        if outcome is APPLIED:
            self.on_book(sync, upd)
            return []
        if outcome is NEED_SNAPSHOT:
            return self.session.snapshot_request(upd.symbol)
        return []

    def resync(self, symbol: str, reason: str, recv_ns: int) -> list[Action]:
        """Force one symbol's book to resync (stale, checksum, operator request)."""
        self.sync_for(symbol).invalidate(reason, recv_ns, requested=True)
        return self.session.snapshot_request(symbol)

    def link_lost(self, reason: str, recv_ns: int) -> None:
        """The link dropped: every book of this link is unusable until resynced."""
        for sync in self.syncs.values():
            sync.invalidate(reason, recv_ns)
