"""GateioSession fed bytes: spot.obu fixture, resync of one pair, acks, heartbeat, bad frames."""

from __future__ import annotations

import json
from decimal import Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbwire.feed import VenueFeed
from arbwire.model import BadFrame, BookUpdate, Quote, Side, SyncState, Trade, VenueError
from arbwire.symbols import SymbolError
from arbwire.sync import BookSync
from arbwire.venues.base import FetchSnapshot, Reconnect, Send
from arbwire.venues.gateio import SPOT, GateioSession, UnderscoreSymbols, ms_text_to_ns
from helpers.sessions import count_fallbacks

T0 = 1_757_377_580_000_000_000
FIXTURE = "fixtures/gate/gct_spot_obu50_result_full_then_increment.jsonl"


def _fixture(real_data) -> tuple[dict, dict]:
    lines = (real_data / FIXTURE).read_text().splitlines()
    full, inc = (json.loads(line) for line in lines if line.strip())
    return full, inc


def _obu(result: dict, *, real_shape: bool = True) -> bytes:
    """Real pushes: channel, result, time_ms, event (no time). The docs' form has no event."""
    frame: dict = {"channel": "spot.obu", "result": result, "time_ms": result.get("t", 0) + 100}
    if real_shape:
        frame["event"] = "update"
    return json.dumps(frame).encode()


def _full(stream: str, u: int, bids, asks) -> bytes:
    return _obu({"t": 1, "full": True, "s": stream, "u": u, "b": bids, "a": asks})


def _inc(stream: str, first: int, last: int, bids=(), asks=()) -> bytes:
    return _obu({"t": 2, "s": stream, "U": first, "u": last, "b": list(bids), "a": list(asks)})


def _model(levels: dict[Decimal, str], updates) -> None:
    """An independent book: Decimal price -> size text; "0" deletes."""
    for price, size in updates:
        if Decimal(size) == 0:
            levels.pop(Decimal(price), None)
        else:
            levels[Decimal(price)] = size


def _book_as_decimals(side) -> dict[Decimal, str]:
    return {Decimal(price): size for price, size in side.text_levels(len(side))}


def _feed(session: GateioSession):
    events: list = []
    applied: list[BookUpdate] = []

    def on_book(sync: BookSync, upd: BookUpdate) -> None:
        assert not sync.book.is_crossed()
        applied.append(upd)

    return VenueFeed(session, on_book=on_book, on_event=events.append), events, applied


def _sends(actions) -> list[dict]:
    assert all(isinstance(a, Send) for a in actions), actions
    return [json.loads(a.text) for a in actions]


# -- spot.obu ----------------------------------------------------------------------------
@pytest.mark.parametrize("real_shape", [True, False], ids=["real-envelope", "docs-envelope"])
def test_obu_fixture_full_then_increment_applies_exactly(real_data, real_shape):
    full, inc = _fixture(real_data)
    assert full["full"] is True and inc["U"] == full["u"] + 1
    session = GateioSession(["BTC-USDT"])
    feed, events, applied = _feed(session)
    assert feed.on_frame(_obu(full, real_shape=real_shape), T0) == []
    sync = feed.syncs["BTC-USDT"]
    assert sync.state is SyncState.SYNCED and sync.last_id == full["u"]
    assert feed.on_frame(_obu(inc, real_shape=real_shape), T0 + 1) == []
    assert sync.state is SyncState.SYNCED and sync.last_id == inc["u"] == 27053258987
    assert sync.applied == 1 and sync.gaps == 0
    bids: dict[Decimal, str] = {}
    asks: dict[Decimal, str] = {}
    _model(bids, full["b"])
    _model(asks, full["a"])
    _model(bids, inc["b"])
    _model(asks, inc["a"])
    assert _book_as_decimals(sync.book.bids) == bids
    assert _book_as_decimals(sync.book.asks) == asks
    assert len(bids) == 50 and len(asks) == 50
    assert sync.book.top() == (("111666", "0.146841"), ("111666.1", "0.791633"))
    assert [u.is_snapshot for u in applied] == [True, False]
    assert applied[1].venue_ts_ns == inc["t"] * 1_000_000
    assert session.stats.bad_frames == 0 and not [e for e in events if isinstance(e, BadFrame)]


def test_obu_skipped_sequence_resubscribes_that_pair_only(real_data):
    full, inc = _fixture(real_data)
    session = GateioSession(["BTC-USDT", "ETH-USDT"])
    session.on_open(T0)
    feed, _, _ = _feed(session)
    feed.on_frame(_obu(full), T0)
    feed.on_frame(_full("ob.ETH_USDT.50", 500, [["4300.1", "2"]], [["4300.2", "3"]]), T0)
    btc, eth = feed.syncs["BTC-USDT"], feed.syncs["ETH-USDT"]
    assert btc.synced and eth.synced

    # BTC skips one id: U should be 27053258982
    actions = feed.on_frame(
        _inc("ob.BTC_USDT.50", full["u"] + 2, full["u"] + 3, [["1", "1"]]), T0 + 5 * 10**9
    )
    sent = _sends(actions)
    assert [(m["channel"], m["event"], m["payload"]) for m in sent] == [
        ("spot.obu", "unsubscribe", ["ob.BTC_USDT.50"]),
        ("spot.obu", "subscribe", ["ob.BTC_USDT.50"]),
    ]
    assert all(m["time"] == (T0 + 5 * 10**9) // 10**9 for m in sent)
    assert btc.state is SyncState.RESYNCING and btc.gaps == 1 and not btc.book
    assert session.resubscribes == 1

    # ETH is untouched and keeps applying
    assert (
        feed.on_frame(_inc("ob.ETH_USDT.50", 501, 502, asks=[["4300.2", "0"], ["4301", "1"]]), T0)
        == []
    )
    assert eth.synced and eth.last_id == 502 and eth.book.top()[1] == ("4301", "1")

    # more BTC increments while waiting: no second resubscribe, book stays unusable
    assert feed.on_frame(_inc("ob.BTC_USDT.50", full["u"] + 4, full["u"] + 4), T0) == []
    assert btc.state is SyncState.RESYNCING and not btc.book

    # the new full push restores BTC; buffered older increments are dropped as stale
    feed.on_frame(_full("ob.BTC_USDT.50", full["u"] + 10, [["111000", "1"]], [["111001", "1"]]), T0)
    assert btc.synced and btc.last_id == full["u"] + 10 and btc.gaps == 1
    assert btc.book.top() == (("111000", "1"), ("111001", "1"))
    assert (
        feed.on_frame(_inc("ob.BTC_USDT.50", full["u"] + 11, full["u"] + 11, [["111000", "2"]]), T0)
        == []
    )
    assert btc.synced and btc.book.top()[0] == ("111000", "2")
    assert eth.gaps == 0 and eth.resyncs == 0


def test_obu_duplicate_is_dropped_and_overlap_is_a_gap():
    session = GateioSession(["BTC-USDT"])
    feed, _, _ = _feed(session)
    feed.on_frame(_full("ob.BTC_USDT.50", 100, [["10", "1"]], [["11", "1"]]), T0)
    feed.on_frame(_inc("ob.BTC_USDT.50", 101, 105, [["10", "2"]]), T0)
    sync = feed.syncs["BTC-USDT"]
    assert feed.on_frame(_inc("ob.BTC_USDT.50", 103, 105, [["10", "9"]]), T0) == []  # duplicate
    assert sync.synced and sync.book.top()[0] == ("10", "2")
    actions = feed.on_frame(_inc("ob.BTC_USDT.50", 104, 107), T0)  # overlaps: not U == 106
    assert [m["event"] for m in _sends(actions)] == ["unsubscribe", "subscribe"]
    assert sync.state is SyncState.RESYNCING


def test_obu_increments_before_the_full_push_wait_for_it():
    session = GateioSession(["BTC-USDT"])
    feed, _, _ = _feed(session)
    assert feed.on_frame(_inc("ob.BTC_USDT.50", 95, 99), T0) == []  # no REST, no resubscribe
    sync = feed.syncs["BTC-USDT"]
    assert sync.state is SyncState.BUFFERING
    assert feed.on_frame(_inc("ob.BTC_USDT.50", 101, 102, [["10", "5"]]), T0) == []
    assert not sync.book
    feed.on_frame(_full("ob.BTC_USDT.50", 100, [["10", "1"]], [["11", "1"]]), T0)
    assert sync.synced and sync.last_id == 102 and sync.book.top()[0] == ("10", "5")
    assert sync.gaps == 0 and sync.applied == 1  # 95..99 dropped as older than the snapshot


def test_obu_extra_full_push_replaces_the_book():
    session = GateioSession(["BTC-USDT"])
    feed, _, _ = _feed(session)
    feed.on_frame(_full("ob.BTC_USDT.50", 100, [["10", "1"], ["9", "1"]], [["11", "1"]]), T0)
    feed.on_frame(_full("ob.BTC_USDT.50", 200, [["8", "1"]], [["12", "1"]]), T0)
    sync = feed.syncs["BTC-USDT"]
    assert sync.synced and sync.last_id == 200 and len(sync.book.bids) == 1
    assert sync.book.top() == (("8", "1"), ("12", "1"))


# -- spot.order_book_update ------------------------------------------------------------------
def _obu2(pair: str, first: int, last: int, bids=(), asks=(), full: bool = False) -> bytes:
    result: dict = {
        "t": 1606294781123,
        "e": "depthUpdate",
        "E": 1606294781,
        "s": pair,
        "U": first,
        "u": last,
    }
    if full:
        result |= {"full": True, "l": "100"}
    result |= {"b": list(bids), "a": list(asks)}
    return json.dumps(
        {"time": 1606294781, "time_ms": 1606294781236, "channel": "spot.order_book_update",
         "event": "update", "result": result}
    ).encode()  # fmt: skip


def test_order_book_update_syncs_against_rest_snapshot():
    session = GateioSession(["BTC-USDT"], book_channel="order_book_update")
    feed, _, _ = _feed(session)
    (fetch,) = feed.on_frame(_obu2("BTC_USDT", 95, 99, [["10", "7"]]), T0)
    assert fetch == FetchSnapshot(
        "BTC-USDT",
        "https://api.gateio.ws/api/v4/spot/order_book?currency_pair=BTC_USDT&limit=100&with_id=true",
    )
    assert (
        feed.on_frame(_obu2("BTC_USDT", 100, 103, [["10", "3"]]), T0) == []
    )  # buffered, no 2nd fetch
    body = b'{"id":101,"current":1623898993123,"update":1623898993121,"asks":[["11","1"]],"bids":[["10","1"]]}'
    assert feed.on_snapshot("BTC-USDT", body, T0) == []
    sync = feed.syncs["BTC-USDT"]
    assert sync.synced and sync.last_id == 103 and sync.book.top()[0] == ("10", "3")
    # overlap U <= local+1 is applied (amounts are absolute); U > local+1 is a gap -> refetch
    assert feed.on_frame(_obu2("BTC_USDT", 103, 104, [["10", "4"]]), T0) == []
    assert sync.last_id == 104 and sync.book.top()[0] == ("10", "4")
    actions = feed.on_frame(_obu2("BTC_USDT", 106, 106), T0)
    assert actions == [fetch] and sync.state is SyncState.RESYNCING and sync.gaps == 1


def test_order_book_update_full_push_is_a_snapshot():
    session = GateioSession(["BTC-USDT", "ETH-USDT"], book_channel="order_book_update")
    feed, _, _ = _feed(session)
    assert (
        feed.on_frame(
            _obu2(
                "BTC_USDT", 48776301, 48776306, [["19137.74", "1"]], [["19137.75", "2"]], full=True
            ),
            T0,
        )
        == []
    )
    sync = feed.syncs["BTC-USDT"]
    assert sync.synced and sync.last_id == 48776306  # no REST needed
    assert feed.on_frame(_obu2("BTC_USDT", 48776307, 48776307, [["19137.74", "0"]]), T0) == []
    assert sync.synced and sync.book.top() == (None, ("19137.75", "2"))
    assert not feed.syncs["ETH-USDT"].synced


def test_snapshot_request_and_parse():
    session = GateioSession(["BTC-USDT"], book_channel="order_book_update", snapshot_limit=50)
    (fetch,) = session.snapshot_request("BTC-USDT")
    assert fetch.url.endswith(
        "/api/v4/spot/order_book?currency_pair=BTC_USDT&limit=50&with_id=true"
    )
    snap = session.parse_snapshot(
        "BTC-USDT", b'{"id":7,"current":5,"update":4,"asks":[],"bids":[["1","2"]]}', 9
    )
    assert (snap.is_snapshot, snap.last_id, snap.bids, snap.asks) == (True, 7, [("1", "2")], [])
    assert snap.venue_ts_ns == 4_000_000 and snap.recv_ns == 9
    for body in (
        b'{"label":"INVALID_CURRENCY_PAIR","message":"x"}',
        b'{"id":1,"bids":[[1,2]],"asks":[]}',
        b"{",
    ):
        with pytest.raises(ValueError):
            session.parse_snapshot("BTC-USDT", body, 0)


# -- subscriptions, acks, errors ------------------------------------------------------------
def test_on_open_subscribes_with_time_and_one_request_per_pair():
    session = GateioSession(["BTC-USDT", "ETH-USDT"])
    assert session.name == "gateio" and session.endpoints == SPOT
    assert session.url() == "wss://api.gateio.ws/ws/v4/"
    sent = _sends(session.on_open(T0))
    assert all(m["time"] == T0 // 10**9 and isinstance(m["time"], int) for m in sent)
    assert len({m["id"] for m in sent}) == len(sent)
    assert [(m["channel"], m["event"], m["payload"]) for m in sent] == [
        ("spot.obu", "subscribe", ["ob.BTC_USDT.50"]),
        ("spot.obu", "subscribe", ["ob.ETH_USDT.50"]),
        ("spot.book_ticker", "subscribe", ["BTC_USDT"]),
        ("spot.book_ticker", "subscribe", ["ETH_USDT"]),
        ("spot.trades", "subscribe", ["BTC_USDT"]),
        ("spot.trades", "subscribe", ["ETH_USDT"]),
    ]
    session = GateioSession(
        ["BTC-USDT", "ETH-USDT"], book_channel="order_book_update", batch_pairs=True, trades=False
    )
    sent = _sends(session.on_open(T0))
    assert [(m["channel"], m["payload"]) for m in sent] == [
        ("spot.order_book_update", ["BTC_USDT", "100ms"]),
        ("spot.order_book_update", ["ETH_USDT", "100ms"]),
        ("spot.book_ticker", ["BTC_USDT", "ETH_USDT"]),
    ]
    assert [m["payload"] for m in _sends(GateioSession(["A-B"], obu_depth=400).on_open(T0))][0] == [
        "ob.A_B.400"
    ]
    with pytest.raises(ValueError):
        GateioSession(["A-B"], obu_depth=100)


def test_success_acks_are_consumed():
    session = GateioSession(["BTC-USDT"])
    session.on_open(T0)
    for frame in (
        b'{"time":1611541000,"time_ms":1611541000001,"channel":"spot.trades","event":"subscribe","error":null,"result":{"status":"success"}}',
        b'{"time":1747054611,"time_ms":1747054611614,"conn_id":"d7de96c024f2a5b2","trace_id":"e6fd","channel":"spot.obu","event":"subscribe","payload":["ob.BTC_USDT.50"],"result":{"status":"success"}}',
        b'{"time":1619093532,"channel":"spot.candlesticks","event":"subscribe","result":{"status":"success"}}',
        b'{"time":1,"channel":"spot.obu","event":"unsubscribe","error":null,"result":{"status":"success"},"id":1}',
    ):
        assert session.on_frame(frame, T0) == []
    assert session.stats.bad_frames == 0 and session.stats.venue_errors == 0


@pytest.mark.parametrize(
    "frame, symbol, code",
    [
        (  # current form, payload echoed
            b'{"time":1790134507,"time_ms":1790134507715,"conn_id":"8b9b24f2d19b4d6b","trace_id":"6e4f",'
            b'"channel":"spot.order_book_update","event":"subscribe","payload":["NOPE_USD","100ms"],'
            b'"error":{"code":2,"message":"unknown currency pair: NOPE_USD"},"result":{"status":"fail"}}',
            "NOPE-USD",
            "2",
        ),
        (  # older form: no colon, result null
            b'{"time":1611541000,"channel":"spot.trades","event":"subscribe",'
            b'"error":{"code":2,"message":"unknown currency pair GIBBERISH_USD"},"result":null}',
            "GIBBERISH-USD",
            "2",
        ),
        (  # pair only in the echoed obu payload
            b'{"time":1,"channel":"spot.obu","event":"subscribe","payload":["ob.NOPE_USD.50"],'
            b'"error":{"code":2,"message":"Invalid argument provided"},"result":{"status":"fail"}}',
            "NOPE-USD",
            "2",
        ),
    ],
)
def test_unknown_pair_error_names_the_pair_and_others_carry_on(frame, symbol, code):
    session = GateioSession(["BTC-USDT", "NOPE-USD"])
    feed, events, _ = _feed(session)
    feed.session.on_open(T0)
    feed.on_frame(_full("ob.BTC_USDT.50", 100, [["10", "1"]], [["11", "1"]]), T0)
    assert feed.on_frame(frame, T0 + 1) == []
    (err,) = [e for e in events if isinstance(e, VenueError)]
    assert (err.venue, err.symbol, err.code, err.recv_ns) == ("gateio", symbol, code, T0 + 1)
    assert session.stats.venue_errors == 1 and session.stats.bad_frames == 0
    assert feed.on_frame(_inc("ob.BTC_USDT.50", 101, 101, [["10", "2"]]), T0) == []
    assert feed.syncs["BTC-USDT"].synced and feed.syncs["BTC-USDT"].book.top()[0] == ("10", "2")
    assert not feed.syncs["NOPE-USD"].synced


def test_error_without_pair_or_payload_is_traced_through_the_request_id():
    session = GateioSession(["BTC-USDT", "NOPE-USD"])
    sent = _sends(session.on_open(T0))
    req = next(m for m in sent if m["payload"] == ["ob.NOPE_USD.50"])
    frame = json.dumps(
        {"time": 1, "id": req["id"], "channel": "spot.obu", "event": "subscribe",
         "error": {"code": 2, "message": "Invalid argument provided"}, "result": {"status": "fail"}}
    ).encode()  # fmt: skip
    (err,) = session.on_frame(frame, T0)
    assert isinstance(err, VenueError) and err.symbol == "NOPE-USD"
    assert err.message == "Invalid argument provided"


def test_duplicate_subscription_error_names_the_stream_pair():
    session = GateioSession(["BTC-USDT"])
    frame = (
        b'{"time":1,"channel":"spot.obu","event":"subscribe","payload":["ob.BTC_USDT.400"],'
        b'"error":{"code":2,"message":"Alert sub ob.BTC_USDT.400"},"result":{"status":"fail"}}'
    )
    (err,) = session.on_frame(frame, T0)
    assert isinstance(err, VenueError) and err.symbol == "BTC-USDT" and "Alert sub" in err.message


# -- heartbeat and upgrade ----------------------------------------------------------------
def test_ping_every_interval_pong_consumed_and_timeout_reconnects():
    session = GateioSession(["BTC-USDT"], ping_interval_s=5, pong_timeout_s=12)
    assert session.on_timer(T0, 0) == []  # link not open yet
    session.on_open(T0)
    s = 10**9
    assert session.on_timer(T0 + 4 * s, T0) == []
    (ping,) = _sends(session.on_timer(T0 + 5 * s, T0))
    assert ping == {"time": (T0 + 5 * s) // s, "channel": "spot.ping"}
    pong = b'{"time":1757377585,"channel":"spot.pong","event":"","error":null,"result":null}'
    assert session.on_frame(pong, T0 + 5 * s + 30_000_000) == []
    assert session.pongs == 1 and session.last_pong_ns == T0 + 5 * s + 30_000_000
    assert session.last_rtt_ns == 30_000_000
    assert session.stats.bad_frames == 0 and session.stats.venue_errors == 0
    # pings keep going; none answered from t=10 s, so at t=22 s the link is dropped, once
    assert len(session.on_timer(T0 + 10 * s, T0)) == 1
    assert len(session.on_timer(T0 + 15 * s, T0)) == 1
    assert len(session.on_timer(T0 + 20 * s, T0)) == 1
    assert session.on_timer(T0 + 21 * s, T0) == []
    (rc,) = session.on_timer(T0 + 22 * s, T0)
    assert isinstance(rc, Reconnect) and "spot.pong" in rc.reason
    assert session.on_timer(T0 + 23 * s, T0) == []
    assert session.pings_sent == 4
    # a new link starts over
    session.on_open(T0 + 30 * s)
    assert session.on_timer(T0 + 31 * s, T0) == []
    assert len(session.on_timer(T0 + 35 * s, T0)) == 1


def test_pings_can_be_disabled():
    session = GateioSession(["BTC-USDT"], ping_interval_s=None)
    session.on_open(T0)
    assert session.on_timer(T0 + 10**12, T0) == []


def test_upgrade_event_requests_reconnect():
    session = GateioSession(["BTC-USDT"])
    (rc,) = session.on_frame(b'{"time":1,"time_ms":1000,"channel":"","event":"upgrade"}', T0)
    assert isinstance(rc, Reconnect) and "upgrade" in rc.reason
    (rc,) = session.on_frame(b'{"event":"upgrade"}', T0)
    assert isinstance(rc, Reconnect)


# -- quotes and trades ----------------------------------------------------------------------
def test_book_ticker_is_a_quote():
    session = GateioSession(["BTC-USDT"])
    frame = (
        b'{"time":1606293275,"time_ms":1606293275723,"channel":"spot.book_ticker","event":"update",'
        b'"result":{"t":1606293275123,"u":48733182,"s":"BTC_USDT","b":"19177.79","B":"0.0003341504",'
        b'"a":"19179.38","A":"0.09"}}'
    )
    (q,) = session.on_frame(frame, T0)
    assert q == Quote("gateio", "BTC-USDT", "19177.79", "0.0003341504", "19179.38", "0.09", 48733182,
                      1606293275123_000_000, T0)  # fmt: skip


def test_trade_time_is_exact_and_side_is_taker():
    session = GateioSession(["GT-USDT"])
    frame = (
        b'{"time":1606292218,"time_ms":1606292218231,"channel":"spot.trades","event":"update",'
        b'"result":{"id":309143071,"id_market":5736713,"create_time":1606292218,'
        b'"create_time_ms":"1606292218213.4578","side":"sell","currency_pair":"GT_USDT",'
        b'"amount":"16.4700000000","price":"0.4705000000","range":"2390902-2390902"}}'
    )
    (t,) = session.on_frame(frame, T0)
    assert t == Trade("gateio", "GT-USDT", "0.4705000000", "16.4700000000", Side.SELL, "309143071",
                      1606292218213457800, T0)  # fmt: skip
    (t,) = session.on_frame(frame.replace(b'"sell"', b'"buy"'), T0)
    assert t.side is Side.BUY


def test_ms_text_to_ns():
    assert ms_text_to_ns("1606292218213.4578") == 1606292218213457800
    assert ms_text_to_ns("1606292218213") == 1606292218213000000
    assert ms_text_to_ns("1.1234567") == 1_123_456  # beyond the ns is truncated
    assert ms_text_to_ns(5) == 5_000_000
    for bad in ("", "1e3", "-5", "1.", "1.2.3", "12a", " 1", "\u00b2"):
        with pytest.raises(ValueError):
            ms_text_to_ns(bad)


def test_symbol_mapping():
    names = UnderscoreSymbols(["BTC-USDT", "QTUM3S-USDT"])
    assert names.to_venue("BTC-USDT") == "BTC_USDT" and names.to_venue("eth-btc") == "ETH_BTC"
    assert names.to_common("BTC_USDT") == "BTC-USDT" and names.to_common("NEO_BTC") == "NEO-BTC"
    assert names.to_common("QTUM3S_USDT") == "QTUM3S-USDT"
    for bad in ("BTCUSDT", "_USDT", "BTC_", "A_B_C"):
        with pytest.raises(SymbolError):
            names.to_common(bad)
    with pytest.raises(SymbolError):
        names.to_venue("BTCUSDT")


# -- bad frames ---------------------------------------------------------------------------
GOOD = _inc("ob.BTC_USDT.50", 101, 101, [["10", "2"]])

BAD_FRAMES = {
    "malformed json": b'{"channel":"spot.obu","result":{',
    "not json": b"hello",
    "empty": b"",
    "not an object": b'["spot.obu"]',
    "unknown channel": b'{"time":1,"channel":"spot.nonsense","event":"update","result":{"x":1}}',
    "no channel": b'{"time":1,"result":{"x":1}}',
    "no result": b'{"channel":"spot.obu","event":"update"}',
    "null result": b'{"channel":"spot.obu","event":"update","result":null}',
    "U as text": b'{"channel":"spot.obu","result":{"s":"ob.BTC_USDT.50","U":"101","u":101,"b":[],"a":[]}}',
    "price as number": b'{"channel":"spot.obu","result":{"s":"ob.BTC_USDT.50","U":101,"u":101,"b":[[10.5,"1"]],"a":[]}}',
    "level of three": b'{"channel":"spot.obu","result":{"s":"ob.BTC_USDT.50","U":101,"u":101,"b":[["1","2","3"]],"a":[]}}',
    "result is a list": b'{"channel":"spot.obu","result":[1,2]}',
    "s is a number": b'{"channel":"spot.obu","result":{"s":5,"u":101,"full":true,"b":[],"a":[]}}',
    "no s": b'{"channel":"spot.obu","result":{"u":101,"full":true,"b":[],"a":[]}}',
    "increment without U": b'{"channel":"spot.obu","result":{"s":"ob.BTC_USDT.50","u":101,"b":[],"a":[]}}',
    "bad stream name": b'{"channel":"spot.obu","result":{"s":"BTC_USDT","u":101,"full":true,"b":[],"a":[]}}',
    "bad pair": b'{"channel":"spot.obu","result":{"s":"ob.BTCUSDT.50","u":101,"full":true,"b":[],"a":[]}}',
    "channel is a number": b'{"channel":7,"result":{}}',
    "error is text": b'{"channel":"spot.obu","event":"subscribe","error":"boom"}',
    "ticker missing ask": b'{"channel":"spot.book_ticker","result":{"s":"BTC_USDT","b":"1","B":"1","A":"1"}}',
    "trade side": b'{"channel":"spot.trades","result":{"id":1,"currency_pair":"BTC_USDT","side":"hold","amount":"1","price":"1","create_time_ms":"1"}}',
    "trade time": b'{"channel":"spot.trades","result":{"id":1,"currency_pair":"BTC_USDT","side":"buy","amount":"1","price":"1","create_time_ms":"soon"}}',
    "trade id as text": b'{"channel":"spot.trades","result":{"id":"x","currency_pair":"BTC_USDT","side":"buy","amount":"1","price":"1","create_time_ms":"1"}}',
}


def _synced_feed():
    session = GateioSession(["BTC-USDT"])
    feed, events, _ = _feed(session)
    feed.on_frame(_full("ob.BTC_USDT.50", 100, [["10", "1"]], [["11", "1"]]), T0)
    assert feed.syncs["BTC-USDT"].synced
    return session, feed, events


@pytest.mark.parametrize("payload", list(BAD_FRAMES.values()), ids=list(BAD_FRAMES))
def test_bad_frame_is_counted_and_session_keeps_working(payload):
    session, feed, events = _synced_feed()
    assert feed.on_frame(payload, T0 + 7) == []
    bad = [e for e in events if isinstance(e, BadFrame)]
    assert len(bad) == 1 and bad[0].venue == "gateio" and bad[0].recv_ns == T0 + 7
    assert session.stats.bad_frames == 1 and session.stats.venue_errors == 0
    sync = feed.syncs["BTC-USDT"]
    assert sync.synced and sync.last_id == 100  # the bad frame touched nothing
    assert feed.on_frame(GOOD, T0 + 8) == []
    assert sync.synced and sync.last_id == 101 and sync.book.top()[0] == ("10", "2")
    assert session.stats.frames == 3


def test_other_gate_channels_are_ignored_not_bad():
    session = GateioSession(["BTC-USDT"])
    frames = [
        b'{"time":1,"channel":"spot.tickers","event":"update","result":{"currency_pair":"BTC_USDT","last":"1"}}',
        b'{"time":1,"channel":"spot.candlesticks","event":"update","result":{"t":"1","n":"1m_BTC_USDT"}}',
        # the book channel this session did not subscribe to
        b'{"channel":"spot.order_book_update","event":"update","result":{"s":"BTC_USDT","U":1,"u":1,"b":[],"a":[]}}',
    ]
    for frame in frames:
        assert session.on_frame(frame, T0) == []
    assert session.stats.unknown == 3 and session.stats.bad_frames == 0


def test_every_truncation_of_real_frames_is_one_bad_frame(real_data):
    full, inc = _fixture(real_data)
    frames = [_obu(full), _obu(inc), BAD_FRAMES["unknown channel"][:-1]]
    frames.append(
        b'{"time":1606292218,"channel":"spot.trades","event":"update","result":{"id":1,"create_time_ms":'
        b'"1606292218213.4578","side":"sell","currency_pair":"GT_USDT","amount":"16.47","price":"0.4705"}}'
    )
    session = GateioSession(["BTC-USDT"])
    n = 0
    for frame in frames:
        for cut in range(0, len(frame) - 1, 7):
            out = session.on_frame(frame[:cut], T0)
            assert len(out) == 1 and isinstance(out[0], BadFrame), frame[:cut]
            n += 1
    assert session.stats.bad_frames == n > 400
    (snap,) = session.on_frame(_obu(full), T0)
    assert isinstance(snap, BookUpdate) and snap.is_snapshot


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_arbitrary_bytes_never_raise(payload):
    session = GateioSession(["BTC-USDT"])
    out = session.on_frame(payload, T0)
    assert all(
        isinstance(o, BadFrame | BookUpdate | Quote | Trade | VenueError | Reconnect) for o in out
    )


_VALUE = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=8)
    | st.sampled_from(["BTC_USDT", "ob.BTC_USDT.50", "1"]),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(list("sSuUbBaAtl") + ["full"]), inner, max_size=6)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        ["spot.obu", "spot.order_book_update", "spot.book_ticker", "spot.trades", "spot.pong", ""]
    ),
    _VALUE,
)
def test_wrong_shapes_on_known_channels_never_raise(channel, result):
    payload = msgspec.json.encode({"channel": channel, "event": "update", "result": result})
    for mode in ("obu", "order_book_update"):
        session = GateioSession(["BTC-USDT"], book_channel=mode)
        out = session.on_frame(payload, T0)  # must not raise
        assert session.stats.frames == 1
        assert session.stats.bad_frames == sum(isinstance(o, BadFrame) for o in out)


# -- one-pass typed decoding ----------------------------------------------------------------
def _same_state(typed: GateioSession, reference: GateioSession) -> None:
    a, b = typed.stats, reference.stats
    assert (a.bad_frames, a.venue_errors, a.unknown, a.by_reason) == (b.bad_frames, b.venue_errors, b.unknown, b.by_reason)
    assert (typed.pongs, typed.last_pong_ns, typed._requests) == (reference.pongs, reference.last_pong_ns, reference._requests)


BOOK_TICKER = (
    b'{"time":1606293275,"time_ms":1606293275723,"channel":"spot.book_ticker","event":"update",'
    b'"result":{"t":1606293275123,"u":48733182,"s":"BTC_USDT","b":"19177.79","B":"0.0003341504",'
    b'"a":"19179.38","A":"0.09"}}'
)
TRADE = (
    b'{"time":1606292218,"time_ms":1606292218231,"channel":"spot.trades","event":"update",'
    b'"result":{"id":309143071,"id_market":5736713,"create_time":1606292218,'
    b'"create_time_ms":"1606292218213.4578","side":"sell","currency_pair":"BTC_USDT",'
    b'"amount":"16.4700000000","price":"0.4705000000","range":"2390902-2390902"}}'
)


def _corpus(real_data) -> list[tuple[bytes, bool]]:
    """Frames in every shape an obu session meets, each with whether the typed path handles
    it (True) or it goes to the two-step path (False)."""
    full, inc = _fixture(real_data)
    result = {"t": 1, "full": True, "s": "ob.BTC_USDT.50", "u": 5, "b": [], "a": []}
    data = [
        (_obu(full), True),
        (_obu(inc), True),
        (_obu(inc, real_shape=False), True),  # the docs' envelope: no event
        (b'{"time":1,"time_ms":2,"channel":"spot.obu","event":"update","result":' + json.dumps(inc).encode() + b"}", True),
        (BOOK_TICKER, True),
        (TRADE, True),
        (b'{"time":1,"channel":"spot.tickers","event":"update","result":{"currency_pair":"BTC_USDT","last":"1"}}', True),
        (b'{"time":1,"channel":"spot.candlesticks","event":"update","result":null}', True),
        (b'{"channel":"spot.order_book_update","event":"update","result":{"s":"BTC_USDT","U":1,"u":1}}', True),
        (b'{"channel":"spot.orders","event":"update"}', True),  # ignored, and no result needed
        # acknowledgements, errors, pongs, upgrade requests
        (b'{"time":1,"channel":"spot.obu","event":"subscribe","payload":["ob.BTC_USDT.50"],"result":{"status":"success"}}', False),
        (b'{"time":1,"channel":"spot.tickers","event":"subscribe","result":{"status":"success"}}', False),
        (b'{"time":1,"channel":"spot.obu","event":"subscribe","payload":["ob.NOPE_USD.50"],'
         b'"error":{"code":2,"message":"Invalid argument provided"},"result":{"status":"fail"}}', False),
        (msgspec.json.encode({"channel": "spot.obu", "event": "update", "error": {"code": 3}, "result": result}), False),
        (msgspec.json.encode({"channel": "spot.obu", "event": "unsubscribe", "result": result}), False),
        (msgspec.json.encode({"channel": "spot.obu", "event": "upgrade", "result": result}), False),  # data, as before
        (b'{"time":1,"channel":"spot.tickers","event":"upgrade"}', False),  # a reconnect, as before
        (b'{"time":1,"time_ms":1000,"channel":"","event":"upgrade"}', False),
        (b'{"time":1757377585,"channel":"spot.pong","event":"","error":null,"result":null}', False),
        (msgspec.json.encode({"channel": "spot.obu", "result": result, "id": [1]}), False),
    ]
    return data + [(frame, False) for frame in BAD_FRAMES.values()]  # every error path is the reference's


def test_only_frames_the_union_has_no_type_for_take_the_two_step_path(real_data):
    typed = GateioSession(["BTC-USDT"])
    reference = GateioSession(["BTC-USDT"])
    typed.on_open(T0)
    reference.on_open(T0)
    fallbacks = count_fallbacks(typed)
    corpus = _corpus(real_data)
    for i, (frame, has_type) in enumerate(corpus):
        before = len(fallbacks)
        assert typed.on_frame(frame, T0 + i) == reference._two_step(frame, T0 + i), frame[:120]
        assert (len(fallbacks) == before) is has_type, frame[:120]
        _same_state(typed, reference)
    assert len(fallbacks) == sum(not t for _, t in corpus)
    assert typed.stats.bad_frames == len(BAD_FRAMES) + 1 and typed.stats.venue_errors == 2 and typed.pongs == 1


@pytest.mark.parametrize("mode", ["obu", "order_book_update"])
def test_typed_members_are_the_data_and_ignored_channels(mode):
    session = GateioSession(["BTC-USDT"], book_channel=mode, ignored_channels={"spot.tickers", "spot.trades", "spot.pong"})
    tags = {cls.__struct_config__.tag for cls in session._typed}
    book, other = ("spot.obu", "spot.order_book_update") if mode == "obu" else ("spot.order_book_update", "spot.obu")
    # a handled channel is never ignored; the pong is always left to _control
    assert tags == {book, "spot.book_ticker", "spot.trades", "spot.tickers", other}


def test_a_malformed_push_gets_the_reason_of_the_two_step_path():
    session = GateioSession(["BTC-USDT"])
    (bad,) = session.on_frame(BAD_FRAMES["U as text"], T0)
    assert bad.reason == "decode: Expected `int`, got `str` - at `$.U`"  # the path inside result
    (bad,) = session.on_frame(BAD_FRAMES["bad pair"], T0)
    assert bad.reason.startswith("symbol: ")
    (bad,) = session.on_frame(BAD_FRAMES["increment without U"], T0)
    assert bad.reason == "invalid: spot.obu increment without U"
    (bad,) = session.on_frame(BAD_FRAMES["trade time"], T0)
    assert bad.reason.startswith("invalid: not a time in ms")
    assert session.stats.bad_frames == 4 and session.stats.by_reason == {"decode": 1, "symbol": 1, "invalid": 2}


_RESULTS = {
    "spot.obu": st.fixed_dictionaries(
        {"s": st.sampled_from(["ob.BTC_USDT.50", "ob.ETH_USDT.400", "ob.BTCUSDT.50"]), "u": st.integers(0, 3)},
        optional={"U": st.integers(0, 3), "full": st.booleans(), "t": st.integers(0, 3),
                  "b": st.just([["1", "2"]]), "a": st.just([])},
    ),
    "spot.order_book_update": st.fixed_dictionaries(
        {"s": st.sampled_from(["BTC_USDT", "BTCUSDT"]), "U": st.integers(0, 3), "u": st.integers(0, 3)},
        optional={"full": st.booleans(), "b": st.just([["1", "2"]])},
    ),
    "spot.book_ticker": st.fixed_dictionaries(
        {k: st.sampled_from(["BTC_USDT", "1"]) for k in ("s", "b", "B", "a", "A")}, optional={"u": st.integers(0, 3)}
    ),
    "spot.trades": st.fixed_dictionaries(
        {"id": st.integers(0, 3), "currency_pair": st.sampled_from(["BTC_USDT", "X"]), "side": st.sampled_from(["buy", "sell"]),
         "amount": st.just("1"), "price": st.just("2"), "create_time_ms": st.sampled_from(["1.5", "1", 7, "x"])}
    ),
}  # fmt: skip


@st.composite
def _gate_frame(draw: st.DrawFn) -> bytes:
    """A frame on any channel: mostly a well-formed push, each part sometimes not."""
    others = ["spot.tickers", "spot.pong", "spot.nonsense", ""]
    channel = draw(st.sampled_from(list(_RESULTS) if draw(st.integers(0, 3)) else others))
    frame: dict = {"time": 1, "channel": channel}
    if draw(st.integers(0, 3)):
        frame["event"] = "update"
    elif draw(st.booleans()):
        frame["event"] = draw(st.sampled_from(["", "subscribe", "unsubscribe", "upgrade"]))
    if draw(st.integers(0, 5)):
        frame["result"] = draw(_RESULTS.get(channel, _VALUE) if draw(st.integers(0, 4)) else _VALUE)
    for key, values in (("error", [None, {"code": 2, "message": "unknown currency pair BTC_USDT"}, "x"]),
                        ("payload", [None, ["ob.BTC_USDT.50"], [1]]), ("id", [None, 1, "a", [1]])):  # fmt: skip
        if not draw(st.integers(0, 5)):
            frame[key] = draw(st.sampled_from(values))
    return msgspec.json.encode(frame)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["obu", "order_book_update"]), st.lists(_gate_frame(), min_size=1, max_size=6))
def test_typed_path_equals_the_reference_on_any_frame(mode, frames):
    typed = GateioSession(["BTC-USDT"], book_channel=mode)
    reference = GateioSession(["BTC-USDT"], book_channel=mode)
    for i, frame in enumerate(frames):
        assert typed.on_frame(frame, T0 + i) == reference._two_step(frame, T0 + i), frame
        _same_state(typed, reference)
