"""Gate sync on the real cryptofeed capture: REST with_id snapshot + U/u diffs, never a crossed book."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest

from arbwire.feed import VenueFeed
from arbwire.model import BookUpdate, Event, Side, SyncState, Trade
from arbwire.numbers import to_units
from arbwire.record.importers import Kind, Record, read_cryptofeed
from arbwire.record.replay import merge, query_symbol, replay
from arbwire.sync import BookSync
from arbwire.venues.base import Action, FetchSnapshot
from arbwire.venues.gateio import GateioSession
from helpers.sessions import count_fallbacks, events_like_two_step

PAIRS = [
    "INK_USDT", "HAI_ETH", "BTC_USDC", "NANO_USDT", "QTUM3S_USDT",
    "DIS_USDT", "NEO_BTC", "FAST_USDT", "ZKS_ETH", "OMG_USDT",
]  # fmt: skip
SYMBOLS = [p.replace("_", "-") for p in PAIRS]
# Pairs whose capture ends without a diff newer than their snapshot: synced, nothing applied.
NOTHING_AFTER_SNAPSHOT = {"INK-USDT", "BTC-USDC"}


def _records(real_data) -> list[Record]:
    base = real_data / "cryptofeed"
    return list(
        merge(read_cryptofeed(base / "GATEIO.ws.1.0"), read_cryptofeed(base / "GATEIO.http.0.0"))
    )


class _Run:
    def __init__(self, records: list[Record]) -> None:
        self.session = GateioSession(SYMBOLS, book_channel="order_book_update")
        self.applied: list[BookUpdate] = []
        self.crossed: list[BookUpdate] = []
        self.events: list[Event] = []
        self.actions: list[Action] = []
        self.feed = VenueFeed(self.session, on_book=self._on_book, on_event=self.events.append)
        self.frames = replay(
            self.feed,
            records,
            lambda r: self.session.names.to_common(query_symbol(r, "currency_pair") or ""),
            self.actions.extend,
        )

    def _on_book(self, sync: BookSync, upd: BookUpdate) -> None:
        self.applied.append(upd)
        if sync.book.is_crossed():
            self.crossed.append(upd)


def _diff_count(records: list[Record]) -> int:
    n = 0
    for r in records:
        if r.kind is Kind.RECV:
            d = msgspec.json.decode(r.payload)
            n += d.get("channel") == "spot.order_book_update" and d.get("event") == "update"
    return n


def test_capture_syncs_every_pair_with_no_gap_and_no_crossed_book(real_data):
    records = _records(real_data)
    assert _diff_count(records) == 172
    assert sum(r.kind is Kind.HTTP for r in records) == 10
    run = _Run(records)
    assert set(run.feed.syncs) == set(SYMBOLS)
    for symbol, sync in run.feed.syncs.items():
        assert sync.state is SyncState.SYNCED, (symbol, sync.reason)
        assert sync.gaps == 0 and sync.resyncs == 0 and sync.crossed == 0, symbol
        assert not sync.book.is_crossed(), symbol
        assert sync.book.bids and sync.book.asks, symbol
        assert sync.started is (symbol not in NOTHING_AFTER_SNAPSHOT), symbol
    assert run.crossed == []
    # every diff newer than its pair's snapshot, DIS_USDT's first one from the buffer
    assert sum(sync.applied for sync in run.feed.syncs.values()) == 159
    assert sum(not u.is_snapshot for u in run.applied) == 158
    assert sum(u.is_snapshot for u in run.applied) == 10
    assert run.session.stats.bad_frames == 0
    assert run.session.stats.venue_errors == 0
    assert run.session.stats.unknown == 36  # spot.tickers and spot.candlesticks pushes


def test_snapshot_requests_are_the_urls_the_recorder_fetched(real_data):
    records = _records(real_data)
    run = _Run(records)
    fetched = {r.url for r in records if r.kind is Kind.HTTP}
    assert all(isinstance(a, FetchSnapshot) for a in run.actions)
    assert [a.symbol for a in run.actions if isinstance(a, FetchSnapshot)] != []
    # one fetch per pair, exactly the URL cryptofeed used (limit=100, with_id=true)
    assert sorted(a.symbol for a in run.actions) == sorted(SYMBOLS)
    assert {a.url for a in run.actions if isinstance(a, FetchSnapshot)} == fetched


def test_pair_without_a_snapshot_stays_unsynced(real_data):
    records = [
        r
        for r in _records(real_data)
        if not (r.kind is Kind.HTTP and query_symbol(r, "currency_pair") == "DIS_USDT")
    ]
    run = _Run(records)
    dis = run.feed.syncs["DIS-USDT"]
    assert dis.state is SyncState.BUFFERING
    assert not dis.book and len(dis.buffer) == 17  # all its diffs, kept
    assert all(u.symbol != "DIS-USDT" for u in run.applied)
    for symbol, sync in run.feed.syncs.items():
        if symbol != "DIS-USDT":
            assert sync.state is SyncState.SYNCED and sync.gaps == 0, symbol
    assert run.crossed == []


def test_snapshot_older_than_the_buffered_diffs_is_not_used(real_data):
    """FAST_USDT's first diff spans 1130669..1138115; a snapshot at 1130000 can't be aligned."""
    records = []
    for r in _records(real_data):
        if r.kind is Kind.HTTP and query_symbol(r, "currency_pair") == "FAST_USDT":
            body = msgspec.json.decode(r.payload)
            assert body["id"] == 1138115
            body["id"] = 1130000
            r = Record(r.kind, r.recv_ns, msgspec.json.encode(body), r.url, r.line)
        records.append(r)
    run = _Run(records)
    fast = run.feed.syncs["FAST-USDT"]
    assert fast.state is SyncState.BUFFERING
    assert fast.reason == "snapshot older than buffered diffs"
    assert not fast.book
    assert all(u.symbol != "FAST-USDT" for u in run.applied)
    # it asked again, and only for FAST-USDT
    refetch = [a.symbol for a in run.actions if isinstance(a, FetchSnapshot)]
    assert refetch.count("FAST-USDT") == 2
    assert all(refetch.count(s) == 1 for s in SYMBOLS if s != "FAST-USDT")
    assert all(s.synced for k, s in run.feed.syncs.items() if k != "FAST-USDT")


def test_snapshot_without_id_is_unusable(real_data):
    record = next(r for r in _records(real_data) if r.kind is Kind.HTTP)
    body = msgspec.json.decode(record.payload)
    del body["id"]  # what with_id=false returns
    session = GateioSession(SYMBOLS, book_channel="order_book_update")
    with pytest.raises(ValueError, match="id"):
        session.parse_snapshot("HAI-ETH", msgspec.json.encode(body), record.recv_ns)


def test_diffs_and_snapshots_decode_to_exact_levels(real_data):
    session = GateioSession(SYMBOLS, book_channel="order_book_update")
    checked = 0
    for r in _records(real_data):
        if r.kind is Kind.HTTP:
            raw = msgspec.json.decode(r.payload)
            snap = session.parse_snapshot("X-Y", r.payload, r.recv_ns)
            assert snap.is_snapshot and snap.last_id == raw["id"]
            assert snap.bids == [tuple(x) for x in raw["bids"]]
            assert snap.asks == [tuple(x) for x in raw["asks"]]
            checked += 1
        elif r.kind is Kind.RECV:
            raw = msgspec.json.decode(r.payload)
            if raw.get("channel") != "spot.order_book_update" or raw.get("event") != "update":
                continue
            (upd,) = session.on_frame(r.payload, r.recv_ns)
            res = raw["result"]
            assert isinstance(upd, BookUpdate) and not upd.is_snapshot
            assert upd.symbol == res["s"].replace("_", "-")
            assert (upd.first_id, upd.last_id) == (res["U"], res["u"])
            assert upd.bids == [tuple(x) for x in res["b"]]
            assert upd.asks == [tuple(x) for x in res["a"]]
            assert upd.venue_ts_ns == res["t"] * 1_000_000 and upd.recv_ns == r.recv_ns
            checked += 1
    assert checked == 182


def test_trades_decode_with_exact_sub_ms_times(real_data):
    run = _Run(_records(real_data))
    trades = [e for e in run.events if isinstance(e, Trade)]
    raws = []
    for r in _records(real_data):
        if r.kind is Kind.RECV:
            d = msgspec.json.decode(r.payload)
            if d.get("channel") == "spot.trades" and d.get("event") == "update":
                raws.append(d["result"])
    assert len(trades) == len(raws) == 9
    for t, raw in zip(trades, raws, strict=True):
        assert t.venue_ts_ns == int(Decimal(raw["create_time_ms"]) * 1_000_000)
        assert t.symbol == raw["currency_pair"].replace("_", "-")
        assert (t.price, t.size, t.trade_id) == (raw["price"], raw["amount"], str(raw["id"]))
        assert t.side is (Side.BUY if raw["side"] == "buy" else Side.SELL)
    assert trades[0].venue_ts_ns == 1619093543708264200


def test_synced_books_agree_with_spot_tickers(real_data):
    """spot.tickers (1 s, independent of the book channel) mostly names the same best bid/ask.

    Tickers lag the 100 ms book and one NANO_USDT ticker disagrees with every
    book source in the capture, so this counts agreement rather than demanding it.
    """
    session = GateioSession(SYMBOLS, book_channel="order_book_update")
    feed = VenueFeed(session)
    agree = compared = 0
    for r in _records(real_data):
        if r.kind is Kind.HTTP:
            feed.on_snapshot(
                session.names.to_common(query_symbol(r, "currency_pair") or ""),
                r.payload,
                r.recv_ns,
            )
            continue
        if r.kind is not Kind.RECV:
            continue
        d = msgspec.json.decode(r.payload)
        if d.get("channel") == "spot.tickers" and d.get("event") == "update":
            sync = feed.syncs[d["result"]["currency_pair"].replace("_", "-")]
            if sync.synced:
                (bid, _), (ask, _) = sync.book.top()
                compared += 1
                agree += to_units(bid) == to_units(d["result"]["highest_bid"]) and to_units(
                    ask
                ) == to_units(d["result"]["lowest_ask"])
        feed.on_frame(r.payload, r.recv_ns)
    assert compared == 21
    assert agree >= 17, (agree, compared)


def test_typed_union_decodes_every_real_frame_like_the_two_step_reference(real_data):
    """The one-pass tagged union is a fast path only: on every frame of the capture it gives
    exactly what the envelope-then-result decode gives; only the acknowledgements, whose
    ``result`` is not their channel's, take the two-step path."""
    frames = [r.payload for r in _records(real_data) if r.kind is Kind.RECV]
    typed = GateioSession(SYMBOLS, book_channel="order_book_update")
    reference = GateioSession(SYMBOLS, book_channel="order_book_update")
    fallbacks = count_fallbacks(typed)
    events = events_like_two_step(typed, reference, frames)
    acks = [f for f in frames if msgspec.json.decode(f).get("event") in ("subscribe", "unsubscribe")]
    assert fallbacks == acks and len(acks) == 22
    assert events == 172 + 9  # every book diff and trade
    assert typed.stats.unknown == reference.stats.unknown == 36  # tickers, candlesticks: typed too
    assert typed.stats.bad_frames == reference.stats.bad_frames == 0
    assert typed.stats.frames == len(frames)
