"""OKX session behaviours the real capture lacks: seqId chain, REST seeding, errors, heartbeat.

Frames here are built in the documented v5 shapes (exchange-protocols.md §3); the
checksums of built frames come from an independent reference (a sorted dict per
side and the string spelled out by hand), not from the code under test.
"""

from __future__ import annotations

import zlib
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbwire.book import L2Book
from arbwire.feed import VenueFeed
from arbwire.model import BadFrame, BookUpdate, FeedState, Quote, Side, SyncState, Trade, VenueError
from arbwire.sync import Verdict
from arbwire.venues.base import Endpoints, FetchSnapshot, Reconnect, Send
from arbwire.venues.okx import OKX, OkxRule, OkxSession, okx_checksum

LOCAL = Endpoints("ws://127.0.0.1:18443", "http://127.0.0.1:18080")
S = 1_000_000_000
T0 = 1_700_000_000 * S


# -- reference model and frame builders ----------------------------------------------------
class RefBook:
    """The simplest possible book: two dicts of price text -> size text."""

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}

    def apply(self, bids, asks) -> None:
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for px, sz in levels:
                if Decimal(sz) == 0:
                    side.pop(px, None)
                else:
                    side[px] = sz

    def checksum(self) -> int:
        bids = sorted(self.bids.items(), key=lambda kv: -Decimal(kv[0]))[:25]
        asks = sorted(self.asks.items(), key=lambda kv: Decimal(kv[0]))[:25]
        fields = []
        for i in range(max(len(bids), len(asks))):
            for side in (bids, asks):
                if i < len(side):
                    fields += side[i]
        crc = zlib.crc32(":".join(fields).encode())
        return crc - 2**32 if crc >= 2**31 else crc


def books(inst, action, bids, asks, seq, prev, checksum=0, ts="1700000000123"):
    data = {
        "asks": [[p, s, "0", "1"] for p, s in asks],
        "bids": [[p, s, "0", "1"] for p, s in bids],
        "ts": ts,
        "checksum": checksum,
        "prevSeqId": prev,
        "seqId": seq,
    }
    return msgspec.json.encode(
        {"arg": {"channel": "books", "instId": inst}, "action": action, "data": [data]}
    )


class Venue:
    """Builds one instrument's ``books`` frames with true checksums from the reference book."""

    def __init__(self, inst: str, seq: int = 10) -> None:
        self.inst = inst
        self.ref = RefBook()
        self.seq = seq

    def snapshot(self, bids, asks, seq=None):
        self.ref = RefBook()
        self.ref.apply(bids, asks)
        self.seq = self.seq if seq is None else seq
        return books(self.inst, "snapshot", bids, asks, self.seq, -1, self.ref.checksum())

    def update(self, bids=(), asks=(), seq=None, prev=None):
        self.ref.apply(bids, asks)
        prev = self.seq if prev is None else prev
        self.seq = self.seq + 7 if seq is None else seq
        return books(self.inst, "update", bids, asks, self.seq, prev, self.ref.checksum())


BIDS = [("100.5", "1"), ("100.4", "2"), ("100", "3.50")]
ASKS = [("100.6", "1.25"), ("100.70", "2"), ("101", "4")]


def make_feed(symbols=("BTC-USDT", "ETH-USDT"), **kw):
    session = OkxSession(list(symbols), LOCAL, **kw)
    events, applied = [], []
    feed = VenueFeed(session, on_book=lambda sync, upd: applied.append(upd), on_event=events.append)
    return session, feed, events, applied


def sent(actions):
    return [msgspec.json.decode(a.text) for a in actions]


def synced_pair():
    """A feed with BTC-USDT and ETH-USDT both synced from WS snapshots."""
    session, feed, events, applied = make_feed()
    btc, eth = Venue("BTC-USDT"), Venue("ETH-USDT", seq=500)
    assert feed.on_frame(btc.snapshot(BIDS, ASKS), T0) == []
    assert feed.on_frame(eth.snapshot([("2000", "1")], [("2001", "1")]), T0) == []
    return session, feed, events, applied, btc, eth


def book_equals(book: L2Book, ref: RefBook) -> bool:
    return (
        dict(book.bids.text_levels(10_000)) == ref.bids
        and dict(book.asks.text_levels(10_000)) == ref.asks
    )


# -- checksum --------------------------------------------------------------------------------
def test_doc_checksum_vectors():
    assert (
        okx_checksum([("3366.1", "7"), ("3366", "6")], [("3366.8", "9"), ("3368", "8")])
        == -1881014294
    )
    assert (
        okx_checksum([("3366.1", "7")], [("3366.8", "9"), ("3368", "8"), ("3372", "8")])
        == 831078360
    )


def test_doc_checksum_vectors_through_the_book():
    rule = OkxRule()
    book = L2Book()
    book.apply_snapshot([("3366", "6"), ("3366.1", "7")], [("3368", "8"), ("3366.8", "9")])
    assert rule.checksum(book) == -1881014294
    book.apply_snapshot([("3366.1", "7")], [("3372", "8"), ("3366.8", "9"), ("3368", "8")])
    assert rule.checksum(book) == 831078360


def test_checksum_covers_only_the_top_25_levels_with_the_strings_as_received():
    ref = RefBook()
    bids = [(f"{1000 - i}.10", f"{i + 1}.000") for i in range(40)]
    asks = [(f"{1001 + i}.0", "0.50") for i in range(30)]
    ref.apply(bids, asks)
    book = L2Book()
    book.apply_snapshot(bids, asks)
    assert OkxRule().checksum(book) == ref.checksum()
    book.apply([("900.10", "5")], [])  # a change below level 25 leaves the checksum alone
    assert OkxRule().checksum(book) == ref.checksum()
    book.apply([("995.10", "5")], [])
    assert OkxRule().checksum(book) != ref.checksum()


# -- link ------------------------------------------------------------------------------------
def test_url_and_subscriptions():
    session = OkxSession(["BTC-USDT", "ETH-USDT-PERP"])
    assert session.endpoints == OKX and session.url() == "wss://ws.okx.com:8443/ws/v5/public"
    assert OkxSession(["BTC-USDT"], LOCAL).url() == "ws://127.0.0.1:18443/ws/v5/public"
    (msg,) = sent(session.on_open(T0))
    assert msg["op"] == "subscribe" and msg["id"]
    assert msg["args"] == [
        {"channel": "books", "instId": "BTC-USDT"},
        {"channel": "bbo-tbt", "instId": "BTC-USDT"},
        {"channel": "trades", "instId": "BTC-USDT"},
        {"channel": "books", "instId": "ETH-USDT-SWAP"},
        {"channel": "bbo-tbt", "instId": "ETH-USDT-SWAP"},
        {"channel": "trades", "instId": "ETH-USDT-SWAP"},
    ]


def test_subscriptions_are_batched():
    session = OkxSession(["A-USDT", "B-USDT", "C-USDT"], LOCAL, max_args_per_message=4)
    msgs = sent(session.on_open(T0))
    assert [len(m["args"]) for m in msgs] == [4, 4, 1]
    assert len({m["id"] for m in msgs}) == 3
    assert [a for m in msgs for a in m["args"]] == [
        {"channel": c, "instId": s}
        for s in ("A-USDT", "B-USDT", "C-USDT")
        for c in ("books", "bbo-tbt", "trades")
    ]


def test_swap_frames_map_to_perp_symbols():
    session = OkxSession(["BCH-USDT-PERP"], LOCAL)
    frame = b'{"arg":{"channel":"bbo-tbt","instId":"BCH-USDT-SWAP"},"data":[{"asks":[["111.06","55154","0","2"]],"bids":[["111.05","57745","0","2"]],"ts":"1670324386802","seqId":363996337}]}'
    (q,) = session.on_frame(frame, T0)
    assert q == Quote(
        "okx",
        "BCH-USDT-PERP",
        "111.05",
        "57745",
        "111.06",
        "55154",
        363996337,
        1670324386802 * 1_000_000,
        T0,
    )
    assert (
        session.snapshot_url("BCH-USDT-PERP")
        == "http://127.0.0.1:18080/api/v5/market/books?instId=BCH-USDT-SWAP&sz=400"
    )


def test_one_sided_bbo_is_not_a_quote():
    session = OkxSession(["BTC-USDT"], LOCAL)
    frame = b'{"arg":{"channel":"bbo-tbt","instId":"BTC-USDT"},"data":[{"asks":[],"bids":[["1","2","0","1"]],"ts":"1","seqId":5}]}'
    assert session.on_frame(frame, T0) == []
    assert session.one_sided_bbo == 1 and session.stats.bad_frames == 0


def test_trades_give_taker_side_and_ns_time():
    session = OkxSession(["BTC-USDT"], LOCAL)
    frame = (
        b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":['
        b'{"instId":"BTC-USDT","tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897","count":"3","source":"0","seqId":1234},'
        b'{"instId":"BTC-USDT","tradeId":"130639475","px":"42219.8","sz":"1","side":"sell","ts":"1630048897898","count":"1","source":"0","seqId":1234}]}'
    )
    a, b = session.on_frame(frame, T0)
    assert a == Trade(
        "okx", "BTC-USDT", "42219.9", "0.12060306", Side.BUY, "130639474", 1630048897897_000_000, T0
    )
    assert (
        b.side is Side.SELL and b.trade_id == "130639475" and b.venue_ts_ns == 1630048897898_000_000
    )


# -- seqId rules -----------------------------------------------------------------------------
def test_doc_sequence_snapshot_update_heartbeat_reset_update():
    """§3.6: snapshot (-1 -> 10), update (10 -> 15), no-change (15 -> 15), reset (15 -> 3), update (3 -> 5)."""
    session, feed, events, applied = make_feed(["BTC-USDT"])
    v = Venue("BTC-USDT")
    frames = [
        v.snapshot(BIDS, ASKS, seq=10),
        v.update([("100.5", "0")], [("100.55", "9")], seq=15),
        v.update(seq=15),  # heartbeat: empty sides, prevSeqId == seqId
        v.update([("99", "1")], [], seq=3),  # maintenance reset
        v.update([], [("100.6", "0")], seq=5),
    ]
    for frame in frames:
        assert feed.on_frame(frame, T0) == []
    sync = feed.syncs["BTC-USDT"]
    assert [(u.prev_id, u.last_id) for u in applied] == [
        (-1, 10),
        (10, 15),
        (15, 15),
        (15, 3),
        (3, 5),
    ]
    assert sync.state is SyncState.SYNCED and sync.gaps == 0 and sync.last_id == 5
    assert sync.checksums_ok == 5 and sync.checksums_failed == 0
    assert book_equals(sync.book, v.ref)


def test_gap_asks_for_a_resubscribe_and_a_new_snapshot_resyncs():
    session, feed, events, applied, btc, eth = synced_pair()
    assert feed.on_frame(btc.update([("100.1", "1")], []), T0) == []
    actions = feed.on_frame(
        btc.update([("100.2", "1")], [], seq=100, prev=90), T0 + 1
    )  # 17 -> 90 lost
    assert all(isinstance(a, Send) for a in actions)
    assert sent(actions) == [
        {
            "id": sent(actions)[0]["id"],
            "op": "unsubscribe",
            "args": [{"channel": "books", "instId": "BTC-USDT"}],
        },
        {
            "id": sent(actions)[1]["id"],
            "op": "subscribe",
            "args": [{"channel": "books", "instId": "BTC-USDT"}],
        },
    ]
    sync = feed.syncs["BTC-USDT"]
    assert sync.state is SyncState.RESYNCING and sync.gaps == 1 and not sync.book
    assert [e for e in events if isinstance(e, FeedState)][-1].reason == "gap"
    assert session.resubscribes == 1
    # the other symbol is untouched and keeps applying
    assert feed.on_frame(eth.update([("2000.5", "1")], []), T0 + 2) == []
    assert feed.syncs["ETH-USDT"].synced and book_equals(feed.syncs["ETH-USDT"].book, eth.ref)
    # leftovers of the old subscription are held, with no second request
    assert feed.on_frame(btc.update([("100.3", "1")], [], seq=110), T0 + 3) == []
    # the new subscription's snapshot re-seeds; the leftovers are older and dropped
    assert feed.on_frame(btc.snapshot(BIDS, ASKS, seq=120), T0 + 4) == []
    assert sync.synced and book_equals(sync.book, btc.ref)
    assert feed.on_frame(btc.update([], [("100.65", "3")]), T0 + 5) == []
    assert sync.synced and sync.last_id == 127 and book_equals(sync.book, btc.ref)
    assert sync.gaps == 1 and sync.resyncs == 1


def test_checksum_mismatch_resyncs_but_checksum_zero_is_not_checked():
    session, feed, events, applied, btc, eth = synced_pair()
    sync = feed.syncs["BTC-USDT"]
    ok_before = sync.checksums_ok
    zero = books("BTC-USDT", "update", [("100.1", "1")], [], 17, 10, checksum=0)
    assert session.on_frame(zero, T0)[0].checksum is None  # 0 means "no checksum" (OKX, June 2026)
    assert (
        feed.on_frame(books("BTC-USDT", "update", [("100.1", "1")], [], 17, 10, checksum=0), T0)
        == []
    )
    assert sync.synced and sync.checksums_ok == ok_before and sync.checksums_failed == 0
    actions = feed.on_frame(
        books("BTC-USDT", "update", [("100.2", "1")], [], 24, 17, checksum=12345), T0
    )
    assert [m["op"] for m in sent(actions)] == ["unsubscribe", "subscribe"]
    assert sync.checksums_failed == 1 and sync.reason == "checksum mismatch"
    assert feed.syncs["ETH-USDT"].synced


def test_rule_verdicts():
    ws, rest = OkxRule("ws"), OkxRule("rest")

    def upd(prev, seq):
        return BookUpdate("okx", "X", [], [], seq, seq, prev)

    assert ws.snapshot_in_stream and not rest.snapshot_in_stream
    for rule in (ws, rest):
        assert rule.next(15, upd(15, 20)) is Verdict.APPLY
        assert rule.next(15, upd(15, 15)) is Verdict.APPLY  # heartbeat
        assert rule.next(15, upd(15, 3)) is Verdict.APPLY  # reset
        assert rule.next(15, upd(16, 20)) is Verdict.GAP
        assert rule.next(15, upd(20, 3)) is Verdict.GAP  # a reset that does not chain
        assert rule.next(15, upd(10, 15)) is Verdict.STALE
        assert rule.first(15, upd(15, 3)) is Verdict.APPLY
        assert rule.first(15, upd(10, 12)) is Verdict.STALE
        assert rule.first(15, upd(12, 9)) is Verdict.STALE  # an old reset the snapshot holds
        assert rule.first(15, upd(20, 30)) is Verdict.GAP  # snapshot older than the diffs
    assert ws.first(15, upd(10, 20)) is Verdict.GAP  # after a WS snapshot the chain is exact
    assert rest.first(15, upd(10, 20)) is Verdict.APPLY  # prevSeqId <= snapshot seqId < seqId
    with pytest.raises(ValueError, match="snapshot_source"):
        OkxRule("sbe")  # type: ignore[arg-type]


# -- REST seeding ------------------------------------------------------------------------------
def rest_body(bids, asks, seq, code="0"):
    book = {
        "asks": [[p, s, "0", "1"] for p, s in asks],
        "bids": [[p, s, "0", "1"] for p, s in bids],
        "ts": "1700000000999",
    }
    if seq is not None:
        book["seqId"] = seq
    return msgspec.json.encode({"code": code, "msg": "", "data": [book]})


def test_rest_seeding_aligns_buffered_updates():
    session, feed, events, applied = make_feed(["BTC-USDT"], snapshot_source="rest")
    v = Venue("BTC-USDT", seq=100)
    assert feed.on_frame(v.snapshot(BIDS, ASKS), T0) == []  # the WS snapshot is not used
    assert session.ws_snapshots_ignored == 1 and not applied
    u1 = v.update([("100.1", "1")], [], seq=110)  # 100 -> 110: inside the REST snapshot
    rest_state = (dict(v.ref.bids), dict(v.ref.asks))
    u2 = v.update([("100.2", "2")], [("100.6", "0")], seq=120)  # 110 -> 120: straddles it
    u3 = v.update([], [("100.8", "1")], seq=130)
    assert feed.on_frame(u1, T0 + 1) == [
        FetchSnapshot(
            "BTC-USDT", "http://127.0.0.1:18080/api/v5/market/books?instId=BTC-USDT&sz=400"
        )
    ]
    assert feed.on_frame(u2, T0 + 2) == [] and feed.on_frame(u3, T0 + 3) == []
    sync = feed.syncs["BTC-USDT"]
    assert sync.state is SyncState.BUFFERING
    body = rest_body(list(rest_state[0].items()), list(rest_state[1].items()), seq=115)
    assert feed.on_snapshot("BTC-USDT", body, T0 + 4) == []
    assert sync.synced and sync.last_id == 130 and book_equals(sync.book, v.ref)
    assert [u.last_id for u in applied] == [115] and sync.applied == 2  # 110 -> 120 and 120 -> 130
    assert sync.checksums_ok == 2 and sync.checksums_failed == 0  # u2 and u3 carried real checksums
    assert feed.on_frame(v.update([("100.3", "1")], []), T0 + 5) == []
    assert sync.last_id == 137 and book_equals(sync.book, v.ref)


def test_rest_snapshot_older_than_the_stream_is_fetched_again():
    session, feed, events, applied = make_feed(["BTC-USDT"], snapshot_source="rest")
    actions = feed.on_frame(books("BTC-USDT", "update", [("1", "1")], [("2", "1")], 110, 100), T0)
    assert [type(a) for a in actions] == [FetchSnapshot]
    actions = feed.on_snapshot("BTC-USDT", rest_body([("1", "1")], [("2", "1")], seq=95), T0 + 1)
    assert actions == [FetchSnapshot("BTC-USDT", session.snapshot_url("BTC-USDT"))]
    sync = feed.syncs["BTC-USDT"]
    assert sync.state is SyncState.BUFFERING and not sync.book
    assert (
        feed.on_snapshot("BTC-USDT", rest_body([("1", "2")], [("2", "1")], seq=105), T0 + 2) == []
    )
    assert sync.synced and sync.last_id == 110 and sync.book.top() == (("1", "1"), ("2", "1"))


def test_rest_snapshot_without_seqid_fails_loudly():
    session, feed, events, applied = make_feed(["BTC-USDT"], snapshot_source="rest")
    with pytest.raises(ValueError, match=r"okx BTC-USDT .*seqId"):
        session.parse_snapshot("BTC-USDT", rest_body([("1", "1")], [("2", "1")], seq=None), T0)
    with pytest.raises(ValueError, match=r"okx BTC-USDT .*seqId"):
        feed.on_snapshot("BTC-USDT", rest_body([("1", "1")], [("2", "1")], seq=None), T0)
    with pytest.raises(ValueError, match=r"okx BTC-USDT .*51001"):
        session.parse_snapshot("BTC-USDT", rest_body([], [], seq=5, code="51001"), T0)
    with pytest.raises(ValueError, match=r"okx ETH-USDT"):
        session.parse_snapshot("ETH-USDT", b'{"code":"0","data":[{"asks":"x"}]}', T0)
    snap = session.parse_snapshot("BTC-USDT", rest_body([("1", "1")], [("2", "1")], seq=7), T0)
    assert (snap.is_snapshot, snap.first_id, snap.last_id, snap.venue_ts_ns) == (
        True,
        7,
        7,
        1700000000999_000_000,
    )


def test_rest_mode_update_without_seqid_is_a_bad_frame():
    session = OkxSession(["BTC-USDT"], LOCAL, snapshot_source="rest")
    frame = b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"bids":[],"ts":"1","checksum":0}]}'
    (bad,) = session.on_frame(frame, T0)
    assert isinstance(bad, BadFrame) and "seqId" in bad.reason


# -- bad input -----------------------------------------------------------------------------
GOOD_TRADE = b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":"1.5","sz":"2","side":"buy","ts":"1630048897897"}]}'

BAD_FRAMES = {
    "malformed json": b'{"arg":{"channel":"books"',
    "not json": b"\xff\xfe\x00garbage",
    "empty": b"",
    "array": b"[1,2,3]",
    "unknown event": b'{"event":"bogus","arg":{"channel":"books","instId":"BTC-USDT"}}',
    "no arg": b'{"data":[{"asks":[],"bids":[]}]}',
    "seqId as text": b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"bids":[],"ts":"1","checksum":0,"prevSeqId":17,"seqId":"24"}]}',
    "px as number": b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[[100.9,"1","0","1"]],"bids":[],"ts":"1","prevSeqId":17,"seqId":24}]}',
    "level too short": b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["100.9"]],"bids":[],"ts":"1","prevSeqId":17,"seqId":24}]}',
    "no bids": b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"ts":"1","prevSeqId":17,"seqId":24}]}',
    "no prevSeqId": b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"bids":[],"ts":"1","seqId":24}]}',
    "unknown action": b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"patch","data":[{"asks":[],"bids":[],"ts":"1","prevSeqId":17,"seqId":24}]}',
    "ts not a number": b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[],"bids":[],"ts":"soon","prevSeqId":17,"seqId":24}]}',
    "trade side": GOOD_TRADE.replace(b'"buy"', b'"hold"'),
    "trade no px": GOOD_TRADE.replace(b'"px":"1.5",', b""),
    "truncated": GOOD_TRADE[:-9],
    "data not a list": b'{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":{"px":"1"}}',
}


@pytest.mark.parametrize("name", list(BAD_FRAMES))
def test_bad_frames_are_counted_and_the_session_keeps_working(name):
    session, feed, events, applied, btc, eth = synced_pair()
    assert feed.on_frame(btc.update([("100.1", "1")], []), T0) == []  # BTC at seqId 17
    assert feed.on_frame(BAD_FRAMES[name], T0 + 1) == []
    bad = [e for e in events if isinstance(e, BadFrame)]
    assert len(bad) == 1 and session.stats.bad_frames == 1, bad
    assert bad[0].venue == "okx" and bad[0].recv_ns == T0 + 1
    # the next good frames of both symbols still apply
    assert feed.on_frame(btc.update([("100.2", "1")], []), T0 + 2) == []
    assert feed.on_frame(eth.update([], [("2002", "3")]), T0 + 3) == []
    assert feed.on_frame(GOOD_TRADE, T0 + 4) == []
    for sym, v in (("BTC-USDT", btc), ("ETH-USDT", eth)):
        sync = feed.syncs[sym]
        assert sync.synced and sync.gaps == 0 and book_equals(sync.book, v.ref), sym
    assert isinstance(events[-1], Trade)


def test_a_lost_books_frame_of_one_symbol_leaves_the_other_alone():
    session, feed, events, applied, btc, eth = synced_pair()
    lost = btc.update([("100.1", "1")], [])
    assert isinstance(session.on_frame(lost[:40], T0)[0], BadFrame)  # truncated on the way
    actions = feed.on_frame(btc.update([("100.2", "1")], []), T0 + 1)
    assert [m["op"] for m in sent(actions)] == ["unsubscribe", "subscribe"]
    assert feed.on_frame(eth.update([], [("2002", "3")]), T0 + 2) == []
    assert feed.syncs["ETH-USDT"].synced and book_equals(feed.syncs["ETH-USDT"].book, eth.ref)


def _real_frames(real_data):
    from arbwire.record.importers import Kind, read_cryptofeed

    return [
        r.payload
        for r in read_cryptofeed(real_data / "cryptofeed" / "OKX.ws.1.0")
        if r.kind is Kind.RECV
    ]


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_real_frames_never_raise(real_data, data):
    frames = _real_frames(real_data)
    session = OkxSession(["BTC-USDT", "UNI-USD-PERP", "BTC-USD-220527"], LOCAL)
    frame = bytearray(data.draw(st.sampled_from(frames)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(frame) - 1))
        op = data.draw(st.sampled_from(["flip", "cut", "dup"]))
        if op == "flip":
            frame[i] = data.draw(st.integers(0, 255))
        elif op == "cut":
            del frame[i:]
            if not frame:
                break
        else:
            frame[i:i] = frame[i : i + 8]
    before = session.stats.bad_frames
    out = session.on_frame(bytes(frame), T0)  # must not raise
    assert all(
        isinstance(o, BadFrame | BookUpdate | Trade | Quote | VenueError | Send | Reconnect)
        for o in out
    )
    assert session.stats.bad_frames - before == sum(isinstance(o, BadFrame) for o in out)


# -- venue messages ---------------------------------------------------------------------------
def test_unknown_instrument_60018_names_the_symbol():
    session = OkxSession(["BTC-USDTT", "ETH-USDT-PERP"], LOCAL)
    frame = b'{"event":"error","code":"60018","msg":"Wrong URL or channel:books,instId:BTC-USDTT doesn\'t exist. Please use the correct URL, channel and parameters referring to API document.","connId":"b2b0944b"}'
    (err,) = session.on_frame(frame, T0)
    assert isinstance(err, VenueError)
    assert (err.venue, err.symbol, err.code, err.recv_ns) == ("okx", "BTC-USDTT", "60018", T0)
    assert "doesn't exist" in err.message and session.stats.venue_errors == 1
    swap = b'{"event":"error","code":"60018","msg":"Subscribe failed, wrong URL or channel:trades,instId:ETH-USDT-SWAP doesn\'t exist","connId":"x"}'
    assert session.on_frame(swap, T0)[0].symbol == "ETH-USDT-PERP"


def test_error_is_named_by_its_request_id_when_the_text_has_no_instid():
    session = OkxSession(["BTC-USDT", "ETH-USDT"], LOCAL)
    session.on_open(T0)
    resub = sent(session.snapshot_request("ETH-USDT"))
    frame = msgspec.json.encode(
        {
            "id": resub[1]["id"],
            "event": "error",
            "code": "60014",
            "msg": "Requests too frequent.",
            "connId": "a",
        }
    )
    (err,) = session.on_frame(frame, T0)
    assert (err.symbol, err.code) == ("ETH-USDT", "60014")
    doc = b'{"id":"1512","event":"error","code":"60012","msg":"Invalid request: {\\"op\\": \\"subscribe\\", \\"argss\\":[{ \\"channel\\" : \\"books\\", \\"instId\\" : \\"BTC-USD-191227\\"}]}","connId":"a4d3ae55"}'
    (err,) = session.on_frame(doc, T0)
    assert (err.symbol, err.code) == ("BTC-USD-191227", "60012")


def test_service_upgrade_notice_asks_for_a_reconnect():
    session = OkxSession(["BTC-USDT"], LOCAL)
    frame = b'{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}'
    (action,) = session.on_frame(frame, T0)
    assert isinstance(action, Reconnect) and "64008" in action.reason
    feed = VenueFeed(OkxSession(["BTC-USDT"], LOCAL))
    assert feed.on_frame(frame, T0) == [action]


def test_acks_are_counted_not_reported():
    session = OkxSession(["BTC-USDT"], LOCAL)
    assert (
        session.on_frame(
            b'{"id":"1","event":"subscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a"}',
            T0,
        )
        == []
    )
    assert (
        session.on_frame(
            b'{"event":"unsubscribe","arg":{"channel":"books","instId":"BTC-USDT"},"connId":"a"}',
            T0,
        )
        == []
    )
    assert session.acks == 2 and session.stats.bad_frames == 0


# -- heartbeat ------------------------------------------------------------------------------------
def test_ping_after_silence_and_pong_gives_rtt():
    session = OkxSession(["BTC-USDT"], LOCAL)
    session.on_open(T0)
    assert session.on_timer(T0 + 24 * S, T0) == []
    last = T0 + 10 * S  # data arrived at +10 s: the 25 s count starts there
    assert session.on_timer(T0 + 34 * S, last) == []
    assert session.on_timer(T0 + 35 * S, last) == [Send("ping")]
    assert session.on_timer(T0 + 36 * S, last) == []  # one ping outstanding at a time
    assert session.on_frame(b"pong", T0 + 35 * S + 42_000_000) == []
    assert session.last_pong_ns == T0 + 35 * S + 42_000_000 and session.last_rtt_ns == 42_000_000
    assert session.pings_sent == 1 and session.pongs == 1 and session.stats.bad_frames == 0
    pong_at = session.last_pong_ns
    assert session.on_timer(T0 + 50 * S, pong_at) == []
    assert session.on_timer(pong_at + 25 * S, pong_at) == [Send("ping")]


def test_no_data_since_open_pings_too():
    session = OkxSession(["BTC-USDT"], LOCAL, ping_after_s=5)
    session.on_open(T0)
    assert session.on_timer(T0 + 4 * S, 0) == []
    assert session.on_timer(T0 + 5 * S, 0) == [Send("ping")]


def test_overdue_pong_asks_for_a_reconnect():
    session = OkxSession(["BTC-USDT"], LOCAL, pong_timeout_s=3)
    session.on_open(T0)
    assert session.on_timer(T0 + 25 * S, T0) == [Send("ping")]
    assert session.on_timer(T0 + 27 * S, T0 + 26 * S) == []  # data is no pong
    assert session.on_timer(T0 + 28 * S, T0 + 26 * S) == [Reconnect("okx pong overdue")]
    assert session.pongs_overdue == 1
    assert session.on_timer(T0 + 29 * S, T0 + 26 * S) == []  # asked once, not every tick
    session.on_open(T0 + 30 * S)  # the new link starts clean
    assert session.on_timer(T0 + 31 * S, 0) == []


def test_heartbeat_settings_are_checked():
    with pytest.raises(ValueError, match="30"):
        OkxSession(["BTC-USDT"], LOCAL, ping_after_s=30)
    with pytest.raises(ValueError, match="pong_timeout_s"):
        OkxSession(["BTC-USDT"], LOCAL, pong_timeout_s=0)
    with pytest.raises(ValueError, match="tickers"):
        OkxSession(["BTC-USDT"], LOCAL, channels=("books", "tickers"))


def test_resubscribes_stop_at_the_hourly_allowance_and_ask_for_a_new_connection():
    """§3.3: 480 subscribe/unsubscribe requests per hour per connection. A resync costs two;
    once the rolling hour has no room, the session asks for a new connection instead."""
    hour = 3_600_000_000_000
    session = OkxSession(["BTC-USDT", "ETH-USDT"], max_requests_per_hour=6)
    t0 = 1_000_000_000
    assert len(session.on_open(t0)) == 1 and session.requests_left() == 5  # one batched subscribe
    for _ in range(2):
        unsub, sub = session.snapshot_request("BTC-USDT")
        assert '"op":"unsubscribe"' in unsub.text and '"op":"subscribe"' in sub.text
    assert session.requests_left() == 1
    (again,) = session.snapshot_request("ETH-USDT")
    assert isinstance(again, Reconnect) and "subscribe budget" in again.reason
    assert session.budget_reconnects == 1 and session.requests_left() == 1
    session.on_timer(t0 + hour - 1, t0)  # still inside the hour
    assert isinstance(session.snapshot_request("ETH-USDT")[0], Reconnect)
    session.on_timer(t0 + hour, t0)  # the first requests leave the window
    assert session.requests_left() == 6 and isinstance(session.snapshot_request("ETH-USDT")[0], Send)
    session.on_open(t0 + 2 * hour)  # a new connection starts afresh
    assert session.requests_left() == 5


def test_the_default_allowance_is_okx_s_and_a_broken_one_is_refused():
    assert OkxSession(["BTC-USDT"]).max_requests_per_hour == 480
    with pytest.raises(ValueError, match="max_requests_per_hour"):
        OkxSession(["BTC-USDT"], max_requests_per_hour=1)
