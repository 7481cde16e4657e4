"""The sync state machine on real Binance traffic with faults cut into it."""

from __future__ import annotations

from arbwire.feed import VenueFeed
from arbwire.model import BookUpdate, FeedState, SyncState
from arbwire.record.importers import Kind, read_cryptofeed
from arbwire.record.replay import merge, query_symbol
from arbwire.sync import BookSync, Outcome, SequenceRule
from arbwire.venues.base import FetchSnapshot
from arbwire.venues.binance import BinanceSession

SYMBOLS = ["NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"]


def _records(real_data):
    base = real_data / "cryptofeed"
    return list(merge(read_cryptofeed(base / "BINANCE.ws.1.0"), read_cryptofeed(base / "BINANCE.http.0.0")))


def _symbol_of(session, record):
    return session.names.to_common(query_symbol(record, "symbol").lower())


def test_gap_resyncs_only_that_symbol(real_data):
    records = _records(real_data)
    session = BinanceSession(SYMBOLS)
    states: list[FeedState] = []
    feed = VenueFeed(session, on_event=lambda e: states.append(e) if isinstance(e, FeedState) else None)
    nkn_diffs = [i for i, r in enumerate(records) if r.kind is Kind.RECV and b"nknusdt@depth" in r.payload]
    dropped = nkn_diffs[len(nkn_diffs) // 2]  # a diff well after the sync: its ids go missing
    fetches: list[FetchSnapshot] = []
    for i, record in enumerate(records):
        if i == dropped:
            continue
        if record.kind is Kind.RECV:
            actions = feed.on_frame(record.payload, record.recv_ns)
        elif record.kind is Kind.HTTP:
            actions = feed.on_snapshot(_symbol_of(session, record), record.payload, record.recv_ns)
        else:
            continue
        fetches += [a for a in actions if isinstance(a, FetchSnapshot)]
    nkn = feed.syncs["NKN-USDT"]
    assert nkn.gaps == 1 and nkn.resyncs == 1
    assert nkn.state is not SyncState.SYNCED  # no later snapshot in the capture: stays unsynced
    assert not nkn.book  # the broken book was wiped, never used
    # exactly one more snapshot was asked for, for that symbol only
    later = [f for f in fetches if f.symbol == "NKN-USDT"]
    assert later[-1].url.endswith("symbol=NKNUSDT&limit=1000")
    for symbol in SYMBOLS[1:]:
        sync = feed.syncs[symbol]
        assert sync.state is SyncState.SYNCED and sync.gaps == 0 and sync.resyncs == 0, symbol
    assert any(s.symbol == "NKN-USDT" and s.state is SyncState.RESYNCING and s.reason == "gap" for s in states)


def test_snapshot_older_than_buffer_is_fetched_again(real_data):
    records = _records(real_data)
    session = BinanceSession(["NKN-USDT"])
    feed = VenueFeed(session)
    diffs = [r for r in records if r.kind is Kind.RECV and b"nknusdt@depth" in r.payload]
    snap = next(r for r in records if r.kind is Kind.HTTP and b"NKNUSDT" in r.url.encode())
    sync = feed.syncs["NKN-USDT"]
    # buffer diffs well past the snapshot: it no longer covers the first buffered one
    for r in diffs[5:10]:
        feed.on_frame(r.payload, r.recv_ns)
    assert sync.state is SyncState.BUFFERING
    actions = feed.on_snapshot("NKN-USDT", snap.payload, snap.recv_ns)
    assert [type(a) for a in actions] == [FetchSnapshot]
    assert sync.state is SyncState.BUFFERING and not sync.book


def _upd(first: int, last: int, bids=(), asks=(), snapshot=False) -> BookUpdate:
    return BookUpdate("v", "X-Y", list(bids), list(asks), first, last, -1, snapshot)


def test_crossed_book_is_never_left_synced():
    sync = BookSync("v", "X-Y", SequenceRule())
    assert sync.on_update(_upd(1, 1)) is Outcome.NEED_SNAPSHOT
    assert sync.on_update(_upd(0, 0, [("10", "1")], [("11", "1")], snapshot=True)) is Outcome.APPLIED
    assert sync.synced
    assert sync.on_update(_upd(2, 2, [("12", "1")])) is Outcome.NEED_SNAPSHOT
    assert sync.state is SyncState.RESYNCING and sync.crossed == 1 and not sync.book


def test_failed_snapshot_is_asked_for_again_by_the_next_diff():
    sync = BookSync("v", "X-Y", SequenceRule())
    assert sync.on_update(_upd(1, 1)) is Outcome.NEED_SNAPSHOT
    assert sync.on_update(_upd(2, 2)) is Outcome.IGNORED  # already asked
    sync.snapshot_failed()
    assert sync.on_update(_upd(3, 3)) is Outcome.NEED_SNAPSHOT
    # when it finally comes, the buffered diffs after it are applied in order
    assert sync.on_update(_upd(1, 1, [("10", "1")], [("11", "1")], snapshot=True)) is Outcome.APPLIED
    assert sync.last_id == 3 and sync.synced


def test_a_level_that_is_not_a_number_resyncs_that_book_only(real_data):
    records = _records(real_data)
    session = BinanceSession(SYMBOLS)
    feed = VenueFeed(session)
    poisoned = False
    for record in records:
        payload = record.payload
        if record.kind is Kind.RECV:
            if not poisoned and feed.syncs["NKN-USDT"].started and b"nknusdt@depth" in payload:
                payload = payload.replace(b'"b":[["', b'"b":[["abc', 1)
                poisoned = True
            feed.on_frame(payload, record.recv_ns)
        elif record.kind is Kind.HTTP:
            feed.on_snapshot(_symbol_of(session, record), payload, record.recv_ns)
    assert poisoned
    assert session.stats.bad_frames == 1
    assert feed.syncs["NKN-USDT"].state is SyncState.RESYNCING
    assert not feed.syncs["NKN-USDT"].book
    for symbol in SYMBOLS[1:]:
        assert feed.syncs[symbol].state is SyncState.SYNCED
