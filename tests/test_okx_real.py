"""OKX on the real cryptofeed capture: every one of the 290 CRC32 checksums must match."""

from __future__ import annotations

import msgspec
import pytest

from arbwire.feed import VenueFeed
from arbwire.model import BadFrame, BookUpdate, Side, SyncState, Trade
from arbwire.record.importers import Kind, read_cryptofeed
from arbwire.record.replay import replay
from arbwire.sync import BookSync
from arbwire.venues.base import Send
from arbwire.venues.okx import OkxSession

# OKX names in the capture, and arbwire's names for them (swaps become -PERP)
INSTRUMENTS = {
    "BTC-USD-220527": "BTC-USD-220527",
    "UNI-USD-SWAP": "UNI-USD-PERP",
    "BTC-USDT": "BTC-USDT",
}


@pytest.fixture(scope="module")
def records(real_data):
    return list(read_cryptofeed(real_data / "cryptofeed" / "OKX.ws.1.0"))


def _frames(records):
    """(record, decoded JSON) of every received data frame."""
    return [(r, msgspec.json.decode(r.payload)) for r in records if r.kind is Kind.RECV]


def _channel(frames, channel):
    """The data frames (not acks) of one channel."""
    return [(r, f) for r, f in frames if "data" in f and f["arg"]["channel"] == channel]


def _run(records, session=None):
    session = session or OkxSession(list(INSTRUMENTS.values()))
    events, actions, crossed = [], [], []

    def on_book(sync: BookSync, upd: BookUpdate) -> None:
        if sync.book.is_crossed():
            crossed.append(upd)

    feed = VenueFeed(session, on_book=on_book, on_event=events.append)
    replay(feed, records, lambda r: None, actions.extend)
    return feed, events, actions, crossed


def test_capture_holds_what_the_readme_says(records):
    books = _channel(_frames(records), "books")
    assert sum(f["action"] == "snapshot" for _, f in books) == 3
    assert sum(f["action"] == "update" for _, f in books) == 287
    assert all("seqId" not in f["data"][0] and f["data"][0]["checksum"] != 0 for _, f in books)


def test_all_290_checksums_match_and_no_book_is_ever_crossed(records):
    feed, events, actions, crossed = _run(records)
    assert set(feed.syncs) == set(INSTRUMENTS.values())
    assert sum(s.checksums_ok for s in feed.syncs.values()) == 290
    assert sum(s.checksums_failed for s in feed.syncs.values()) == 0
    for symbol, sync in feed.syncs.items():
        assert sync.state is SyncState.SYNCED, (symbol, sync.reason)
        assert sync.gaps == 0 and sync.resyncs == 0 and sync.crossed == 0, symbol
        assert sync.checksums_ok > 80, symbol  # each instrument carries its share
        assert sync.applied == sync.checksums_ok - 1, (
            symbol
        )  # every update applied, plus the snapshot
        assert not sync.book.is_crossed() and len(sync.book.bids) > 25 and len(sync.book.asks) > 25
    assert crossed == []
    assert actions == []
    assert not [e for e in events if isinstance(e, BadFrame)]
    assert feed.session.stats.bad_frames == 0


def test_acks_trades_and_unasked_channels_are_told_apart(records):
    frames = _frames(records)
    session = OkxSession(list(INSTRUMENTS.values()))
    _, events, _, _ = _run(records, session)
    acks = sum(f.get("event") == "subscribe" for _, f in frames)
    tickers = len(_channel(frames, "tickers"))
    raw_trades = [(f["arg"]["instId"], d) for _, f in _channel(frames, "trades") for d in f["data"]]
    trades = [e for e in events if isinstance(e, Trade)]
    assert session.acks == acks == 18
    assert session.stats.unknown == tickers > 0  # tickers were not asked for: ignored, not bad
    assert len(trades) == len(raw_trades) > 50
    for trade, (inst, raw) in zip(trades, raw_trades, strict=True):
        assert trade.symbol == INSTRUMENTS[inst]
        assert (trade.price, trade.size, trade.trade_id) == (raw["px"], raw["sz"], raw["tradeId"])
        assert trade.side is (Side.BUY if raw["side"] == "buy" else Side.SELL)
        assert trade.venue_ts_ns == int(raw["ts"]) * 1_000_000


def test_update_decodes_to_exact_levels_and_counter_ids(records):
    session = OkxSession(list(INSTRUMENTS.values()))
    seen: dict[str, list[BookUpdate]] = {}
    for r, raw in _channel(_frames(records), "books"):
        (upd,) = session.on_frame(r.payload, r.recv_ns)
        data = raw["data"][0]
        assert upd.bids == [(lv[0], lv[1]) for lv in data["bids"]]
        assert upd.asks == [(lv[0], lv[1]) for lv in data["asks"]]
        assert upd.checksum == data["checksum"]
        assert upd.venue_ts_ns == int(data["ts"]) * 1_000_000 and upd.recv_ns == r.recv_ns
        assert upd.is_snapshot is (raw["action"] == "snapshot")
        seen.setdefault(upd.symbol, []).append(upd)
    for ups in seen.values():  # no seqId in this format: a per-symbol counter chains them
        assert ups[0].is_snapshot and ups[0].prev_id == -1
        assert all(
            b.prev_id == a.last_id and b.last_id == a.last_id + 1
            for a, b in zip(ups, ups[1:], strict=False)
        )


def _drop(records, instrument, nth):
    """The capture without the ``nth`` update of ``instrument`` (as if lost on the wire)."""
    count, out = 0, []
    for r in records:
        if (
            r.kind is Kind.RECV
            and b'"books","instId":"%s"' % instrument.encode() in r.payload
            and b'"update"' in r.payload
        ):
            count += 1
            if count == nth:
                continue
        out.append(r)
    return out


def test_a_lost_update_without_seqid_is_caught_by_the_checksum(records):
    """The checksum is the only guard of the old format: prove it bites on this data."""
    feed, events, actions, _ = _run(_drop(records, "BTC-USDT", 5))
    sync = feed.syncs["BTC-USDT"]
    assert sync.checksums_failed == 1 and sync.resyncs == 1
    assert sync.state is SyncState.RESYNCING and sync.reason == "checksum mismatch"
    assert [msgspec.json.decode(a.text)["op"] for a in actions] == ["unsubscribe", "subscribe"]
    assert all(isinstance(a, Send) for a in actions)
    assert msgspec.json.decode(actions[1].text)["args"] == [
        {"channel": "books", "instId": "BTC-USDT"}
    ]
    for other in ("BTC-USD-220527", "UNI-USD-PERP"):  # a resync of one symbol touches no other
        assert feed.syncs[other].synced and feed.syncs[other].checksums_failed == 0


def test_a_truncated_books_frame_is_a_gap_at_once(records):
    """A bad ``books`` frame is known to be lost: the next update is a gap, not a silent skip."""
    out, done = [], False
    for r in records:
        if (
            not done
            and r.kind is Kind.RECV
            and b'"books","instId":"UNI-USD-SWAP"' in r.payload
            and b'"update"' in r.payload
        ):
            r = msgspec.structs.replace(r, payload=r.payload[: len(r.payload) // 2])
            done = True
        out.append(r)
    feed, events, actions, _ = _run(out)
    sync = feed.syncs["UNI-USD-PERP"]
    assert feed.session.stats.bad_frames == 1
    assert sync.gaps == 1 and sync.checksums_failed == 0 and sync.reason == "gap"
    assert len(actions) == 2
    assert feed.syncs["BTC-USDT"].synced and feed.syncs["BTC-USD-220527"].synced
