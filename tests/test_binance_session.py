"""Binance session fed bytes: bad input, venue errors, planned disconnects, silent symbols."""

from __future__ import annotations

import pytest

from arbwire.model import BadFrame, BookUpdate, Quote, Trade, VenueError
from arbwire.record.importers import Kind, read_cryptofeed
from arbwire.venues.base import FetchSnapshot, Reconnect
from arbwire.venues.binance import BinanceSession


@pytest.fixture
def real_frames(real_data) -> list[bytes]:
    return [r.payload for r in read_cryptofeed(real_data / "cryptofeed" / "BINANCE.ws.1.0") if r.kind is Kind.RECV]


BAD = [
    b"{not json",
    b"",
    b'{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":"late","U":1,"u":2,"b":[],"a":[]}}',
    b'{"stream":"nknusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"U":1,"u":2,"b":[["1"]],"a":[]}}',
    b'{"stream":"nknusdt@bookTicker","data":{"u":5,"s":"NKNUSDT","b":1.5,"B":"1","a":"2","A":"1"}}',
    b'{"stream":"nknusdt@trade","data":{"e":"trade"}}',
    b'{"unexpected":true}',
    b"[1,2,3]",
]


@pytest.mark.parametrize("frame", BAD)
def test_bad_frames_are_counted_and_the_next_good_frame_still_decodes(frame, real_frames):
    session = BinanceSession(["NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"])
    out = session.on_frame(frame, 1)
    assert len(out) == 1 and isinstance(out[0], BadFrame)
    assert out[0].venue == "binance" and session.stats.bad_frames == 1
    good = session.on_frame(real_frames[0], 2)
    assert isinstance(good[0], BookUpdate) and good[0].symbol == "NKN-USDT"


def test_every_truncation_of_a_real_frame_is_a_bad_frame(real_frames):
    session = BinanceSession(["NKN-USDT"])
    frame = real_frames[0]
    for cut in range(0, len(frame) - 1, 7):
        out = session.on_frame(frame[:cut], 1)
        assert isinstance(out[0], BadFrame), cut
    assert session.stats.bad_frames == len(range(0, len(frame) - 1, 7))


def test_real_streams_decode_to_each_event_kind(real_frames):
    session = BinanceSession(["NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"])
    kinds = {type(e) for f in real_frames for e in session.on_frame(f, 1)}
    assert {BookUpdate, Quote, Trade} <= kinds
    assert session.stats.bad_frames == 0


def test_venue_error_reply_is_reported_plainly():
    session = BinanceSession(["BTC-USDT"])
    (err,) = session.on_frame(b'{"code":2,"msg":"Invalid request: invalid stream","id":1}', 5)
    assert isinstance(err, VenueError) and err.venue == "binance" and "invalid stream" in err.message


def test_server_shutdown_asks_for_a_new_link():
    session = BinanceSession(["BTC-USDT"])
    for frame in (b'{"e":"serverShutdown","E":1770123456789}', b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1}}'):
        (action,) = session.on_frame(frame, 5)
        assert isinstance(action, Reconnect)


def test_a_symbol_that_never_sends_data_is_reported_once(real_frames):
    session = BinanceSession(["NKN-USDT", "NOPE-USDT"], no_data_timeout_s=10)
    session.on_open(0)
    session.on_frame(real_frames[0], 1)
    assert session.on_timer(5 * 10**9, 1) == []
    (err,) = session.on_timer(11 * 10**9, 1)
    assert isinstance(err, VenueError) and err.symbol == "NOPE-USDT" and "no data" in err.message
    assert session.on_timer(20 * 10**9, 1) == []  # once


def test_snapshot_request_and_parse_name_the_symbol():
    session = BinanceSession(["BTC-USDT"])
    (fetch,) = session.snapshot_request("BTC-USDT")
    assert isinstance(fetch, FetchSnapshot) and fetch.url.endswith("/api/v3/depth?symbol=BTCUSDT&limit=1000")
    with pytest.raises(ValueError, match="binance BTC-USDT"):
        session.parse_snapshot("BTC-USDT", b'{"code":-1121,"msg":"Invalid symbol."}', 1)
