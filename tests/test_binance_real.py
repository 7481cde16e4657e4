"""Binance sync on real captures: the official snapshot+diff procedure, never a crossed book."""

from __future__ import annotations

import msgspec

from arbwire.feed import VenueFeed
from arbwire.model import BookUpdate, Quote, SyncState
from arbwire.numbers import to_units
from arbwire.record.importers import Kind, read_cryptofeed, read_hftbacktest
from arbwire.record.replay import merge, query_symbol, replay
from arbwire.sync import BookSync
from arbwire.venues.binance import BinanceSession


def _run(session: BinanceSession, records):
    crossed_after_apply = []
    applied = []

    def on_book(sync: BookSync, upd: BookUpdate) -> None:
        applied.append(upd.symbol)
        if sync.book.is_crossed():
            crossed_after_apply.append(upd)

    feed = VenueFeed(session, on_book=on_book)
    replay(
        feed,
        records,
        lambda r: session.names.to_common(query_symbol(r, "symbol").lower()),
    )
    return feed, applied, crossed_after_apply


def test_spot_capture_syncs_every_symbol_with_no_gap(real_data):
    base = real_data / "cryptofeed"
    session = BinanceSession(["NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"])
    feed, applied, crossed = _run(
        session, merge(read_cryptofeed(base / "BINANCE.ws.1.0"), read_cryptofeed(base / "BINANCE.http.0.0"))
    )
    assert set(feed.syncs) == {"NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"}
    for symbol, sync in feed.syncs.items():
        assert sync.state is SyncState.SYNCED, (symbol, sync.reason)
        assert sync.gaps == 0 and sync.resyncs == 0, symbol
        assert sync.started, f"{symbol}: no diff applied after the snapshot"
    assert len(applied) > 100
    assert crossed == []
    assert session.stats.bad_frames == 0


def test_usdm_capture_holds_the_pu_chain(real_data):
    base = real_data / "cryptofeed"
    session = BinanceSession(
        ["SUSHI-USDT", "AKRO-USDT", "KEEP-USDT", "CTK-USDT"], futures=True
    )
    feed, applied, crossed = _run(
        session,
        merge(
            read_cryptofeed(base / "BINANCE_FUTURES.ws.1.0"),
            read_cryptofeed(base / "BINANCE_FUTURES.http.0.0"),
        ),
    )
    for symbol, sync in feed.syncs.items():
        assert sync.state is SyncState.SYNCED, (symbol, sync.reason)
        assert sync.gaps == 0, symbol
    assert len(applied) > 600
    assert crossed == []


def test_book_matches_book_ticker_wherever_update_ids_coincide(real_data):
    """hftbacktest ETHUSDT: bookTicker is independent ground truth for best bid/ask."""
    session = BinanceSession(["ETH-USDT"])
    tops: dict[int, tuple] = {}
    quotes: list[Quote] = []

    def on_book(sync: BookSync, upd: BookUpdate) -> None:
        assert not sync.book.is_crossed()
        tops[sync.last_id] = sync.book.top()

    feed = VenueFeed(session, on_book=on_book, on_event=lambda e: quotes.append(e) if isinstance(e, Quote) else None)
    records = list(read_hftbacktest(real_data / "hftbacktest" / "binance_spot_ethusdt_20240808.gz"))
    assert sum(r.kind is Kind.HTTP for r in records) == 1
    replay(feed, records, lambda r: "ETH-USDT")
    sync = feed.syncs["ETH-USDT"]
    assert sync.state is SyncState.SYNCED and sync.gaps == 0
    compared = 0
    for q in quotes:
        top = tops.get(q.update_id)
        if top is None:
            continue
        (bid, bid_size), (ask, ask_size) = top
        assert to_units(bid) == to_units(q.bid) and to_units(ask) == to_units(q.ask), q
        assert to_units(bid_size) == to_units(q.bid_size) and to_units(ask_size) == to_units(q.ask_size), q
        compared += 1
    assert compared > 100, compared


def test_snapshot_and_diffs_decode_to_exact_levels(real_data):
    first = next(
        r for r in read_cryptofeed(real_data / "cryptofeed" / "BINANCE.ws.1.0") if r.kind is Kind.RECV
    )
    session = BinanceSession(["NKN-USDT"])
    (upd,) = session.on_frame(first.payload, first.recv_ns)
    raw = msgspec.json.decode(first.payload)["data"]
    assert isinstance(upd, BookUpdate)
    assert (upd.first_id, upd.last_id) == (raw["U"], raw["u"])
    assert upd.bids == [tuple(level) for level in raw["b"]]
    assert upd.venue_ts_ns == raw["E"] * 1_000_000
