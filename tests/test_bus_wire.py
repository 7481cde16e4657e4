"""The bus without a server: subjects, messages, and the remote book rules fed by hand."""

from __future__ import annotations

import time

from arbwire.bus import wire
from arbwire.bus.subscriber import BusDetector
from arbwire.bus.wire import BusBook, BusState, NoSnapshot
from arbwire.config import Config, VenueConfig
from arbwire.model import BookUpdate, FeedState, Opportunity, OpportunityEvent, SyncState


def test_subjects_keep_symbols_and_escape_reserved_characters():
    assert wire.subject("arbwire", "book", "binance", "BTC-USDT") == "arbwire.book.binance.BTC-USDT"
    assert wire.subject("arbwire", "trade", "binance-usdm", "BTC-USDT") == "arbwire.trade.binance-usdm.BTC-USDT"
    assert wire.token("a.b *>\tc") == "a_b____c"
    assert wire.token("") == "_"


def test_messages_round_trip_as_msgpack():
    upd = BookUpdate("okx", "BTC-USDT", [("100.5", "1.25")], [("101", "2")], 7, 9, 6, False, 123, 5, 6)
    msg = BusBook(epoch=42, seq=3, update=upd, size_decimals=8, sent_ns=10)
    data = wire.encoder.encode(msg)
    assert wire.decode_book(data) == msg
    assert wire.decode_reply(data) == msg
    nosnap = NoSnapshot(venue="okx", symbol="BTC-USDT", reason="gap")
    assert wire.decode_reply(wire.encoder.encode(nosnap)) == nosnap
    state = BusState(epoch=42, seq=3, state=FeedState("okx", "BTC-USDT", SyncState.RESYNCING, "gap", 1))
    back = wire.decode_state(wire.encoder.encode(state))
    assert back == state and back.state.state is SyncState.RESYNCING


def _snap(seq: int, bid: str = "100", ask: str = "101", *, epoch: int = 1, venue: str = "binance") -> BusBook:
    now = time.time_ns()
    upd = BookUpdate(venue, "BTC-USDT", [(bid, "1")], [(ask, "1")], 0, 0, -1, True, None, now, now)
    return BusBook(epoch=epoch, seq=seq, update=upd, size_decimals=4)


def _delta(seq: int, bids=(), asks=(), *, epoch: int = 1, venue: str = "binance") -> BusBook:
    now = time.time_ns()
    upd = BookUpdate(venue, "BTC-USDT", list(bids), list(asks), 0, 0, -1, False, None, now, now)
    return BusBook(epoch=epoch, seq=seq, update=upd)


def _state(seq: int, state: SyncState, reason: str, *, epoch: int = 1) -> BusState:
    return BusState(epoch=epoch, seq=seq, state=FeedState("binance", "BTC-USDT", state, reason, time.time_ns()))


def test_remote_book_follows_the_bus_sequence():
    det = BusDetector()  # never started: no NATS, so no snapshot requests either
    states: list[FeedState] = []
    det.listeners.append(lambda e: states.append(e) if isinstance(e, FeedState) else None)
    det.on_book(_delta(4, bids=[("99", "1")]))  # before any snapshot: buffered
    sync = det.syncs[("binance", "BTC-USDT")]
    assert sync.state is SyncState.BUFFERING
    det.on_book(_snap(5))  # delta 4 is older than the snapshot: dropped
    assert sync.state is SyncState.SYNCED and sync.book.best_bid() is not None
    assert sync.book.bids.text_levels(5) == [("100", "1")]
    det.on_book(_delta(6, bids=[("100.5", "2")]))
    assert sync.book.bids.text_levels(1) == [("100.5", "2")] and sync.last_id == 6
    det.on_book(_delta(8, bids=[("100.6", "1")]))  # 7 never came
    assert sync.state is SyncState.RESYNCING and sync.reason == "gap" and sync.gaps == 1
    det.on_book(_delta(9, asks=[("101", "0"), ("100.9", "3")]))  # buffered
    det.on_book(_snap(6, bid="100.5"))  # still older than the buffered 8: waits for a newer one
    assert sync.state is not SyncState.SYNCED
    det.on_book(_snap(7, bid="100.5"))  # 8 and 9 follow on it
    assert sync.state is SyncState.SYNCED and sync.last_id == 9
    assert sync.book.bids.text_levels(5) == [("100.6", "1"), ("100.5", "1")]
    assert sync.book.asks.text_levels(5) == [("100.9", "3")]
    det.on_book(_snap(9, bid="1"))  # a periodic snapshot of what we hold: nothing new
    assert sync.book.bids.text_levels(1) == [("100.6", "1")]
    # the publisher's own book broke after 9: ours is unusable, and so is any snapshot <= 9
    det.on_state(_state(9, SyncState.RESYNCING, "checksum mismatch"))
    assert sync.state is SyncState.RESYNCING and sync.reason == "publisher: checksum mismatch"
    det.on_book(_snap(9))
    assert sync.state is SyncState.RESYNCING
    det.on_state(_state(9, SyncState.SYNCED, "snapshot"))
    det.on_book(_snap(10, bid="98"))  # the publisher's resync snapshot
    assert sync.state is SyncState.SYNCED and sync.book.bids.text_levels(1) == [("98", "1")]
    # a restarted publisher numbers from 1 again under a new epoch
    det.on_book(_delta(1, bids=[("97", "1")], epoch=2))
    assert sync.state is not SyncState.SYNCED and "publisher restarted" in [s.reason for s in states]
    det.on_book(_snap(1, bid="97", epoch=2))
    assert sync.state is SyncState.SYNCED and sync.last_id == 1
    assert [s.state for s in states].count(SyncState.SYNCED) == 5


def test_remote_detector_opens_and_closes_on_sync_rules():
    config = Config(venues={"binance": VenueConfig(), "okx": VenueConfig()})
    det = BusDetector(config=config)
    seen: list[Opportunity] = []
    det.listeners.append(lambda e: seen.append(e) if isinstance(e, Opportunity) else None)
    det.on_book(_snap(1, bid="100", ask="100.1", venue="binance"))
    det.on_book(_snap(1, bid="102", ask="102.1", venue="okx"))  # buy binance 100.1, sell okx 102
    assert [(o.event, o.buy_venue, o.sell_venue, o.size) for o in seen] == [
        (OpportunityEvent.OPENED, "binance", "okx", "1")  # size: 4 decimals, published lot
    ]
    det.on_book(_delta(3, bids=[("101", "1")], venue="okx"))  # a gap on okx: closes at once
    assert seen[-1].event is OpportunityEvent.CLOSED
    assert det.syncs[("okx", "BTC-USDT")].state is SyncState.RESYNCING
