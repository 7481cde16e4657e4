"""The Binance SBE session on the real ETHUSDT capture re-encoded as SBE messages.

The capture (hftbacktest, Binance spot JSON) is turned frame by frame into the SBE
messages Binance's binary endpoint sends for the same events, with the simulator's
encoder (built from the protocol document, not from the client). Both sessions must
then yield the same events, and the books built from them must agree after every
update."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbwire.model import BadFrame, BookUpdate, Quote, Trade
from arbwire.record.importers import Kind, read_hftbacktest
from arbwire.sim import binance_sbe as wire
from arbwire.sync import BookSync
from arbwire.venues.base import Reconnect
from arbwire.venues.binance import BinanceSession
from arbwire.venues.binance_sbe import IMPLEMENTATION, BinanceSbeSession

CAPTURE = Path(__file__).resolve().parents[2] / "shared/data/real/hftbacktest/binance_spot_ethusdt_20240808.gz"


def _as_sbe(payload: bytes) -> bytes:
    frame = json.loads(payload)
    stream, data = frame["stream"], frame["data"]
    if stream.endswith("@bookTicker"):
        return wire.best_bid_ask_from_json(data, 0)  # spot bookTicker carries no time
    if stream.endswith("@trade"):
        (message,) = wire.trades_from_json([data], data["T"] * 1000)
        return message
    return wire.depth_diff_from_json(data, data["E"] * 1000)


@pytest.fixture(scope="module")
def capture() -> list:
    return list(read_hftbacktest(CAPTURE))


@pytest.mark.parametrize("decoder", ["session's", "python"])
def test_the_real_capture_as_sbe_gives_the_json_sessions_events_and_books(capture, decoder):
    by_json = BinanceSession(["ETH-USDT"])
    by_sbe = BinanceSbeSession(["ETH-USDT"], api_key="k")
    if decoder == "python":
        by_sbe._events = by_sbe._events_py  # the reference, whatever the session uses
    books = {"json": BookSync("binance", "ETH-USDT", by_json.sequence_rule("ETH-USDT")),
             "sbe": BookSync("binance", "ETH-USDT", by_sbe.sequence_rule("ETH-USDT"))}  # fmt: skip
    kinds = {Quote: 0, Trade: 0, BookUpdate: 0}
    tops = 0
    for rec in capture:
        if rec.kind is Kind.HTTP:
            snapshot = by_json.parse_snapshot("ETH-USDT", rec.payload, rec.recv_ns)
            assert by_sbe.parse_snapshot("ETH-USDT", rec.payload, rec.recv_ns) == snapshot  # REST stays JSON
            for sync in books.values():
                sync.on_update(snapshot)
            continue
        expected = by_json.on_frame(rec.payload, rec.recv_ns)
        got = by_sbe.on_frame(_as_sbe(rec.payload), rec.recv_ns)
        assert got == expected, rec.payload[:200]
        for event in got:
            kinds[type(event)] += 1
            if type(event) is BookUpdate:
                outcomes = {name: sync.on_update(event) for name, sync in books.items()}
                assert outcomes["json"] == outcomes["sbe"]
                a, b = books["json"].book, books["sbe"].book
                assert a.top() == b.top()
                tops += 1
    assert kinds == {Quote: 24077, Trade: 6106, BookUpdate: 3434}
    assert tops == 3434
    a, b = books["json"], books["sbe"]
    assert a.synced and b.synced and a.last_id == b.last_id
    assert a.book.text_levels() == b.book.text_levels()
    assert by_sbe.stats.bad_frames == 0 and by_sbe.stats.frames == len(capture) - 1


def test_text_frames_take_the_json_path():
    session = BinanceSbeSession(["BTC-USDT"], api_key="k")
    assert session.on_frame(b'{"result":null,"id":1}', 1) == []
    (reconnect,) = session.on_frame(b'{"e":"serverShutdown","E":1}', 2)
    assert reconnect == Reconnect("binance serverShutdown")
    (error,) = session.on_frame(b'{"code":2,"msg":"Invalid request: invalid stream","id":3}', 3)
    assert error.code == "2" and session.stats.venue_errors == 1


def test_a_broken_message_is_counted_and_the_next_one_still_decodes():
    session = BinanceSbeSession(["BTC-USDT", "ETH-USDT"], api_key="k")
    good = wire.encode_best_bid_ask(5, 77, (6000001000000, 100000000), (6000002000000, 1), "BTCUSDT")
    (bad,) = session.on_frame(good[:-4], 1)
    assert isinstance(bad, BadFrame) and bad.venue == "binance"
    assert bad.reason == "sbe: truncated symbol: needs 7 bytes at offset 59, message has 62"
    assert bad.excerpt == good[:48].hex()  # binary: the excerpt is hex
    (quote,) = session.on_frame(good, 2)
    assert quote == Quote("binance", "BTC-USDT", "60000.01000000", "1.00000000", "60000.02000000", "0.00000001", 77, 5000, 2)
    other = wire.encode_best_bid_ask(5, 78, (1, 1), (2, 1), "SOLUSDT")
    assert session.on_frame(other, 3) == []  # a symbol not subscribed: counted, not an error
    snapshot = wire.encode_depth_snapshot(5, 79, [(1, 1)], [], "BTCUSDT")
    assert session.on_frame(snapshot, 4) == []  # depth20 is not one of the session's streams
    assert session.stats.bad_frames == 1 and session.stats.unknown == 2 and session.stats.frames == 4


def test_streams_and_url_follow_the_sbe_endpoint():
    session = BinanceSbeSession(["BTC-USDT"], api_key="k")
    assert session.streams() == ["btcusdt@depth", "btcusdt@bestBidAsk", "btcusdt@trade"]
    assert session.url() == "wss://stream-sbe.binance.com:9443/stream?streams=btcusdt@depth/btcusdt@bestBidAsk/btcusdt@trade"
    assert session.snapshot_url("BTC-USDT") == "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000"


def test_without_a_key_the_session_says_which_variable_to_set(monkeypatch):
    monkeypatch.delenv("ARBWIRE_NO_SUCH_KEY", raising=False)
    session = BinanceSbeSession(["BTC-USDT"], api_key_env="ARBWIRE_NO_SUCH_KEY")
    with pytest.raises(ValueError, match="set the environment variable ARBWIRE_NO_SUCH_KEY"):
        session.headers()


def _outcome(events, payload):  # type: ignore[no-untyped-def]
    try:
        return events(payload, 123)
    except ValueError as exc:
        return ("error", type(exc).__name__, str(exc))


@pytest.mark.skipif(IMPLEMENTATION != "c", reason=f"arbwire._sbe not loaded: {IMPLEMENTATION}")
@settings(max_examples=300)
@given(st.data())
def test_the_c_event_path_builds_what_the_reference_builds(data):
    """Same events, same None, same errors, on real-shaped, damaged and arbitrary messages."""
    session = BinanceSbeSession(["BTC-USDT", "ETH-USDT"], api_key="k")
    mantissa = st.integers(0, 10**15)
    symbol = st.sampled_from(["BTCUSDT", "ETHUSDT", "SOLUSDT"])
    levels = st.lists(st.tuples(mantissa, mantissa), max_size=4)
    message = data.draw(
        st.one_of(
            st.builds(wire.encode_best_bid_ask, st.integers(0, 2**60), st.integers(0, 2**60), st.tuples(mantissa, mantissa), st.tuples(mantissa, mantissa), symbol),
            st.builds(wire.encode_depth_diff, st.integers(0, 2**60), st.integers(0, 2**40), st.integers(0, 2**40), levels, levels, symbol),
            st.builds(wire.encode_depth_snapshot, st.integers(0, 2**60), st.integers(0, 2**40), levels, levels, symbol),
            st.builds(wire.encode_trades, st.integers(0, 2**60), st.integers(0, 2**60), st.lists(st.tuples(st.integers(0, 2**40), mantissa, mantissa, st.booleans()), max_size=3), symbol),
            st.binary(max_size=90),
        )
    )
    cut = data.draw(st.integers(0, len(message)))
    at = data.draw(st.integers(0, max(0, len(message) - 1)))
    damaged = message[:at] + bytes([message[at] ^ 0xA5]) + message[at + 1 :] if message else b""
    for payload in (message, message[:cut], damaged):
        before = set(session._seen)
        got = _outcome(session._events, payload)
        seen_by_c = set(session._seen)
        session._seen.clear()
        session._seen.update(before)
        expected = _outcome(session._events_py, payload)
        assert got == expected
        assert seen_by_c == session._seen  # the symbol is marked as having sent data
