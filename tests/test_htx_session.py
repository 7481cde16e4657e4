"""HtxSession, frame by frame: numbers, pings, req/rep, resync, errors and bad frames."""

from __future__ import annotations

import gzip
import json
import re
import zlib
from decimal import ROUND_HALF_EVEN, Context, Decimal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbwire.feed import VenueFeed
from arbwire.model import BadFrame, BookUpdate, Quote, Side, SyncState, Trade, VenueError
from arbwire.numbers import to_units
from arbwire.venues import htx as htx_module
from arbwire.venues.base import Reconnect, Send
from arbwire.venues.htx import HtxMbpRule, HtxSession

MS = 1_000_000
PLAIN = re.compile(r"^\d+(\.\d+)?$")
T0 = 1_700_000_000_000 * MS


def gz(frame: str | bytes | dict) -> bytes:
    if isinstance(frame, dict):
        frame = json.dumps(frame)
    if isinstance(frame, str):
        frame = frame.encode()
    return gzip.compress(frame)


def mbp(name: str, seq: int, prev: int, bids: str = "[]", asks: str = "[]", ts: int = 1) -> bytes:
    """An increment with the level arrays written as raw JSON text (numbers as the venue prints)."""
    return gz(
        f'{{"ch":"market.{name}.mbp.150","ts":{ts},"tick":{{"seqNum":{seq},'
        f'"prevSeqNum":{prev},"bids":{bids},"asks":{asks}}}}}'
    )


def rep(name: str, rid: str, seq: int, bids: str, asks: str) -> bytes:
    return gz(
        f'{{"id":"{rid}","status":"ok","ts":1,"rep":"market.{name}.mbp.150",'
        f'"data":{{"bids":{bids},"asks":{asks},"seqNum":{seq}}}}}'
    )


def sends(out) -> list[dict]:
    return [json.loads(o.text) for o in out if isinstance(o, Send)]


def synced_feed(symbols: list[str], start_seq: int = 1000):
    """A feed whose books are synced through the real req/rep path."""
    session = HtxSession(symbols)
    feed = VenueFeed(session)
    session.on_open(T0)
    now = T0
    for symbol in symbols:
        name = session.names.to_venue(symbol)
        now += 200 * MS
        (req,) = sends(feed.on_frame(mbp(name, start_seq + 7, start_seq), now))
        assert req["req"] == f"market.{name}.mbp.150"
        now += 10 * MS
        out = feed.on_frame(
            rep(name, req["id"], start_seq, "[[100.5,1.5],[99,2]]", "[[101,1],[102.25,3]]"), now
        )
        assert out == []
        assert feed.syncs[symbol].state is SyncState.SYNCED
        assert feed.syncs[symbol].last_id == start_seq + 7
    return session, feed, now


# -- link set-up ------------------------------------------------------------------------


def test_links_channels_and_subscriptions():
    feed = HtxSession(["BTC-USDT", "ETH-BTC"])
    assert feed.url() == "wss://api.huobi.pro/feed"
    subs = [json.loads(a.text) for a in feed.on_open(T0)]
    assert [s["sub"] for s in subs] == ["market.btcusdt.mbp.150", "market.ethbtc.mbp.150"]
    assert len({s["id"] for s in subs}) == 2

    ws = HtxSession(["BTC-USDT"], book_channel=None)
    assert ws.url() == "wss://api.huobi.pro/ws"
    assert [json.loads(a.text)["sub"] for a in ws.on_open(T0)] == [
        "market.btcusdt.bbo",
        "market.btcusdt.trade.detail",
    ]
    depth = HtxSession(["BTC-USDT"], book_channel="depth", trades=False)
    assert depth.url() == "wss://api.huobi.pro/ws"
    assert [json.loads(a.text)["sub"] for a in depth.on_open(T0)] == [
        "market.btcusdt.depth.step0",
        "market.btcusdt.bbo",
    ]
    assert depth.snapshot_request("BTC-USDT") == []  # full books arrive every second

    with pytest.raises(ValueError):
        HtxSession(["BTC-USDT"], link="ws")  # mbp lives on /feed only
    with pytest.raises(ValueError):
        HtxSession(["BTC-USDT"], mbp_levels=400)  # req does not serve 400
    with pytest.raises(ValueError):
        HtxSession(["BTC-USDT"], book_channel="depth", link="feed")
    with pytest.raises(ValueError):
        HtxSession(["BTC-USDT"], book_channel="books")


# -- numbers -------------------------------------------------------------------------------

CASES = [
    ("0.1", "0.1"),
    ("1.8E-4", "0.00018"),
    ("1.8e-4", "0.00018"),
    ("14.909733438479636", "14.909733438479636"),
    ("4.0E7", "40000000"),
    ("188358.0", "188358.0"),
    ("9144", "9144"),
    ("0", "0"),
    ("1.0E-10", "0.00000000010"),
    ("5E+2", "500"),
    ("9.121E-7", "0.0000009121"),
    ("0.123456789012345678", "0.123456789012345678"),
    ("123456789012345678901234", "123456789012345678901234"),
]


@pytest.mark.parametrize(("literal", "text"), CASES)
def test_json_numbers_become_exact_plain_text(literal, text):
    session = HtxSession(["BTC-USDT"])
    # alone (fast path when plain) and beside an exponent literal (checked path)
    for asks in (f"[[{literal},{literal}]]", f"[[{literal},{literal}],[1.0E7,1]]"):
        (upd,) = session.on_frame(mbp("btcusdt", 2, 1, asks=asks), 1)
        assert isinstance(upd, BookUpdate)
        assert upd.asks[0] == (text, text)
    # in a trade and in a quote as well
    (tr,) = session.on_frame(
        gz(
            '{"ch":"market.btcusdt.trade.detail","ts":1,"tick":{"id":1,"ts":1,"data":[{"id":'
            f'1931506477151671992419320033,"ts":2,"tradeId":7,"amount":{literal},'
            f'"price":{literal},"direction":"sell","isRpiTrade":false}}]}}}}'
        ),
        1,
    )
    assert (tr.price, tr.size) == (text, text)
    (q,) = session.on_frame(
        gz(
            f'{{"ch":"market.btcusdt.bbo","ts":1,"tick":{{"seqId":9,"ask":{literal},'
            f'"askSize":{literal},"bid":{literal},"bidSize":{literal},"quoteTime":3}}}}'
        ),
        1,
    )
    assert (q.bid, q.bid_size, q.ask, q.ask_size) == (text, text, text, text)
    assert session.stats.bad_frames == 0


def _java_like(value: Decimal, style: int) -> str:
    """Some ways a venue can print the same number."""
    if style == 0:
        return format(value, "f")
    if style == 1:
        return format(value, "E").replace("E+", "E")
    if style == 2:
        return format(value, "e")
    digits = format(value, "f")
    return digits if "." in digits else digits + ".0"


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.decimals(min_value=0, max_value=10**12, places=18, allow_nan=False),
            st.decimals(min_value=0, max_value=10**9, places=12, allow_nan=False),
            st.integers(0, 3),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_printing_of_a_number_decodes_to_the_same_exact_value(levels):
    session = HtxSession(["BTC-USDT"])
    wire = ",".join(f"[{_java_like(p, k)},{_java_like(s, 3 - k)}]" for p, s, k in levels)
    (upd,) = session.on_frame(mbp("btcusdt", 2, 1, bids=f"[{wire}]"), 1)
    assert isinstance(upd, BookUpdate), upd
    for (price, size), (p, s, _) in zip(upd.bids, levels, strict=True):
        assert PLAIN.match(price) and PLAIN.match(size), (price, size)
        assert Decimal(price) == p and Decimal(size) == s
        wide = Context(prec=100)  # the default 28 digits would round the reference itself
        assert to_units(price) == int(p.scaleb(18, wide)) and to_units(size) == int(
            s.scaleb(18, wide)
        )


def test_size_beyond_18_decimals_is_rounded_price_is_refused():
    session = HtxSession(["BTC-USDT"])
    (upd,) = session.on_frame(
        mbp(
            "btcusdt",
            2,
            1,
            asks="[[1.5,1.2345678901234567E-5],[1.6,0.0012345678901234567],[1.7,1e-30],[1.8,2E-19]]",
        ),
        1,
    )
    assert upd.asks == [
        ("1.5", str(Decimal("1.2345678901234567E-5").quantize(Decimal("1e-18"), ROUND_HALF_EVEN))),
        ("1.6", "0.001234567890123457"),
        ("1.7", "0.000000000000000001"),  # dust stays a level, never a silent delete
        ("1.8", "0.000000000000000001"),
    ]
    for _, size in upd.asks:
        to_units(size)
    (bad,) = session.on_frame(mbp("btcusdt", 3, 2, asks="[[1.0E-19,1]]"), 1)
    assert isinstance(bad, BadFrame) and "decimals" in bad.reason
    (bad,) = session.on_frame(mbp("btcusdt", 3, 2, asks="[[1.5,-2]]"), 1)
    assert isinstance(bad, BadFrame) and "negative" in bad.reason
    (bad,) = session.on_frame(mbp("btcusdt", 3, 2, asks="[[1e999999999,1]]"), 1)
    assert isinstance(bad, BadFrame) and "range" in bad.reason


# -- keepalive ---------------------------------------------------------------------------


def test_ping_is_answered_first_with_the_same_integer():
    session = HtxSession(["BTC-USDT", "ETH-USDT"])
    feed = VenueFeed(session)
    session.on_open(T0)
    out = session.on_frame(gz('{"ping":1492420473027}'), T0)
    assert out == [Send('{"pong":1492420473027}')]
    # two books need a req within 100 ms: the second waits; a ping then still goes first
    assert len(sends(feed.on_frame(mbp("btcusdt", 10, 5), T0 + 1 * MS))) == 1
    assert sends(feed.on_frame(mbp("ethusdt", 10, 5), T0 + 2 * MS)) == []
    out = feed.on_frame(gz('{"ping":1492420478027}'), T0 + 150 * MS)
    assert out[0] == Send('{"pong":1492420478027}')
    assert [s.get("req") for s in sends(out[1:])] == ["market.ethusdt.mbp.150"]
    assert session.pings == 2


def test_no_ping_for_the_timeout_means_a_dead_link():
    session = HtxSession(["BTC-USDT"], ping_timeout_s=12)
    session.on_open(T0)
    assert session.on_timer(T0 + 11_000 * MS, T0) == []
    session.on_frame(gz('{"ping":1}'), T0 + 11_000 * MS)
    assert session.on_timer(T0 + 22_000 * MS, T0) == []  # 11 s since the last ping
    # data keeps flowing but pings stop: the link is still dead for HTX
    session.on_frame(mbp("btcusdt", 2, 1), T0 + 22_500 * MS)
    (reconnect,) = session.on_timer(T0 + 23_000 * MS, T0 + 22_500 * MS)
    assert isinstance(reconnect, Reconnect) and "ping" in reconnect.reason
    assert session.on_timer(T0 + 24_000 * MS, T0) == []  # once per silent period
    session.on_open(T0 + 25_000 * MS)  # the link was reopened: the clock restarts
    assert session.on_timer(T0 + 36_000 * MS, T0) == []


# -- book sync through req/rep -------------------------------------------------------------


def test_broken_chain_resyncs_that_symbol_only():
    session, feed, now = synced_feed(["BTC-USDT", "ETH-USDT"])
    btc, eth = feed.syncs["BTC-USDT"], feed.syncs["ETH-USDT"]
    # seqNum steps are irregular; only prevSeqNum == last seqNum matters
    assert feed.on_frame(mbp("btcusdt", 1052, 1007, bids="[[100.5,0]]"), now + 200 * MS) == []
    assert feed.on_frame(mbp("ethusdt", 1030, 1007, asks="[[101,4]]"), now + 210 * MS) == []
    assert btc.synced and eth.synced and btc.last_id == 1052
    assert btc.book.bids.text_levels(5) == [("99", "2")]
    # a lost increment on BTC: prevSeqNum 1090 is not 1052
    out = feed.on_frame(mbp("btcusdt", 1120, 1090), now + 400 * MS)
    assert sends(out) == [{"req": "market.btcusdt.mbp.150", "id": sends(out)[0]["id"]}]
    assert btc.state is SyncState.RESYNCING and btc.gaps == 1
    # ETH is untouched and keeps applying
    assert feed.on_frame(mbp("ethusdt", 1074, 1030, asks="[[102.25,0]]"), now + 410 * MS) == []
    assert eth.synced and eth.gaps == 0 and eth.last_id == 1074
    assert eth.book.asks.text_levels(5) == [("101", "4")]
    # BTC: the reply aligns with the increment that broke the chain
    rid = sends(out)[0]["id"]
    feed.on_frame(rep("btcusdt", rid, 1090, "[[100,1]]", "[[100.1,2]]"), now + 500 * MS)
    assert btc.synced and btc.last_id == 1120
    assert feed.on_frame(mbp("btcusdt", 1177, 1120, asks="[[100.2,7]]"), now + 600 * MS) == []
    assert btc.book.asks.text_levels(5) == [("100.1", "2"), ("100.2", "7")]
    # a duplicate (seqNum already applied) is dropped silently
    assert feed.on_frame(mbp("btcusdt", 1177, 1120, asks="[[100.2,9]]"), now + 610 * MS) == []
    assert btc.book.asks.text_levels(5)[1] == ("100.2", "7") and btc.gaps == 1


def test_mbp_rule_compares_prev_seq_not_plus_one():
    rule = HtxMbpRule()

    def upd(seq, prev):
        return BookUpdate("htx", "X-Y", [], [], prev + 1, seq, prev)

    assert rule.first(160, upd(160, 130)).name == "STALE"
    assert rule.first(160, upd(204, 160)).name == "APPLY"
    assert rule.first(160, upd(226, 204)).name == "GAP"
    assert rule.first(160, upd(200, 150)).name == "GAP"  # 160 is no message boundary here
    assert rule.next(204, upd(226, 204)).name == "APPLY"
    assert rule.next(204, upd(205, 203)).name == "GAP"
    assert rule.next(226, upd(204, 160)).name == "STALE"


def test_default_req_spacing_keeps_a_margin_over_the_100_ms_limit():
    assert HtxSession(["BTC-USDT"]).req_interval_ns >= 110 * MS


def test_req_is_rate_limited_to_one_per_100_ms_per_link():
    session = HtxSession(["BTC-USDT", "ETH-USDT", "LTC-USDT"], req_interval_s=0.1)
    feed = VenueFeed(session)
    session.on_open(T0)
    got = []
    got += sends(feed.on_frame(mbp("btcusdt", 2, 1), T0 + 1 * MS))
    got += sends(feed.on_frame(mbp("ethusdt", 2, 1), T0 + 2 * MS))
    got += sends(feed.on_frame(mbp("ltcusdt", 2, 1), T0 + 3 * MS))
    assert [g["req"] for g in got] == ["market.btcusdt.mbp.150"]
    got += sends(feed.on_frame(mbp("btcusdt", 3, 2), T0 + 60 * MS))
    assert len(got) == 1
    got += sends(session.on_timer(T0 + 101 * MS, T0))
    got += sends(feed.on_frame(mbp("btcusdt", 4, 3), T0 + 150 * MS))
    got += sends(session.on_timer(T0 + 201 * MS, T0))
    assert [g["req"] for g in got] == [
        "market.btcusdt.mbp.150",
        "market.ethusdt.mbp.150",
        "market.ltcusdt.mbp.150",
    ]
    assert len({g["id"] for g in got}) == 3


def test_throttled_req_widens_the_spacing_asks_again_and_eases_back(caplog):
    session = HtxSession(["BTC-USDT", "ETH-USDT"], req_interval_s=0.1, req_interval_max_s=0.3)
    feed = VenueFeed(session)
    seen = []
    feed.on_event = seen.append
    session.on_open(T0)
    (req,) = sends(feed.on_frame(mbp("btcusdt", 2, 1), T0))
    throttled = gz(f'{{"status":"error","id":"{req["id"]}","err-code":"bad-request","err-msg":"429 too many request"}}')
    with caplog.at_level("INFO", logger="arbwire.venues"):
        assert feed.on_frame(throttled, T0 + 5 * MS) == []
    assert [e for e in seen if isinstance(e, VenueError)] == []  # handled here, not a venue fault
    assert "throttled" in caplog.text and "200 ms" in caplog.text
    assert session.req_throttled == 1 and session.req_gap_ns == 200 * MS
    assert sends(session.on_timer(T0 + 150 * MS, T0)) == []  # the widened gap holds it back
    (again,) = sends(session.on_timer(T0 + 201 * MS, T0))
    assert again["req"] == "market.btcusdt.mbp.150" and again["id"] != req["id"]
    assert [r.levelname for r in caplog.records if "throttled" in r.getMessage()] == ["INFO"]
    # a second throttle doubles again, up to req_interval_max_s, and that is worth a warning
    with caplog.at_level("INFO", logger="arbwire.venues"):
        session.on_frame(gz(f'{{"status":"error","id":"{again["id"]}","err-code":"bad-request","err-msg":"429 too many request"}}'), T0 + 210 * MS)
    assert session.req_gap_ns == 300 * MS
    assert [r.levelname for r in caplog.records if "throttled" in r.getMessage()] == ["INFO", "WARNING"]
    (third,) = sends(session.on_timer(T0 + 502 * MS, T0))
    feed.on_frame(rep("btcusdt", third["id"], 2, "[[1,1]]", "[[2,1]]"), T0 + 510 * MS)
    assert feed.syncs["BTC-USDT"].state is SyncState.SYNCED
    assert session.req_gap_ns == 270 * MS  # eases back by a tenth per answered req
    assert session.stats.venue_errors == 0


def test_req_spacing_must_be_positive_and_under_its_ceiling():
    with pytest.raises(ValueError, match="req_interval_s"):
        HtxSession(["BTC-USDT"], req_interval_s=0)
    with pytest.raises(ValueError, match="req_interval_max_s"):
        HtxSession(["BTC-USDT"], req_interval_s=3, req_interval_max_s=2)


def test_rep_with_null_data_is_a_failed_snapshot_and_is_retried():
    session = HtxSession(["BTC-USDT"], req_interval_s=0.1)
    feed = VenueFeed(session)
    session.on_open(T0)
    (req,) = sends(feed.on_frame(mbp("btcusdt", 2, 1), T0))
    seen = []
    feed.on_event = seen.append
    out = feed.on_frame(
        gz(f'{{"id":"{req["id"]}","status":"ok","rep":"market.btcusdt.mbp.150","data":null}}'),
        T0 + 50 * MS,
    )
    assert out == []
    (err,) = [e for e in seen if isinstance(e, VenueError)]
    assert err.symbol == "BTC-USDT" and err.code == "null-data"
    assert feed.syncs["BTC-USDT"].state is SyncState.BUFFERING
    assert session.snapshots_failed == 1
    assert sends(session.on_timer(T0 + 200 * MS, T0)) == []  # backing off
    (again,) = sends(session.on_timer(T0 + 2_000 * MS, T0))
    assert again["req"] == "market.btcusdt.mbp.150" and again["id"] != req["id"]
    feed.on_frame(rep("btcusdt", again["id"], 2, "[[1,1]]", "[[2,1]]"), T0 + 2_100 * MS)
    assert feed.syncs["BTC-USDT"].synced


def test_lost_req_is_sent_again_and_late_or_unasked_replies_are_ignored():
    session = HtxSession(["BTC-USDT"], req_timeout_s=5)
    feed = VenueFeed(session)
    session.on_open(T0)
    (first,) = sends(feed.on_frame(mbp("btcusdt", 2, 1), T0))
    assert sends(session.on_timer(T0 + 4_000 * MS, T0)) == []
    (second,) = sends(session.on_timer(T0 + 5_000 * MS, T0))
    assert second["id"] != first["id"] and session.req_timeouts == 1
    # the late answer to the first req is not applied; the answer to the second is
    assert (
        feed.on_frame(rep("btcusdt", first["id"], 1, "[[1,1]]", "[[2,1]]"), T0 + 5_100 * MS) == []
    )
    assert feed.syncs["BTC-USDT"].state is SyncState.BUFFERING
    feed.on_frame(rep("btcusdt", second["id"], 1, "[[1,1]]", "[[2,1]]"), T0 + 5_200 * MS)
    assert feed.syncs["BTC-USDT"].synced and feed.syncs["BTC-USDT"].last_id == 2
    # a reply nobody asked for would rewind the book: ignored
    assert session.on_frame(rep("btcusdt", "999", 1, "[[5,1]]", "[[6,1]]"), T0 + 6_000 * MS) == []


# -- venue errors and acks -------------------------------------------------------------------


def test_error_for_unknown_symbol_names_it():
    session = HtxSession(["BTC-USDT", "LMR-USDT"])
    subs = {json.loads(a.text)["sub"]: json.loads(a.text)["id"] for a in session.on_open(T0)}
    rid = subs["market.lmrusdt.mbp.150"]
    (err,) = session.on_frame(
        gz(
            f'{{"status":"error","ts":1684650798105,"id":"{rid}","err-code":"bad-request",'
            '"err-msg":"invalid symbol lmrusdt"}'
        ),
        T0,
    )
    assert isinstance(err, VenueError)
    assert (err.venue, err.symbol, err.code) == ("htx", "LMR-USDT", "bad-request")
    assert "invalid symbol lmrusdt" in err.message
    # an id this session never sent: the symbol comes from the message
    (err,) = session.on_frame(
        gz(
            '{"status":"error","id":"id488","err-code":"bad-request","err-msg":"invalid symbol nopejpy"}'
        ),
        T0,
    )
    assert err.symbol == "NOPE-JPY"
    (err,) = session.on_frame(
        gz(
            '{"status":"error","err-code":"bad-request","err-msg":"invalid topic market.xyzbtc.bbo"}'
        ),
        T0,
    )
    assert err.symbol == "XYZ-BTC"
    (err,) = session.on_frame(
        gz('{"status":"error","err-code":"bad-request","err-msg":"429 too many request"}'), T0
    )
    assert err.symbol == "" and err.code == "bad-request"
    assert session.stats.venue_errors == 4 and session.stats.bad_frames == 0


def test_req_error_is_retried_unless_the_symbol_is_invalid():
    session = HtxSession(["BTC-USDT", "LMR-USDT"])
    feed = VenueFeed(session)
    session.on_open(T0)
    (req,) = sends(feed.on_frame(mbp("btcusdt", 2, 1), T0))
    (err,) = session.on_frame(
        gz(
            f'{{"status":"error","id":"{req["id"]}","err-code":"service-unavailable","err-msg":"service unavailable"}}'
        ),
        T0 + 10 * MS,
    )
    assert err.symbol == "BTC-USDT"
    assert sends(session.on_timer(T0 + 30_000 * MS, T0))[0]["req"] == "market.btcusdt.mbp.150"
    (req,) = sends(feed.on_frame(mbp("lmrusdt", 2, 1), T0 + 31_000 * MS))
    (err,) = session.on_frame(
        gz(
            f'{{"status":"error","id":"{req["id"]}","err-code":"bad-request","err-msg":"invalid symbol lmrusdt"}}'
        ),
        T0 + 31_010 * MS,
    )
    assert err.symbol == "LMR-USDT"
    later = sends(session.on_timer(T0 + 90_000 * MS, T0)) + sends(
        session.on_timer(T0 + 200_000 * MS, T0)
    )
    assert "market.lmrusdt.mbp.150" not in [r["req"] for r in later]  # never asked again


def test_sub_acks_are_consumed():
    session = HtxSession(["BTC-USDT"])
    (sub,) = session.on_open(T0)
    rid = json.loads(sub.text)["id"]
    assert (
        session.on_frame(
            gz(f'{{"id":"{rid}","status":"ok","subbed":"market.btcusdt.mbp.150","ts":1}}'), 1
        )
        == []
    )
    assert (
        session.on_frame(gz('{"id":7,"status":"ok","subbed":["market.btcusdt.bbo"],"ts":1}'), 1)
        == []
    )
    assert (
        session.on_frame(gz('{"id":"8","status":"ok","unsubbed":"market.btcusdt.bbo","ts":1}'), 1)
        == []
    )
    assert session.stats.bad_frames == 0 and session.stats.unknown == 0


# -- quotes and trades -----------------------------------------------------------------------


def test_bbo_and_trades():
    session = HtxSession(["BTC-USDT"], book_channel=None)
    (q,) = session.on_frame(
        gz(
            '{"ch":"market.btcusdt.bbo","ts":1630994555540,"tick":{"seqId":137005210233,'
            '"ask":52665.02,"askSize":1.502181,"bid":52665.01,"bidSize":0.178567,'
            '"quoteTime":1630994555539,"symbol":"btcusdt"}}'
        ),
        7,
    )
    assert q == Quote(
        "htx", "BTC-USDT", "52665.01", "0.178567", "52665.02", "1.502181", 137005210233,
        1630994555539 * MS, 7,
    )  # fmt: skip
    out = session.on_frame(
        gz(
            '{"ch":"market.btcusdt.trade.detail","ts":1630994963175,"tick":{"id":137005445109,'
            '"ts":1630994963173,"data":[{"id":137005445109359286410323766,"ts":1630994963173,'
            '"tradeId":102523573486,"amount":0.006754,"price":52648.62,"direction":"buy"},'
            '{"id":1931506477151671992419320033,"ts":1630994963174,"tradeId":102523573487,'
            '"amount":1.8E-4,"price":52648.6,"direction":"sell","isRpiTrade":false}]}}'
        ),
        8,
    )
    assert out == [
        Trade(
            "htx",
            "BTC-USDT",
            "52648.62",
            "0.006754",
            Side.BUY,
            "102523573486",
            1630994963173 * MS,
            8,
        ),
        Trade(
            "htx",
            "BTC-USDT",
            "52648.6",
            "0.00018",
            Side.SELL,
            "102523573487",
            1630994963174 * MS,
            8,
        ),
    ]


# -- bad frames ------------------------------------------------------------------------------

GOOD = mbp("btcusdt", 2, 1, bids="[[1,1]]", asks="[[2,1]]")
BAD = {
    "not gzip": b'{"ch":"market.btcusdt.mbp.150"}',
    "garbage after gzip magic": b"\x1f\x8b\x08\x00garbage-garbage",
    "truncated gzip": GOOD[: len(GOOD) // 2],
    "gzip, last bytes cut": GOOD[:-4],
    "trailing bytes": GOOD + b"junk",
    "empty": b"",
    "malformed json": gz('{"ch":"market.btcusdt.mbp.150","ts":1,"tick":{"seqNum":2,'),
    "not json at all": gz("hello"),
    "seqNum as string": gz(
        '{"ch":"market.btcusdt.mbp.150","ts":1,"tick":{"seqNum":"2","prevSeqNum":1,"bids":[],"asks":[]}}'
    ),
    "seqNum missing": gz(
        '{"ch":"market.btcusdt.mbp.150","ts":1,"tick":{"prevSeqNum":1,"bids":[],"asks":[]}}'
    ),
    "price as string": mbp("btcusdt", 2, 1, bids='[["9138.6",1]]'),
    "size as string": mbp("btcusdt", 2, 1, asks='[[9138.6,"abc"]]'),
    "size null": mbp("btcusdt", 2, 1, asks="[[9138.6,null]]"),
    "size bool": mbp("btcusdt", 2, 1, asks="[[9138.6,true]]"),
    "level of 3": mbp("btcusdt", 2, 1, asks="[[9138.6,1,2]]"),
    "level of 1": mbp("btcusdt", 2, 1, asks="[[9138.6]]"),
    "nested level": mbp("btcusdt", 2, 1, asks="[[[1],2]]"),
    "levels not a list": mbp("btcusdt", 2, 1, asks="{}"),
    "tick null": gz('{"ch":"market.btcusdt.mbp.150","ts":1,"tick":null}'),
    "ts as float": gz(
        '{"ch":"market.btcusdt.mbp.150","ts":1.5,"tick":{"seqNum":2,"prevSeqNum":1}}'
    ),
    "ping float": gz('{"ping":1.5}'),
    "ping string": gz('{"ping":"1"}'),
    "bbo missing bid": gz(
        '{"ch":"market.btcusdt.bbo","ts":1,"tick":{"ask":1,"askSize":1,"bidSize":1}}'
    ),
    "trade direction": gz(
        '{"ch":"market.btcusdt.trade.detail","ts":1,"tick":{"data":[{"tradeId":1,"price":1,'
        '"amount":1,"direction":"up","ts":1}]}}'
    ),
    "trade price string": gz(
        '{"ch":"market.btcusdt.trade.detail","ts":1,"tick":{"data":[{"tradeId":1,"price":"1",'
        '"amount":1,"direction":"buy","ts":1}]}}'
    ),
    "unknown frame": gz('{"hello":"world"}'),
    "symbol that cannot be split": gz(
        '{"ch":"market.zzzz.mbp.150","ts":1,"tick":{"seqNum":2,"prevSeqNum":1}}'
    ),
    "rep data wrong type": gz('{"id":"1","status":"ok","rep":"market.btcusdt.mbp.150","data":[1]}'),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_frames_are_counted_and_the_session_goes_on(name):
    session = HtxSession(["BTC-USDT"])
    session.on_open(T0)
    if name == "rep data wrong type":  # a rep is only read when a req is outstanding
        (req,) = sends(session.snapshot_request("BTC-USDT"))
        rid = req["id"]
        payload = gz(gzip.decompress(BAD[name]).replace(b'"id":"1"', f'"id":"{rid}"'.encode()))
    else:
        payload = BAD[name]
    out = session.on_frame(payload, T0 + 1)
    assert len(out) == 1 and isinstance(out[0], BadFrame), out
    assert session.stats.bad_frames == 1
    (upd,) = session.on_frame(GOOD, T0 + 2)
    assert isinstance(upd, BookUpdate) and upd.bids == [("1", "1")]
    assert session.stats.bad_frames == 1


def test_bad_frame_excerpt_is_readable_text():
    session = HtxSession(["BTC-USDT"])
    (bad,) = session.on_frame(mbp("btcusdt", 2, 1, asks='[[9138.6,"abc"]]'), 1)
    assert bad.excerpt.startswith('{"ch":"market.btcusdt.mbp.150"')
    assert session.stats.by_reason


def test_oversized_frame_is_refused():
    session = HtxSession(["BTC-USDT"], max_frame_bytes=1000)
    (bad,) = session.on_frame(mbp("btcusdt", 2, 1, asks="[" + ",".join(["[1,1]"] * 500) + "]"), 1)
    assert isinstance(bad, BadFrame) and "bytes" in bad.reason


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(0, len(GOOD) - 1), st.integers(0, 255))
def test_garbage_never_makes_the_session_raise(junk, pos, byte):
    session = HtxSession(["BTC-USDT"])
    corrupt = GOOD[:pos] + bytes([byte]) + GOOD[pos + 1 :]
    for payload in (junk, corrupt, gz(junk), zlib.compress(junk)):
        for item in session.on_frame(payload, 1):
            assert isinstance(item, BadFrame | BookUpdate | VenueError | Send)
            if isinstance(item, BookUpdate):
                for price, size in item.bids + item.asks:
                    to_units(price), to_units(size)


@pytest.mark.skipif(htx_module._LIBDEFLATE is None, reason="libdeflate (deflate) not installed")
@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(0, len(GOOD) - 1), st.integers(0, 255), st.binary(max_size=12))
def test_libdeflate_and_zlib_give_the_same_outcome_on_any_frame(junk, pos, byte, tail):
    """The fast gunzip answers only for a whole single member; zlib decides everything else."""
    corrupt = GOOD[:pos] + bytes([byte]) + GOOD[pos + 1 :]
    frames = (GOOD, junk, corrupt, gz(junk), GOOD + tail, GOOD + GOOD, GOOD[: max(0, len(GOOD) - len(tail))])
    for payload in frames:
        fast = HtxSession(["BTC-USDT"]).on_frame(payload, 1)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(htx_module, "_LIBDEFLATE", None)
            reference = HtxSession(["BTC-USDT"]).on_frame(payload, 1)
        if payload == GOOD + GOOD:  # the one difference: a repeated member decodes as the one
            assert fast == HtxSession(["BTC-USDT"]).on_frame(GOOD, 1)
            assert [type(x) for x in reference] == [BadFrame]
            continue
        assert fast == reference


def test_reconnect_asks_again_for_snapshots_lost_with_the_old_link():
    session = HtxSession(["BTC-USDT", "ETH-USDT"])
    feed = VenueFeed(session)
    session.on_open(T0)
    (req,) = sends(feed.on_frame(mbp("btcusdt", 2, 1), T0))
    assert sends(feed.on_frame(mbp("ethusdt", 2, 1), T0 + 1 * MS)) == []  # queued behind BTC
    # the link drops before either reply; the new link must ask for both again
    subs = session.on_open(T0 + 1_000 * MS)
    assert len(subs) == 2
    got = sends(session.on_frame(gz('{"ping":5}'), T0 + 1_100 * MS))
    got += sends(session.on_timer(T0 + 1_300 * MS, T0))
    assert sorted(g["req"] for g in got if "req" in g) == [
        "market.btcusdt.mbp.150",
        "market.ethusdt.mbp.150",
    ]
    assert req["id"] not in [g.get("id") for g in got]
    # the old link's reply id is unknown now and is not applied
    btc_new = next(g["id"] for g in got if g.get("req") == "market.btcusdt.mbp.150")
    assert feed.on_frame(rep("btcusdt", req["id"], 1, "[[1,1]]", "[[2,1]]"), T0 + 1_400 * MS) == []
    assert not feed.syncs["BTC-USDT"].synced
    feed.on_frame(rep("btcusdt", btc_new, 1, "[[1,1]]", "[[2,1]]"), T0 + 1_500 * MS)
    assert feed.syncs["BTC-USDT"].synced


def test_link_lost_then_reopened_resyncs_every_book():
    session, feed, now = synced_feed(["BTC-USDT", "ETH-USDT"])
    feed.link_lost("closed by peer", now)
    assert not any(s.synced for s in feed.syncs.values())
    session.on_open(now + 1_000 * MS)
    (req,) = sends(feed.on_frame(mbp("btcusdt", 5000, 4990), now + 1_100 * MS))
    feed.on_frame(rep("btcusdt", req["id"], 4990, "[[1,1]]", "[[2,1]]"), now + 1_150 * MS)
    assert feed.syncs["BTC-USDT"].synced and feed.syncs["BTC-USDT"].last_id == 5000
    assert not feed.syncs["ETH-USDT"].synced


def test_other_book_topics_of_the_same_symbol_are_not_mixed_in():
    session = HtxSession(["BTC-USDT"])
    assert session.on_frame(mbp("btcusdt", 2, 1), 1) != []
    other = gz(
        '{"ch":"market.btcusdt.mbp.5","ts":1,"tick":{"seqNum":2,"prevSeqNum":1,"bids":[[1,1]],"asks":[]}}'
    )
    assert session.on_frame(other, 1) == []
    depth = gz(
        '{"ch":"market.btcusdt.depth.step0","ts":1,"tick":{"bids":[[1,1]],"asks":[],"version":3}}'
    )
    assert session.on_frame(depth, 1) == []
    assert session.stats.unknown == 2 and session.stats.bad_frames == 0


# -- one-pass decode against the envelope path --------------------------------------------

_ODD_FRAMES = [
    {"ch": "market.btcusdt.bbo", "ts": 5, "tick": {"bid": 61234.5, "bidSize": 1.5e-3, "ask": 61235, "askSize": 2,
                                                   "seqId": 9, "quoteTime": 4}},
    {"ch": "market.btcusdt.bbo", "ts": 5, "tick": {"bid": 9.121E-7, "bidSize": 4.0E7, "ask": 9.2E-7,
                                                   "askSize": 100}},
    {"ch": "market.btcusdt.bbo", "ts": 5, "tick": {"bid": "61234.5", "bidSize": 1, "ask": 61235, "askSize": 2}},
    {"ch": "market.btcusdt.bbo", "ts": 5, "tick": {"bid": 1, "ask": 2}},  # sizes missing
    {"ch": "market.btcusdt.trade.detail", "ts": 7, "tick": {"ts": 6, "data": [
        {"tradeId": 101, "price": 61234.5, "amount": 0.01, "direction": "buy", "ts": 6, "id": 10**27},
        {"tradeId": 102, "price": 61234.4, "amount": 1E-8, "direction": "sell"}]}},
    {"ch": "market.btcusdt.trade.detail", "ts": 7, "tick": {"data": [
        {"tradeId": 103, "price": 1, "amount": 1, "direction": "hold"}]}},  # a bad direction
    {"ch": "market.btcusdt.mbp.150", "ts": 8, "tick": {"seqNum": 11, "prevSeqNum": 10,
                                                       "bids": [[61234.5, 0], [61234, 2.5]], "asks": []}},
    {"ch": "market.btcusdt.mbp.150", "ts": 8, "tick": {"seqNum": 12, "bids": [[1, 1]]}},  # prevSeqNum missing
    {"ch": "market.btcusdt.mbp.150", "ts": 8, "tick": {"seqNum": 13, "prevSeqNum": 12,
                                                       "bids": [[1, -1]], "asks": [[2, "x"]]}},
    {"ch": "market.btcusdt.mbp.150", "tick": {"seqNum": 14, "prevSeqNum": 13}, "ts": 9},  # ch first, ts last
    {"tick": {"seqNum": 15, "prevSeqNum": 14}, "ts": 9, "ch": "market.btcusdt.mbp.150"},  # ch last
    {"ch": "market.ethusdt.mbp.150", "ts": 8, "tick": {"seqNum": 1, "prevSeqNum": 0}},  # not subscribed
    {"ch": "market.btcusdt.mbp.20", "ts": 8, "tick": {"seqNum": 1, "prevSeqNum": 0}},  # another depth
    {"ping": 1700000000000},
    {"id": "1", "status": "ok", "subbed": "market.btcusdt.mbp.150", "ts": 1},
]


@pytest.mark.parametrize("frame", _ODD_FRAMES, ids=range(len(_ODD_FRAMES)))
def test_one_pass_decode_equals_the_envelope_path_on_odd_frames(frame):
    """Numbers in every form HTX prints, missing and malformed fields, key orders, other
    topics and control frames: the typed union gives what the envelope path gives."""

    def refuse(_text: object) -> None:
        raise msgspec.DecodeError("forced")

    typed = HtxSession(["BTC-USDT"], quotes=True, trades=True)
    reference = HtxSession(["BTC-USDT"], quotes=True, trades=True)
    reference._decode = refuse  # type: ignore[method-assign]
    enveloped: list[object] = []
    envelope = typed._envelope
    typed._envelope = lambda text, ns: enveloped.append(text) or envelope(text, ns)  # type: ignore[method-assign]
    payload = gz(frame)

    def strip(events):  # type: ignore[no-untyped-def]
        return [e if type(e) is not BadFrame else (BadFrame, e.reason) for e in events]

    assert strip(typed.on_frame(payload, 1)) == strip(reference.on_frame(payload, 1))
    assert typed.stats.bad_frames == reference.stats.bad_frames
    # data of a subscribed topic with its required fields never needs the envelope
    tick = frame.get("tick", {})
    complete = all(k in tick for k in ("seqNum", "prevSeqNum")) or "data" in tick or "askSize" in tick
    subscribed = frame.get("ch") in {"market.btcusdt.mbp.150", "market.btcusdt.bbo", "market.btcusdt.trade.detail"}
    assert (not enveloped) == (subscribed and complete)
