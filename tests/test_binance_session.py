"""Binance session fed bytes: bad input, venue errors, planned disconnects, silent symbols."""

from __future__ import annotations

import msgspec
import pytest

from arbwire.model import BadFrame, BookUpdate, Quote, Trade, VenueError
from arbwire.record.importers import Kind, read_cryptofeed, read_hftbacktest
from arbwire.symbols import GluedSymbols
from arbwire.venues.base import FetchSnapshot, Reconnect
from arbwire.venues.binance import BinanceSession
from helpers.sessions import count_fallbacks, events_like_two_step


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


def _recv(path) -> list[bytes]:
    return [r.payload for r in read_cryptofeed(path) if r.kind is Kind.RECV]


@pytest.mark.parametrize(
    ("capture", "symbols", "futures"),
    [
        ("hftbacktest", ["ETH-USDT"], False),
        ("cryptofeed/BINANCE.ws.1.0", ["NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"], False),
        ("cryptofeed/BINANCE_FUTURES.ws.1.0", None, True),
    ],
)
def test_typed_union_decodes_every_real_frame_like_the_two_step_reference(real_data, capture, symbols, futures):
    """The one-pass tagged union is a fast path only: on every real frame it must give
    exactly what the envelope-then-payload decode gives, and take no frame to the fallback."""
    if capture == "hftbacktest":
        frames = [r.payload for r in read_hftbacktest(real_data / "hftbacktest" / "binance_spot_ethusdt_20240808.gz")
                  if r.kind is Kind.RECV]
    else:
        frames = _recv(real_data / capture)
    if symbols is None:  # the futures capture: every symbol it carries
        names = {msgspec.json.decode(f)["stream"].partition("@")[0] for f in frames if b'"stream"' in f}
        symbols = [GluedSymbols(lower=True).common_name(n) for n in sorted(names)]
    typed = BinanceSession(symbols, futures=futures)
    reference = BinanceSession(symbols, futures=futures)
    fallbacks = count_fallbacks(typed)
    events = events_like_two_step(typed, reference, frames)
    typed_channels = (b"@depth@100ms\"", b"@bookTicker\"", b"@trade\"", b"@aggTrade\"")
    untyped = sum(1 for f in frames if not any(c in f[:60] for c in typed_channels))
    assert len(fallbacks) == untyped < len(frames) // 20  # acks and channels we don't subscribe (kline)
    assert events >= len(frames) - untyped
    assert typed.stats.bad_frames == reference.stats.bad_frames == 0


def test_frames_the_union_has_no_type_for_still_decode():
    """Another depth speed, a different key order, a venue-wide event: the two-step path."""
    session = BinanceSession(["BTC-USDT"])
    (upd,) = session.on_frame(b'{"stream":"btcusdt@depth","data":{"e":"depthUpdate","E":2,"U":7,"u":9,'
                              b'"b":[["1.5","2"]],"a":[]}}', 1)
    assert isinstance(upd, BookUpdate) and (upd.first_id, upd.last_id, upd.bids) == (7, 9, [("1.5", "2")])
    (q,) = session.on_frame(b'{"data":{"u":5,"s":"BTCUSDT","b":"1","B":"2","a":"3","A":"4"},'
                            b'"stream":"btcusdt@bookTicker"}', 1)
    assert isinstance(q, Quote) and (q.bid, q.ask_size, q.update_id) == ("1", "4", 5)
    (r,) = session.on_frame(b'{"stream":"!serverShutdown","data":{"e":"serverShutdown","E":1}}', 1)
    assert isinstance(r, Reconnect)
    assert session.on_frame(b'{"stream":"btcusdt@kline_1m","data":{"e":"kline"}}', 1) == []
    assert session.stats.unknown == 1 and session.stats.bad_frames == 0


def test_a_known_stream_with_a_malformed_payload_names_the_field():
    session = BinanceSession(["BTC-USDT"])
    (bad,) = session.on_frame(b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"a":"x",'
                              b'"p":"1","q":"1","T":1,"m":true}}', 1)
    assert isinstance(bad, BadFrame) and "$.a" in bad.reason
    (bad,) = session.on_frame(b'{"stream":"btcusdt@bookTicker"}', 1)
    assert isinstance(bad, BadFrame)


def test_a_session_with_no_symbols_still_reads_control_frames():
    session = BinanceSession([])
    assert session.on_frame(b'{"result":null,"id":1}', 1) == []
    assert session.on_frame(b'{"stream":"","data":{}}', 1) == []
    assert session.stats.unknown == 1 and session.stats.bad_frames == 0
    (bad,) = session.on_frame(b'{"stream":"btcusdt@trade","data":{"e":"trade"}}', 1)
    assert isinstance(bad, BadFrame) and "symbol" not in bad.reason


def test_the_union_refuses_what_the_two_step_path_refuses():
    frame = b'{"stream":"btcusdt@aggTrade","data":{"e":"aggTrade","E":1,"a":5,"p":"1","q":"1","T":1,"m":true},'
    for extra in (b'"id":[1]}', b'"code":"x"}', b'"msg":5}'):
        fast, ref = BinanceSession(["BTC-USDT"]), BinanceSession(["BTC-USDT"])
        (got,) = fast.on_frame(frame + extra, 1)
        assert isinstance(got, BadFrame) and got == ref._two_step(frame + extra, 1)[0]
    (ok,) = BinanceSession(["BTC-USDT"]).on_frame(frame + b'"id":7}', 1)
    assert isinstance(ok, Trade) and ok.trade_id == "5"


def test_a_symbol_given_twice_is_one_set_of_streams():
    session = BinanceSession(["BTC-USDT", "BTC-USDT"])
    (q,) = session.on_frame(b'{"stream":"btcusdt@bookTicker","data":{"u":5,"s":"BTCUSDT","b":"1","B":"2",'
                            b'"a":"3","A":"4"}}', 1)
    assert isinstance(q, Quote) and q.symbol == "BTC-USDT"
