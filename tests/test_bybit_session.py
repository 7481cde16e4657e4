"""Bybit v5 session: real orderbook.50 frames, resync by resubscribe, replies, heartbeat, bad input."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbwire.feed import VenueFeed
from arbwire.model import BadFrame, BookUpdate, Quote, Side, SyncState, Trade, VenueError
from arbwire.numbers import to_units
from arbwire.sync import BookSync, Verdict
from arbwire.venues.base import Reconnect, Send
from arbwire.venues.bybit import SPOT_MAX_ARGS, BybitRule, BybitSession
from helpers.sessions import count_fallbacks, events_like_two_step

S = 1_000_000_000
FIXTURE = Path("fixtures") / "bybit" / "gct_spot_orderbook50_snapshot_delta.jsonl"


@pytest.fixture(scope="module")
def frames(real_data: Path) -> list[bytes]:
    lines = (real_data / FIXTURE).read_bytes().splitlines()
    assert len(lines) == 2
    return lines


def _raw(frame: bytes) -> dict:
    return msgspec.json.decode(frame)


def _book_frame(
    symbol: str, kind: str, u: int, bids=(), asks=(), *, seq: int = 0, depth: int = 50, ts: int = 1
) -> bytes:
    return msgspec.json.encode(
        {
            "topic": f"orderbook.{depth}.{symbol}",
            "ts": ts,
            "type": kind,
            "data": {"s": symbol, "b": [list(x) for x in bids], "a": [list(x) for x in asks], "u": u, "seq": seq},
            "cts": ts - 1,
        }
    )


def _retopic(frame: bytes, name: str, **data_changes) -> bytes:
    """A real fixture frame moved to another symbol and/or with changed data fields."""
    raw = _raw(frame)
    raw["topic"] = raw["topic"].rsplit(".", 1)[0] + "." + name
    raw["data"]["s"] = name
    raw["data"].update(data_changes)
    return msgspec.json.encode(raw)


def _sends(actions) -> list[dict]:
    assert all(isinstance(a, Send) for a in actions), actions
    return [msgspec.json.decode(a.text) for a in actions]


def _feed(session: BybitSession):
    events: list = []
    applied: list[BookUpdate] = []

    def on_book(sync: BookSync, upd: BookUpdate) -> None:
        assert not sync.book.is_crossed(), upd
        applied.append(upd)

    feed = VenueFeed(session, on_book=on_book, on_event=events.append)
    return feed, events, applied


def _levels(side) -> dict[Decimal, Decimal]:
    return {Decimal(p): Decimal(s) for p, s in side}


def _book_as_decimals(sync: BookSync) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    bids = {Decimal(p): Decimal(s) for p, s in sync.book.bids.text_levels(10_000)}
    asks = {Decimal(p): Decimal(s) for p, s in sync.book.asks.text_levels(10_000)}
    return bids, asks


# -- real frames -------------------------------------------------------------------


def test_fixture_frames_decode_to_exact_book_updates(frames):
    session = BybitSession(["BTC-USDT"])
    snap_raw, delta_raw = _raw(frames[0]), _raw(frames[1])

    (snap,) = session.on_frame(frames[0], 111)
    assert isinstance(snap, BookUpdate) and snap.is_snapshot
    assert (snap.venue, snap.symbol) == ("bybit", "BTC-USDT")
    assert snap.first_id == snap.last_id == snap_raw["data"]["u"] == 2876700
    assert snap.bids == [tuple(x) for x in snap_raw["data"]["b"]] and len(snap.bids) == 50
    assert snap.asks == [tuple(x) for x in snap_raw["data"]["a"]] and len(snap.asks) == 50
    assert snap.venue_ts_ns == snap_raw["ts"] * 1_000_000 and snap.recv_ns == 111
    assert snap.prev_id == -1 and snap.checksum is None

    (delta,) = session.on_frame(frames[1], 222)
    assert isinstance(delta, BookUpdate) and not delta.is_snapshot
    assert delta.first_id == delta.last_id == delta_raw["data"]["u"] == snap.last_id + 1
    assert delta.bids == [("75848.62", "0.014895"), ("75837.13", "0")]
    assert delta.asks == [tuple(x) for x in delta_raw["data"]["a"]]
    assert session.stats.bad_frames == 0 and session.stats.frames == 2


def test_fixture_book_from_snapshot_and_delta_is_exact(frames):
    session = BybitSession(["BTC-USDT"])
    feed, events, applied = _feed(session)
    assert feed.on_frame(frames[0], 1) == []
    assert feed.on_frame(frames[1], 2) == []
    sync = feed.syncs["BTC-USDT"]
    assert sync.state is SyncState.SYNCED and sync.started
    assert sync.last_id == 2876701 and sync.gaps == 0 and sync.applied == 1
    assert [u.last_id for u in applied] == [2876700, 2876701]

    # Independent expectation: dicts of Decimal over the fixture's own levels.
    snap, delta = _raw(frames[0])["data"], _raw(frames[1])["data"]
    want = []
    for side in ("b", "a"):
        book = _levels(snap[side])
        for price, size in delta[side]:
            if Decimal(size) == 0:
                book.pop(Decimal(price), None)
            else:
                book[Decimal(price)] = Decimal(size)
        want.append(book)
    want_bids, want_asks = want
    got_bids, got_asks = _book_as_decimals(sync)
    assert got_bids == want_bids and got_asks == want_asks
    # each side: one level deleted (75837.13 / 75852.65), one inserted (75848.62 / 75857.74)
    assert len(got_bids) == 50 and len(got_asks) == 50
    assert Decimal("75837.13") not in got_bids and Decimal("75852.65") not in got_asks
    assert got_bids[Decimal("75848.62")] == Decimal("0.014895")
    assert got_asks[Decimal("75857.74")] == Decimal("0.049778")

    best_bid, best_ask = max(want_bids), min(want_asks)
    assert best_bid < best_ask and not sync.book.is_crossed()
    (bid, bid_size), (ask, ask_size) = sync.book.top()
    assert (Decimal(bid), Decimal(bid_size)) == (best_bid, want_bids[best_bid])
    assert (Decimal(ask), Decimal(ask_size)) == (best_ask, want_asks[best_ask])
    assert sync.book.best_bid() == to_units(str(best_bid))
    # the delta's changes at the top: ask 75848.89 resized, bid 75848.62 inserted under the best
    assert want_asks[Decimal("75848.89")] == Decimal("0.088149")
    assert sync.book.bids.text_levels(3)[1] == ("75848.63", "0.004772")


def test_fixture_shape_on_linear_maps_to_perp(frames):
    session = BybitSession(["BTC-USDT"], category="linear")
    assert session.symbols == ["BTC-USDT-PERP"]
    assert session.url() == "wss://stream.bybit.com/v5/public/linear"
    feed, _, _ = _feed(session)
    feed.on_frame(frames[0], 1)
    feed.on_frame(frames[1], 2)
    assert set(feed.syncs) == {"BTC-USDT-PERP"}
    assert feed.syncs["BTC-USDT-PERP"].last_id == 2876701


# -- sequence rule --------------------------------------------------------------------


def _upd(u: int) -> BookUpdate:
    return BookUpdate("bybit", "BTC-USDT", [], [], u, u)


def test_rule_verdicts():
    rule = BybitRule()
    assert rule.snapshot_in_stream
    assert rule.first(100, _upd(101)) is Verdict.APPLY
    assert rule.first(100, _upd(100)) is Verdict.STALE  # buffered before the snapshot
    assert rule.first(100, _upd(42)) is Verdict.STALE
    assert rule.first(100, _upd(102)) is Verdict.GAP
    assert rule.next(100, _upd(101)) is Verdict.APPLY
    assert rule.next(100, _upd(102)) is Verdict.GAP
    assert rule.next(100, _upd(100)) is Verdict.GAP  # repeat: the stream broke
    assert rule.next(100, _upd(99)) is Verdict.GAP  # regression


def test_skipped_u_resubscribes_that_symbol_only(frames):
    session = BybitSession(["BTC-USDT", "ETH-USDT"])
    feed, events, applied = _feed(session)
    session.on_open(0)
    eth_snap = _retopic(frames[0], "ETHUSDT", u=500)
    eth_delta = _retopic(frames[1], "ETHUSDT", u=501)
    assert feed.on_frame(frames[0], 1) == [] and feed.on_frame(eth_snap, 2) == []
    btc, eth = feed.syncs["BTC-USDT"], feed.syncs["ETH-USDT"]

    skipped = _retopic(frames[1], "BTCUSDT", u=2876702)  # 2876701 never came
    actions = feed.on_frame(skipped, 3)
    reqs = _sends(actions)
    assert [(r["op"], r["args"]) for r in reqs] == [
        ("unsubscribe", ["orderbook.50.BTCUSDT"]),
        ("subscribe", ["orderbook.50.BTCUSDT"]),
    ]
    assert reqs[0]["req_id"] != reqs[1]["req_id"]
    assert btc.state is SyncState.RESYNCING and btc.gaps == 1 and not btc.book
    states = [e for e in events if e.__class__.__name__ == "FeedState"]
    assert states[-1].symbol == "BTC-USDT" and states[-1].reason == "gap"

    # ETH untouched: still synced, its next delta applies
    assert feed.on_frame(eth_delta, 4) == []
    assert eth.state is SyncState.SYNCED and eth.last_id == 501 and eth.gaps == 0

    # while resyncing: acks of the resubscribe, another old delta, no further requests
    for req in _sends(actions):
        ack = {"success": True, "ret_msg": req["op"], "conn_id": "c", "req_id": req["req_id"], "op": req["op"]}
        assert feed.on_frame(msgspec.json.encode(ack), 5) == []
    assert feed.on_frame(_retopic(frames[1], "BTCUSDT", u=2876703), 6) == []

    # the fresh snapshot resyncs BTC; buffered old deltas are stale against it
    assert feed.on_frame(_retopic(frames[0], "BTCUSDT", u=2876800), 7) == []
    assert btc.state is SyncState.SYNCED and btc.last_id == 2876800
    assert _book_as_decimals(btc) == (_levels(_raw(frames[0])["data"]["b"]), _levels(_raw(frames[0])["data"]["a"]))
    assert feed.on_frame(_retopic(frames[1], "BTCUSDT", u=2876801), 8) == []
    assert btc.last_id == 2876801 and btc.started
    assert session.stats.bad_frames == 0


def test_u_regression_after_chain_started_is_a_gap(frames):
    session = BybitSession(["BTC-USDT"])
    feed, _, _ = _feed(session)
    feed.on_frame(frames[0], 1)
    feed.on_frame(frames[1], 2)
    actions = feed.on_frame(_retopic(frames[1], "BTCUSDT", u=2876690), 3)
    assert [r["op"] for r in _sends(actions)] == ["unsubscribe", "subscribe"]
    assert feed.syncs["BTC-USDT"].state is SyncState.RESYNCING


def test_regression_right_after_snapshot_is_caught_by_the_session(frames):
    session = BybitSession(["BTC-USDT"])
    feed, events, _ = _feed(session)
    feed.on_frame(frames[0], 1)
    back = _retopic(frames[1], "BTCUSDT", u=2876650)  # the rule alone would call this stale
    actions = feed.on_frame(back, 2)
    assert [r["args"] for r in _sends(actions)] == [["orderbook.50.BTCUSDT"]] * 2
    assert session.regressions == 1 and session.stats.bad_frames == 1
    assert any(isinstance(e, BadFrame) and "regression" in e.reason for e in events)
    sync = feed.syncs["BTC-USDT"]
    assert sync.applied == 0  # the step back was never applied


def test_seq_going_back_while_u_chains_is_not_applied(frames):
    session = BybitSession(["BTC-USDT"])
    feed, _, _ = _feed(session)
    feed.on_frame(frames[0], 1)
    snap_seq = _raw(frames[0])["data"]["seq"]
    actions = feed.on_frame(_retopic(frames[1], "BTCUSDT", seq=snap_seq - 1), 2)
    assert [r["op"] for r in _sends(actions)] == ["unsubscribe", "subscribe"]
    assert feed.syncs["BTC-USDT"].applied == 0 and session.regressions == 1
    # the real pair (seq 47474967795 -> 47474967823, not contiguous) is no regression
    clean = BybitSession(["BTC-USDT"])
    assert [type(x) for f in frames for x in clean.on_frame(f, 1)] == [BookUpdate, BookUpdate]
    assert clean.regressions == 0


def test_u_equal_one_resets_the_book(frames):
    session = BybitSession(["BTC-USDT"])
    feed, _, _ = _feed(session)
    feed.on_frame(frames[0], 1)
    feed.on_frame(frames[1], 2)
    restart = _book_frame("BTCUSDT", "delta", 1, [("70000.1", "1.5")], [("70001", "2")])
    (upd,) = session.on_frame(restart, 3)
    assert upd.is_snapshot and upd.last_id == 1
    feed.on_frame(restart, 3)
    sync = feed.syncs["BTC-USDT"]
    assert sync.state is SyncState.SYNCED and sync.last_id == 1 and sync.gaps == 0
    assert _book_as_decimals(sync) == ({Decimal("70000.1"): Decimal("1.5")}, {Decimal("70001"): Decimal("2")})
    assert feed.on_frame(_book_frame("BTCUSDT", "delta", 2, [("70000.2", "1")]), 4) == []
    assert sync.last_id == 2 and sync.book.top()[0] == ("70000.2", "1")


def test_new_snapshot_mid_stream_replaces_the_book(frames):
    session = BybitSession(["BTC-USDT"])
    feed, _, _ = _feed(session)
    feed.on_frame(frames[0], 1)
    feed.on_frame(frames[1], 2)
    feed.on_frame(_book_frame("BTCUSDT", "snapshot", 9000, [("1", "1")], [("2", "1")]), 3)
    sync = feed.syncs["BTC-USDT"]
    assert sync.state is SyncState.SYNCED and sync.last_id == 9000
    assert len(sync.book.bids) == len(sync.book.asks) == 1


# -- subscriptions and replies ----------------------------------------------------------


def test_on_open_subscribes_per_symbol_within_spot_limit():
    symbols = [f"C{i}-USDT" for i in range(7)]
    session = BybitSession(symbols, depth=200)
    assert session.url() == "wss://stream.bybit.com/v5/public/spot"
    reqs = _sends(session.on_open(0))
    assert len(reqs) == 7  # one request per symbol, so a rejection is that symbol's alone
    assert all(r["op"] == "subscribe" and 0 < len(r["args"]) <= SPOT_MAX_ARGS for r in reqs)
    assert len({r["req_id"] for r in reqs}) == len(reqs)
    args = [a for r in reqs for a in r["args"]]
    assert len(args) == len(set(args)) == 3 * 7
    # spot tickers carry no bid/ask: the BBO comes from orderbook.1, by default
    assert reqs[0]["args"] == ["orderbook.200.C0USDT", "publicTrade.C0USDT", "orderbook.1.C0USDT"]
    no_bbo = BybitSession(["BTC-USDT"], bbo=False)
    assert _sends(no_bbo.on_open(0))[0]["args"] == ["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT"]

    linear = BybitSession(["BTC-USDT-PERP", "ETH-USDT"], category="linear")
    assert linear.symbols == ["BTC-USDT-PERP", "ETH-USDT-PERP"]
    reqs = _sends(linear.on_open(0))
    assert [r["args"] for r in reqs] == [
        ["orderbook.50.BTCUSDT", "publicTrade.BTCUSDT", "tickers.BTCUSDT"],
        ["orderbook.50.ETHUSDT", "publicTrade.ETHUSDT", "tickers.ETHUSDT"],
    ]
    fast = BybitSession(["BTC-USDT-PERP"], category="linear", bbo=True)
    assert _sends(fast.on_open(0))[0]["args"] == [
        "orderbook.50.BTCUSDT", "publicTrade.BTCUSDT", "tickers.BTCUSDT", "orderbook.1.BTCUSDT",
    ]  # fmt: skip


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        BybitSession(["BTC-USDT"], depth=25)
    with pytest.raises(ValueError):
        BybitSession(["BTC-USDT"], category="inverse")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BybitSession(["BTC-USDT-PERP"])  # a perpetual on the spot link
    with pytest.raises(ValueError):
        BybitSession(["BTCUSDT"])


def test_rejected_subscription_names_its_symbol_and_others_carry_on(frames):
    session = BybitSession(["BTC-USDT", "XXX-USDT"])
    feed, events, _ = _feed(session)
    reqs = _sends(session.on_open(0))
    bad = next(r for r in reqs if "orderbook.50.XXXUSDT" in r["args"])
    good = next(r for r in reqs if "orderbook.50.BTCUSDT" in r["args"])

    # data before its ack is fine
    assert feed.on_frame(frames[0], 1) == []
    reply = {
        "success": False,
        "ret_msg": "Invalid symbol :[orderbook.50.XXXUSDT]",
        "conn_id": "d9tc9msptl6qssdmv0gg-cwel",
        "req_id": bad["req_id"],
        "op": "subscribe",
    }
    assert feed.on_frame(msgspec.json.encode(reply), 2) == []
    ack = {"success": True, "ret_msg": "subscribe", "conn_id": "c", "req_id": good["req_id"], "op": "subscribe"}
    assert feed.on_frame(msgspec.json.encode(ack), 3) == []
    assert feed.on_frame(frames[1], 4) == []

    errors = [e for e in events if isinstance(e, VenueError)]
    assert len(errors) == 1
    assert errors[0].symbol == "XXX-USDT" and errors[0].code == "subscribe"
    assert "Invalid symbol" in errors[0].message and "orderbook.1.XXXUSDT" in errors[0].message
    assert session.rejected == set(bad["args"]) and session.acked == set(good["args"])
    assert session.stats.venue_errors == 1
    btc = feed.syncs["BTC-USDT"]
    assert btc.state is SyncState.SYNCED and btc.last_id == 2876701


def test_rejection_without_known_req_id_names_topics_from_the_message():
    session = BybitSession(["BTC-USDT"], category="linear")
    session.on_open(0)
    reply = b'{"success":false,"ret_msg":"error:handler not found,topic:publicTrade.NOTASYMBOL","conn_id":"x","req_id":"","op":"subscribe"}'
    (err,) = session.on_frame(reply, 5)
    assert isinstance(err, VenueError) and err.symbol == "NOTASYMBOL" and err.recv_ns == 5
    (err,) = session.on_frame(b'{"success":false,"ret_msg":"args size >10","op":"subscribe"}', 6)
    assert isinstance(err, VenueError) and err.symbol == "" and err.message == "args size >10"


def test_failed_resubscribe_is_reported_for_that_symbol(frames):
    session = BybitSession(["BTC-USDT", "ETH-USDT"])
    session.on_open(0)
    sub = _sends(session.snapshot_request("ETH-USDT"))[1]
    reply = msgspec.json.encode({"success": False, "ret_msg": "boom", "req_id": sub["req_id"], "op": "subscribe"})
    (err,) = session.on_frame(reply, 1)
    assert err.symbol == "ETH-USDT" and "orderbook.50.ETHUSDT" in err.message


# -- heartbeat --------------------------------------------------------------------------


def test_ping_every_interval_and_pong_consumed():
    session = BybitSession(["BTC-USDT"])
    assert session.on_timer(100 * S, 0) == []  # link not open yet
    session.on_open(1000 * S)
    assert session.on_timer(1019 * S, 0) == []
    assert session.on_timer(1020 * S, 0) == [Send('{"op":"ping"}')]
    assert session.on_timer(1021 * S, 0) == []
    spot_pong = b'{"success":true,"ret_msg":"pong","conn_id":"0970e817-426e-429a-a679-ff7f55e0b16a","op":"ping"}'
    assert session.on_frame(spot_pong, 1020 * S + 5_000_000) == []
    assert session.last_pong_ns == 1020 * S + 5_000_000 and session.last_rtt_ns == 5_000_000
    assert session.on_timer(1035 * S, 0) == []  # answered: no reconnect
    assert session.on_timer(1040 * S, 0) == [Send('{"op":"ping"}')]
    linear_pong = b'{"success":true,"ret_msg":"pong","conn_id":"465772b1","req_id":"","op":"ping"}'
    assert session.on_frame(linear_pong, 1041 * S) == []
    assert session.on_frame(b'{"req_id":"","op":"pong","args":["1675418560633"],"conn_id":"x"}', 1042 * S) == []
    assert session.pongs == 3 and session.stats.bad_frames == 0


def test_overdue_pong_reconnects_and_intervals_are_configurable():
    session = BybitSession(["BTC-USDT"], ping_interval_s=5, pong_timeout_s=3)
    session.on_open(0)
    assert session.on_timer(5 * S, 5 * S) == [Send('{"op":"ping"}')]
    assert session.on_timer(7 * S, 7 * S) == []  # data still flows, pong not yet late
    (action,) = session.on_timer(8 * S, 8 * S)
    assert isinstance(action, Reconnect) and "pong" in action.reason
    assert session.on_timer(9 * S, 9 * S) == []  # nothing more until the link reopens
    assert len(session.on_open(10 * S)) == 1
    assert session.on_timer(14 * S, 0) == []
    assert session.on_timer(15 * S, 0) == [Send('{"op":"ping"}')]


# -- trades and quotes ----------------------------------------------------------------


def test_trades_spot_and_linear_key_orders():
    spot = BybitSession(["BTC-USDT"])
    frame = (
        b'{"topic":"publicTrade.BTCUSDT","ts":1672304486868,"type":"snapshot","data":['
        b'{"i":"2290000001190010739","T":1672304486865,"p":"16578.50","v":"0.001","S":"Buy","seq":1783284617,"s":"BTCUSDT","BT":false,"RPI":false},'
        b'{"i":"2290000001190010740","T":1672304486866,"p":"16578.00","v":"0.5","S":"Sell","seq":1783284617,"s":"BTCUSDT","BT":false,"RPI":false}]}'
    )
    t1, t2 = spot.on_frame(frame, 9)
    assert t1 == Trade("bybit", "BTC-USDT", "16578.50", "0.001", Side.BUY, "2290000001190010739", 1672304486865 * 1_000_000, 9)
    assert t2.side is Side.SELL and t2.trade_id == "2290000001190010740" and t2.size == "0.5"

    linear = BybitSession(["BTC-USDT-PERP"], category="linear")
    frame = (
        b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":['
        b'{"T":1672304486865,"s":"BTCUSDT","S":"Sell","v":"0.001","p":"16578.50","L":"PlusTick",'
        b'"i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false,"RPI":false,"seq":1783284617}]}'
    )
    (t,) = linear.on_frame(frame, 10)
    assert t.symbol == "BTC-USDT-PERP" and t.side is Side.SELL
    assert t.trade_id == "20f43950-d8dd-5b31-9112-a178eb6023af"


def test_linear_tickers_merge_deltas_into_quotes():
    session = BybitSession(["BTC-USDT"], category="linear")
    snap = (
        b'{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT","tickDirection":"PlusTick",'
        b'"lastPrice":"17216.00","bid1Price":"17215.50","bid1Size":"84.489","ask1Price":"17216.00",'
        b'"ask1Size":"83.020","markPrice":"17217.33"},"cs":24987956059,"ts":1673272861686}'
    )
    (q,) = session.on_frame(snap, 1)
    assert q == Quote("bybit", "BTC-USDT-PERP", "17215.50", "84.489", "17216.00", "83.020", 0, 1673272861686 * 1_000_000, 1)
    delta = b'{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","ask1Price":"17216.50","ask1Size":"1.2"},"cs":24987956060,"ts":1673272861786}'
    (q,) = session.on_frame(delta, 2)
    assert (q.bid, q.bid_size, q.ask, q.ask_size) == ("17215.50", "84.489", "17216.50", "1.2")
    mark_only = b'{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","markPrice":"17218"},"cs":1,"ts":2}'
    assert session.on_frame(mark_only, 3) == []
    assert session.stats.bad_frames == 0


def test_spot_tickers_carry_no_quote():
    session = BybitSession(["BTC-USDT"])
    frame = (
        b'{"topic":"tickers.BTCUSDT","ts":1673853746003,"type":"snapshot","cs":2588407389,"data":{"symbol":"BTCUSDT",'
        b'"lastPrice":"21109.77","highPrice24h":"21426.99","lowPrice24h":"20575","prevPrice24h":"20704.93",'
        b'"volume24h":"6780.866843","turnover24h":"141946527.22907118","price24hPcnt":"0.0196","usdIndexPrice":"21120.2400136"}}'
    )
    assert session.on_frame(frame, 1) == []
    assert session.stats.bad_frames == 0


def test_orderbook_1_gives_quotes_and_is_the_book_at_depth_1(frames):
    top = _book_frame("BTCUSDT", "snapshot", 77, [("75848.74", "0.067669")], [("75848.75", "0.747137")], depth=1, ts=5)
    bbo = BybitSession(["BTC-USDT"])  # spot: orderbook.1 is subscribed by default
    (q,) = bbo.on_frame(top, 1)
    assert q == Quote("bybit", "BTC-USDT", "75848.74", "0.067669", "75848.75", "0.747137", 77, 5_000_000, 1)

    session = BybitSession(["BTC-USDT"], depth=1)
    feed, events, _ = _feed(session)
    assert feed.on_frame(top, 1) == []
    assert feed.on_frame(top, 2) == []  # re-pushed with the same u after 3 s unchanged
    sync = feed.syncs["BTC-USDT"]
    assert sync.state is SyncState.SYNCED and sync.last_id == 77
    assert sync.book.top() == (("75848.74", "0.067669"), ("75848.75", "0.747137"))
    assert sum(isinstance(e, Quote) for e in events) == 2
    # the 50-level topic is not ours at depth 1
    (bad,) = session.on_frame(frames[0], 3)
    assert isinstance(bad, BadFrame) and "unknown topic" in bad.reason


# -- bad input ----------------------------------------------------------------------


def test_bad_frames_are_counted_and_the_session_carries_on(frames):
    session = BybitSession(["BTC-USDT"])
    feed, events, _ = _feed(session)
    feed.on_frame(frames[0], 1)
    snap_raw = _raw(frames[0])
    wrong_u = dict(snap_raw, data=dict(snap_raw["data"], u="2876700"))
    wrong_level = dict(snap_raw, data=dict(snap_raw["data"], b=[["75848.74", 0.06]]))
    trade_bad_side = b'{"topic":"publicTrade.BTCUSDT","ts":1,"type":"snapshot","data":[{"T":1,"S":"Up","v":"1","p":"1","i":"1"}]}'
    bad = [
        b"{not json",
        b"",
        b"[1,2,3]",
        frames[0][: len(frames[0]) // 2],  # truncated
        frames[1][:-1],
        b'{"topic":"kline.1.BTCUSDT","ts":1,"type":"snapshot","data":[]}',  # unknown topic
        b'{"topic":"orderbook.50","ts":1,"type":"delta","data":{}}',
        b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"delta"}',  # no data
        b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"partial","data":{"b":[],"a":[],"u":5}}',
        msgspec.json.encode(wrong_u),
        msgspec.json.encode(wrong_level),
        b'{"topic":"orderbook.50.BTCUSDT","ts":"1","type":"delta","data":{"b":[],"a":[],"u":5}}',
        b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"delta","data":{"b":[["1"]],"a":[],"u":5}}',
        trade_bad_side,
        b'{"topic":"tickers.BTCUSDT","ts":1,"type":"delta","data":{"bid1Price":17215.5}}',
        b'{"topic":"tickers.1","ts":1,"type":"snapshot","data":{}}',  # symbol that can't be split
        b'{"hello":"world"}',
    ]
    for i, payload in enumerate(bad):
        out = feed.on_frame(payload, 10 + i)
        assert out == [], payload
    bad_events = [e for e in events if isinstance(e, BadFrame)]
    assert len(bad_events) == len(bad) == session.stats.bad_frames
    assert all(e.venue == "bybit" for e in bad_events)
    assert sum("unknown topic" in e.reason for e in bad_events) == 2
    # the book was untouched and the real delta still applies
    sync = feed.syncs["BTC-USDT"]
    assert sync.state is SyncState.SYNCED and sync.last_id == 2876700
    assert feed.on_frame(frames[1], 99) == []
    assert sync.last_id == 2876701 and sync.gaps == 0


def test_every_truncation_of_the_real_frames_is_a_bad_frame(frames):
    session = BybitSession(["BTC-USDT"])
    for frame in frames:
        for cut in range(0, len(frame), 7):
            out = session.on_frame(frame[:cut], 1)
            assert len(out) == 1 and isinstance(out[0], BadFrame), (cut, out)
    assert session.stats.bad_frames == sum(len(range(0, len(f), 7)) for f in frames)
    assert isinstance(session.on_frame(frames[0], 2)[0], BookUpdate)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_never_raise(payload):
    session = BybitSession(["BTC-USDT"], category="linear")
    out = session.on_frame(payload, 1)
    assert isinstance(out, list)
    assert all(isinstance(x, BadFrame | VenueError | Quote | Trade | BookUpdate) for x in out)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=4), kids, max_size=4),
    max_leaves=12,
)
_keys = st.sampled_from(["b", "a", "u", "seq", "s", "T", "S", "v", "p", "i", "bid1Price", "ask1Size"])


@settings(max_examples=400, deadline=None)
@given(
    topic=st.sampled_from(
        ["orderbook.50.BTCUSDT", "orderbook.1.BTCUSDT", "publicTrade.BTCUSDT", "tickers.BTCUSDT", "x.y", None]
    ),
    kind=st.sampled_from(["snapshot", "delta", "other", None]),
    data=_json | st.dictionaries(_keys, _json, max_size=6) | st.lists(st.dictionaries(_keys, _json), max_size=3),
    extra=st.dictionaries(st.sampled_from(["success", "ret_msg", "op", "req_id", "ts"]), _json, max_size=3),
)
def test_json_shaped_garbage_never_raises(frames, topic, kind, data, extra):
    """Frames that are valid JSON with the right keys but any values: decoded or counted."""
    session = BybitSession(["BTC-USDT"], bbo=True)
    session.on_frame(frames[0], 1)
    frame = {"topic": topic, "type": kind, "ts": 1, "data": data, **extra}
    before = session.stats.bad_frames
    out = session.on_frame(msgspec.json.encode(frame), 2)
    assert all(isinstance(x, BadFrame | VenueError | Quote | Trade | BookUpdate | Send) for x in out)
    assert session.stats.bad_frames - before == sum(isinstance(x, BadFrame) for x in out)
    # the session keeps working: the real delta still decodes
    (upd,) = session.on_frame(frames[1], 3)
    assert isinstance(upd, BookUpdate) or isinstance(upd, BadFrame) and "regression" in upd.reason


# -- one-pass typed decoding ----------------------------------------------------------


def _same_state(typed: BybitSession, reference: BybitSession) -> None:
    a, b = typed.stats, reference.stats
    assert (a.bad_frames, a.venue_errors, a.unknown, a.by_reason) == (b.bad_frames, b.venue_errors, b.unknown, b.by_reason)
    assert typed.regressions == reference.regressions and typed.pongs == reference.pongs
    assert typed._book_last == reference._book_last and typed._tickers == reference._tickers
    assert (typed.acked, typed.rejected) == (reference.acked, reference.rejected)


@pytest.mark.parametrize(
    ("category", "depth", "bbo"), [("spot", 50, False), ("spot", 50, True), ("linear", 50, False)]
)
def test_typed_union_decodes_every_real_frame_like_the_two_step_reference(frames, category, depth, bbo):
    """The one-pass tagged union is a fast path only: on the real frames it must give exactly
    what the envelope-then-data decode gives, and take none of them to the fallback."""
    typed = BybitSession(["BTC-USDT", "ETH-USDT"], category=category, depth=depth, bbo=bbo)
    reference = BybitSession(["BTC-USDT", "ETH-USDT"], category=category, depth=depth, bbo=bbo)
    fallbacks = count_fallbacks(typed)
    events = events_like_two_step(typed, reference, frames)
    assert fallbacks == [] and events == len(frames)
    _same_state(typed, reference)
    assert typed.stats.bad_frames == 0 and typed.stats.frames == len(frames)


SPOT_TRADES = (
    b'{"topic":"publicTrade.BTCUSDT","ts":1672304486868,"type":"snapshot","data":['
    b'{"i":"2290000001190010739","T":1672304486865,"p":"16578.50","v":"0.001","S":"Buy","seq":1783284617,"s":"BTCUSDT","BT":false,"RPI":false},'
    b'{"i":"2290000001190010740","T":1672304486866,"p":"16578.00","v":"0.5","S":"Sell","seq":1783284617,"s":"BTCUSDT","BT":false,"RPI":false}]}'
)
SPOT_TICKER = (
    b'{"topic":"tickers.BTCUSDT","ts":1673853746003,"type":"snapshot","cs":2588407389,"data":{"symbol":"BTCUSDT",'
    b'"lastPrice":"21109.77","highPrice24h":"21426.99","lowPrice24h":"20575","prevPrice24h":"20704.93",'
    b'"volume24h":"6780.866843","turnover24h":"141946527.22907118","price24hPcnt":"0.0196","usdIndexPrice":"21120.2400136"}}'
)


def _corpus(frames: list[bytes]) -> list[tuple[bytes, bool]]:
    """Frames in every shape a spot session meets, each with whether the union has a type
    for it (True) or it must take the two-step path (False)."""
    snap, delta = frames
    bbo = _book_frame("BTCUSDT", "snapshot", 77, [("75848.74", "0.067669")], [("75848.75", "0.7")], depth=1, ts=5)
    raw = _raw(delta)
    key_order = msgspec.json.encode({"ts": raw["ts"], "type": "delta", "data": raw["data"], "topic": raw["topic"]})
    dup_data = delta[:-1] + b',"data":' + msgspec.json.encode(dict(raw["data"], u=2876702)) + b"}"
    return [
        (snap, True),
        (_retopic(delta, "BTCUSDT", u=2876690), True),  # regression: BadFrame + resubscribe, from the typed path
        (snap, True),
        (delta, True),
        (key_order, True),  # the tag need not come first
        (dup_data, True),  # a repeated key: the last one counts, as in the envelope
        (_book_frame("BTCUSDT", "partial", 5), True),  # bad book type, named by the shared handler
        (SPOT_TRADES, True),
        (SPOT_TICKER, True),
        (bbo, True),
        (b'{"topic":"tickers.BTCUSDT","ts":1,"type":"update","data":{}}', True),  # bad ticker type
        # frames the union has no type for
        (b'{"success":true,"ret_msg":"subscribe","conn_id":"c","req_id":"1","op":"subscribe"}', False),
        (b'{"success":true,"ret_msg":"pong","conn_id":"0970e817","op":"ping"}', False),
        (b'{"req_id":"","op":"pong","args":["1675418560633"],"conn_id":"x"}', False),
        (b'{"success":false,"ret_msg":"Invalid symbol :[orderbook.50.XXXUSDT]","conn_id":"c","op":"subscribe"}', False),
        (_retopic(snap, "SOLUSDT"), False),  # a symbol the session was not built for
        (b'{"topic":"kline.1.BTCUSDT","ts":1,"type":"snapshot","data":[]}', False),
        (b'{"topic":"orderbook.200.BTCUSDT","ts":1,"type":"snapshot","data":{"b":[],"a":[],"u":1}}', False),
        (b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"delta"}', False),  # no data
        (b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"delta","data":null}', False),
        (b'{"topic":"orderbook.50.BTCUSDT","ts":"1","type":"delta","data":{"b":[],"a":[],"u":5}}', False),
        (b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"delta","data":{"b":[["1"]],"a":[],"u":5}}', False),
        (b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"delta","data":{"b":[],"a":[],"u":"5"}}', False),
        (b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"delta","req_id":[1],"data":{"b":[],"a":[],"u":5}}', False),
        (b'{"topic":"orderbook.50.BTCUSDT","topic":"tickers.BTCUSDT","ts":1,"data":{}}', False),
        (b'{"topic":"publicTrade.BTCUSDT","ts":1,"type":"snapshot","data":[{"T":1,"S":"Up","v":"1","p":"1","i":"1"}]}', False),
        (b'{"topic":"tickers.BTCUSDT","ts":1,"type":"delta","data":{"bid1Price":17215.5}}', False),
        (b'{"topic":null,"data":{}}', False),
        (b'{"hello":"world"}', False),
        (b"[1,2,3]", False),
        (b"", False),
        (snap[: len(snap) // 2], False),
        (delta[:-1], False),
    ]


def test_every_frame_the_union_has_no_type_for_and_only_those_take_the_two_step_path(frames):
    typed = BybitSession(["BTC-USDT"])
    reference = BybitSession(["BTC-USDT"])
    fallbacks = count_fallbacks(typed)
    for i, (frame, has_type) in enumerate(_corpus(frames)):
        before = len(fallbacks)
        assert typed.on_frame(frame, i) == reference._two_step(frame, i), frame[:120]
        assert (len(fallbacks) == before) is has_type, frame[:120]
        _same_state(typed, reference)
    assert len(fallbacks) == sum(not t for _, t in _corpus(frames))
    assert typed.stats.bad_frames > 15 and typed.regressions == 1 and typed.pongs == 2


def test_a_malformed_push_gets_the_reason_of_the_two_step_path(frames):
    """The reason names the field inside ``data`` ($.u), as the payload decoder sees it."""
    session = BybitSession(["BTC-USDT"])
    (bad,) = session.on_frame(b'{"topic":"orderbook.50.BTCUSDT","ts":1,"type":"delta","data":{"b":[],"a":[],"u":"5"}}', 1)
    assert isinstance(bad, BadFrame) and bad.reason == "decode: Expected `int`, got `str` - at `$.u`"
    (bad,) = session.on_frame(b'{"topic":"publicTrade.BTCUSDT","ts":1,"data":[{"T":1,"S":"Up","v":"1","p":"1","i":"1"}]}', 1)
    assert isinstance(bad, BadFrame) and "$[0].S" in bad.reason
    (bad,) = session.on_frame(b'{"topic":"tickers.BTCUSDT","ts":1,"type":"snapshot"}', 1)
    assert isinstance(bad, BadFrame) and bad.reason == "no data: tickers.BTCUSDT"
    assert session.stats.bad_frames == 3
    (snap,) = session.on_frame(frames[0], 2)
    assert isinstance(snap, BookUpdate) and snap.is_snapshot


def test_typed_topics_follow_the_session_options():
    def routes(session: BybitSession) -> dict[str, str]:
        return {cls.__struct_config__.tag: symbol for cls, (_, symbol) in session._typed.items()}

    assert routes(BybitSession(["BTC-USDT"], depth=1)) == dict.fromkeys(
        ["orderbook.1.BTCUSDT", "publicTrade.BTCUSDT", "tickers.BTCUSDT"], "BTC-USDT"
    )
    assert routes(BybitSession(["BTC-USDT", "BTC-USDT"], depth=200)) == dict.fromkeys(
        ["orderbook.200.BTCUSDT", "orderbook.1.BTCUSDT", "publicTrade.BTCUSDT", "tickers.BTCUSDT"], "BTC-USDT"
    )
    assert set(routes(BybitSession(["ETH-USDT"], category="linear")).values()) == {"ETH-USDT-PERP"}


def test_a_session_with_no_symbols_still_reads_every_frame():
    """No symbols, no typed topics: every frame takes the two-step path, which decodes any symbol."""
    session = BybitSession([])
    fallbacks = count_fallbacks(session)
    assert session.on_frame(b'{"success":true,"ret_msg":"pong","conn_id":"c","op":"ping"}', 1) == []
    (bad,) = session.on_frame(b'{"topic":"","ts":1,"data":{}}', 1)
    assert isinstance(bad, BadFrame) and "unknown topic" in bad.reason
    t1, t2 = session.on_frame(SPOT_TRADES, 1)
    assert isinstance(t1, Trade) and t1.symbol == t2.symbol == "BTC-USDT"
    assert session.pongs == 1 and len(fallbacks) == 3


_level = st.tuples(st.sampled_from(["1", "2.5", "3"]), st.sampled_from(["0", "1"])).map(list)
_book_data = st.fixed_dictionaries(
    {"b": st.lists(_level, max_size=2), "a": st.lists(_level, max_size=2), "u": st.integers(0, 4)},
    optional={"seq": st.integers(0, 4), "s": st.just("BTCUSDT")},
)
_trade_data = st.lists(
    st.fixed_dictionaries({"T": st.integers(0, 3), "S": st.sampled_from(["Buy", "Sell"]), "v": st.just("1"),
                           "p": st.just("2"), "i": st.just("3")}),
    max_size=2,
)  # fmt: skip
_ticker_data = st.dictionaries(
    st.sampled_from(["bid1Price", "bid1Size", "ask1Price", "ask1Size", "lastPrice"]), st.sampled_from(["1", "2"]), max_size=5
)
_data_for = {"orderbook.50.BTCUSDT": _book_data, "orderbook.1.BTCUSDT": _book_data,
             "publicTrade.BTCUSDT": _trade_data, "tickers.BTCUSDT": _ticker_data}  # fmt: skip


@st.composite
def _push(draw: st.DrawFn) -> bytes:
    """A push on one of the session's topics: mostly well formed, each part sometimes not."""
    topic = draw(st.sampled_from(sorted(_data_for)))
    frame = {"topic": topic, "type": draw(st.sampled_from(["snapshot", "delta", "delta", "x", None]))}
    frame["ts"] = draw(st.sampled_from([0, 1, 2, 3, 4, "1"]))
    frame["data"] = draw(_data_for[topic] if draw(st.integers(0, 4)) else st.one_of(*_data_for.values(), _json))
    for key in draw(st.sets(st.sampled_from(["success", "op", "req_id"]), max_size=2)):
        frame[key] = draw(st.sampled_from([None, True, "1", 1, [1]]))
    return msgspec.json.encode(frame)


@settings(max_examples=300, deadline=None)
@given(st.lists(_push(), min_size=1, max_size=8))
def test_typed_path_equals_the_reference_on_any_sequence_of_pushes(pushes):
    """Whatever the values, a session on the typed path ends every frame in the same state with
    the same outputs as one fed only through the reference path (the book and ticker state
    carries over between frames, so sequences, not single frames)."""
    typed = BybitSession(["BTC-USDT"], bbo=True)
    reference = BybitSession(["BTC-USDT"], bbo=True)
    for i, frame in enumerate(pushes):
        assert typed.on_frame(frame, i) == reference._two_step(frame, i), frame
        _same_state(typed, reference)
