"""HTX on real traffic: the 2021 cryptofeed capture (depth.step0, trades, pings) and the
2020 tardis ``mbp.150`` excerpt whose ``req`` reply arrives after newer increments."""

from __future__ import annotations

import gzip
import json
import re
from decimal import Decimal

import msgspec
import pytest

from arbwire.feed import VenueFeed
from arbwire.model import BookUpdate, Side, SyncState, Trade
from arbwire.numbers import to_units
from arbwire.record.importers import Kind, read_cryptofeed
from arbwire.sync import BookSync
from arbwire.venues import htx
from arbwire.venues.base import Send
from arbwire.venues.htx import HtxSession

CAPTURE_SYMBOLS = [
    "TRIO-ETH", "BOR-USDT", "OMG-BTC", "XVG-ETH", "YFI-HUSD",
    "ZEN-ETH", "DOGE-ETH", "FIL3S-USDT", "PROPY-ETH", "NEST-ETH",
]  # fmt: skip
PLAIN = re.compile(r"^\d+(\.\d+)?$")


def _capture(real_data):
    return list(read_cryptofeed(real_data / "cryptofeed" / "HUOBI.ws.44.0"))


def _wire(payload: bytes) -> dict:
    """Independent decode: gzip + json with every number as an exact Decimal."""
    return json.loads(gzip.decompress(payload), parse_float=Decimal, parse_int=Decimal)


def _exact(levels, wire_levels) -> None:
    assert len(levels) == len(wire_levels)
    for (price, size), (wp, ws) in zip(levels, wire_levels, strict=True):
        assert PLAIN.match(price) and PLAIN.match(size), (price, size)
        assert Decimal(price) == wp and Decimal(size) == ws, ((price, size), (wp, ws))
        to_units(price), to_units(size)  # the book's own conversion accepts them


def test_every_frame_decompresses_and_decodes_exactly(real_data):
    session = HtxSession(CAPTURE_SYMBOLS, book_channel="depth")
    books = trades = pings = acks = 0
    for record in _capture(real_data):
        if record.kind is not Kind.RECV:
            continue
        assert record.payload[:2] == b"\x1f\x8b"  # binary gzip, as HTX sends every frame
        wire = _wire(record.payload)
        out = session.on_frame(record.payload, record.recv_ns)
        if "ch" in wire and ".depth." in wire["ch"]:
            (upd,) = out
            assert isinstance(upd, BookUpdate) and upd.is_snapshot
            assert upd.symbol == session.names.to_common(wire["ch"].split(".")[1])
            assert upd.last_id == wire["tick"]["version"]
            _exact(upd.bids, wire["tick"]["bids"])
            _exact(upd.asks, wire["tick"]["asks"])
            books += 1
        elif "ch" in wire:
            assert len(out) == len(wire["tick"]["data"])
            for tr, item in zip(out, wire["tick"]["data"], strict=True):
                assert isinstance(tr, Trade)
                assert tr.trade_id == str(item["tradeId"])
                assert tr.side is (Side.BUY if item["direction"] == "buy" else Side.SELL)
                assert Decimal(tr.price) == item["price"] and Decimal(tr.size) == item["amount"]
                assert PLAIN.match(tr.price) and PLAIN.match(tr.size)
                assert tr.venue_ts_ns == int(item["ts"]) * 1_000_000
                trades += 1
        elif "ping" in wire:
            pings += 1
        else:
            assert wire["status"] == "ok" and "subbed" in wire
            assert out == []
            acks += 1
    assert (books, trades, pings, acks) == (292, 73, 6, 20)
    assert session.stats.bad_frames == 0 and session.stats.unknown == 0
    assert session.stats.frames == 292 + 44 + 6 + 20


def test_exponent_numbers_of_the_capture_become_plain_text(real_data):
    """TRIO/ETH prices are 9.121E-7 on the wire; sizes like 4.0E7 and 188358.0 occur too."""
    session = HtxSession(CAPTURE_SYMBOLS, book_channel="depth")
    texts: dict[str, str] = {}
    for record in _capture(real_data):
        if record.kind is Kind.RECV:
            for item in session.on_frame(record.payload, record.recv_ns):
                if isinstance(item, BookUpdate):
                    for price, size in item.bids + item.asks:
                        texts[price] = texts[size] = ""
    assert "0.0000009121" in texts  # 9.121E-7
    assert "40000000" in texts  # 4.0E7
    assert "188358.0" in texts
    assert "0.00000000010" in texts  # 1.0E-10
    assert not any("E" in t or "e" in t for t in texts)


def test_books_are_never_crossed_and_every_symbol_syncs(real_data):
    session = HtxSession(CAPTURE_SYMBOLS, book_channel="depth")
    crossed = []
    applied = []

    def on_book(sync: BookSync, upd: BookUpdate) -> None:
        applied.append(upd.symbol)
        if sync.book.is_crossed():
            crossed.append(upd)

    feed = VenueFeed(session, on_book=on_book)
    actions = []
    for record in _capture(real_data):
        if record.kind is Kind.RECV:
            actions += feed.on_frame(record.payload, record.recv_ns)
    assert crossed == []
    assert len(applied) == 292
    assert set(applied) == set(CAPTURE_SYMBOLS)
    for symbol, sync in feed.syncs.items():
        assert sync.state is SyncState.SYNCED, (symbol, sync.reason)
        assert sync.crossed == 0 and sync.resyncs == 0
        assert len(sync.book.bids) > 0 and len(sync.book.asks) > 0
    assert all(isinstance(a, Send) and a.text.startswith('{"pong":') for a in actions)


def test_every_ping_is_answered_first_with_its_own_number(real_data):
    """The recording holds the pong the reference client sent after each ping: match it exactly."""
    session = HtxSession(CAPTURE_SYMBOLS, book_channel="depth")
    records = _capture(real_data)
    answered = 0
    for i, record in enumerate(records):
        if record.kind is not Kind.RECV:
            continue
        wire = _wire(record.payload)
        out = session.on_frame(record.payload, record.recv_ns)
        if "ping" not in wire:
            assert not any(isinstance(o, Send) for o in out)
            continue
        sent = next(r for r in records[i + 1 :] if r.kind is Kind.SENT)
        assert isinstance(out[0], Send)
        assert out[0].text == sent.payload.decode()
        assert json.loads(out[0].text) == {"pong": int(wire["ping"])}
        answered += 1
    assert answered == 6
    assert session.pings == 6


class _Arrays(msgspec.Struct):
    bids: msgspec.Raw
    asks: msgspec.Raw


class _Frame(msgspec.Struct):
    tick: _Arrays


def _depth_arrays(real_data) -> list[tuple[bytes, msgspec.Raw, msgspec.Raw]]:
    """(payload, bids, asks) of every depth.step0 frame, the level arrays as sent."""
    out = []
    for record in _capture(real_data):
        text = gzip.decompress(record.payload) if record.kind is Kind.RECV else b""
        if b'"ch":"market.' in text and b".depth." in text and b'"tick"' in text:
            tick = msgspec.json.decode(text, type=_Frame).tick
            out.append((record.payload, tick.bids, tick.asks))
    return out


@pytest.mark.parametrize("cold", [True, False])
def test_every_depth_frame_decodes_like_the_careful_reference(real_data, monkeypatch, cold):
    """Same level text as ``_levels_careful`` on all 292 books, with empty and with warm
    literal tables, and never by falling back to it: the real books all take the fast path."""
    frames = _depth_arrays(real_data)
    assert len(frames) == 292
    careful = htx._levels_careful
    expected = [(careful(bids), careful(asks)) for _, bids, asks in frames]
    fallbacks = []
    monkeypatch.setattr(htx, "_levels_careful", lambda raw: fallbacks.append(raw) or careful(raw))
    if cold:
        htx._TEXTS.clear()
        htx._NORMALIZED.clear()
    session = HtxSession(CAPTURE_SYMBOLS, book_channel="depth")
    for (payload, bids, asks), (want_bids, want_asks) in zip(frames, expected, strict=True):
        assert (htx._levels(bids), htx._levels(asks)) == (want_bids, want_asks)
        (upd,) = session.on_frame(payload, 1)
        assert (upd.bids, upd.asks) == (want_bids, want_asks)
        assert all(type(p) is str and type(s) is str for p, s in upd.bids + upd.asks)
    assert fallbacks == []


def test_a_tiny_literal_table_changes_nothing(real_data, monkeypatch):
    """The table of literal texts is emptied when full; results stay the reference's."""
    monkeypatch.setattr(htx, "_TEXTS_MAX", 50)
    htx._TEXTS.clear()
    for _, bids, asks in _depth_arrays(real_data):
        assert htx._levels(bids) == htx._levels_careful(bids)
        assert htx._levels(asks) == htx._levels_careful(asks)
        assert len(htx._TEXTS) <= 50


def test_repeated_or_older_depth_version_is_dropped(real_data):
    session = HtxSession(CAPTURE_SYMBOLS, book_channel="depth")
    depth = [
        r.payload
        for r in _capture(real_data)
        if r.kind is Kind.RECV and b'"ch":"market.trioeth.depth.' in gzip.decompress(r.payload)
    ]
    assert len(depth) >= 3
    first = session.on_frame(depth[0], 1)
    second = session.on_frame(depth[1], 2)
    assert len(first) == 1 and len(second) == 1 and second[0].last_id > first[0].last_id
    assert session.on_frame(depth[1], 3) == []  # same version again
    assert session.on_frame(depth[0], 4) == []  # older version
    assert session.stale_depth == 2
    assert session.stats.bad_frames == 0


# -- tardis mbp.150 excerpt: req reply older than buffered increments -------------------


def _tardis(real_data) -> list[bytes]:
    path = real_data / "fixtures" / "htx" / "tardis_spot_mbp150_incremental_and_req_2020.jsonl"
    return [line.encode() for line in path.read_text().splitlines() if line.strip()]


def _independent_book(rep: dict, increments: list[dict]) -> tuple[dict, dict]:
    """HTX's documented procedure, with Decimals, written apart from arbwire's code."""
    bids = {Decimal(p): Decimal(s) for p, s in rep["data"]["bids"]}
    asks = {Decimal(p): Decimal(s) for p, s in rep["data"]["asks"]}
    last = rep["data"]["seqNum"]
    started = False
    for inc in increments:
        tick = inc["tick"]
        if tick["seqNum"] <= last:
            continue
        assert tick["prevSeqNum"] == last, "fixture chain broken where it should hold"
        started = True
        for side, levels in ((bids, tick["bids"]), (asks, tick["asks"])):
            for p, s in levels:
                p, s = Decimal(p), Decimal(s)
                if s == 0:
                    side.pop(p, None)
                else:
                    side[p] = s
        last = tick["seqNum"]
    assert started
    return bids, asks


def _book_as_decimals(sync: BookSync) -> tuple[dict, dict]:
    bids = {Decimal(p): Decimal(s) for p, s in sync.book.bids.text_levels(10_000)}
    asks = {Decimal(p): Decimal(s) for p, s in sync.book.asks.text_levels(10_000)}
    return bids, asks


def _recv_ns(wire: dict) -> int:
    """Received 50 ms after the venue stamped it (the excerpt holds no receive times)."""
    return int(wire["ts"]) * 1_000_000 + 50_000_000


class _MbpArrays(msgspec.Struct):
    tick: _Arrays | None = None
    data: _Arrays | None = None


def test_mbp_levels_with_bare_ints_decode_like_the_careful_reference(real_data, monkeypatch):
    """Real mbp increments and the req reply print ``9144`` and ``0`` as bare ints: one pass
    over the levels turns them into text, no fallback to the careful path."""
    careful = htx._levels_careful
    fallbacks = []
    monkeypatch.setattr(htx, "_levels_careful", lambda raw: fallbacks.append(raw) or careful(raw))
    ints = 0
    for line in _tardis(real_data):
        frame = msgspec.json.decode(line, type=_MbpArrays)
        arrays = frame.tick or frame.data
        assert arrays is not None
        for raw in (arrays.bids, arrays.asks):
            ints += sum(1 for v in re.findall(rb"[\d.]+", bytes(raw)) if b"." not in v)
            assert htx._levels(raw) == careful(raw)
    assert ints > 0 and fallbacks == []


def test_req_reply_older_than_buffered_increments_aligns_backwards(real_data):
    lines = _tardis(real_data)
    wires = [json.loads(line, parse_float=Decimal, parse_int=int) for line in lines]
    increments, rep, late = wires[:4], wires[4], wires[5]
    assert rep["rep"] == "market.btcusdt.mbp.150"
    assert rep["data"]["seqNum"] == increments[2]["tick"]["prevSeqNum"]  # older than 2 buffered

    session = HtxSession(["BTC-USDT"])
    assert session.url() == "wss://api.huobi.pro/feed"
    feed = VenueFeed(session)
    subs = session.on_open(1)
    assert [json.loads(a.text)["sub"] for a in subs] == ["market.btcusdt.mbp.150"]

    sent: list[str] = []
    for line, wire in zip(lines[:4], increments, strict=True):
        sent += [a.text for a in feed.on_frame(gzip.compress(line), _recv_ns(wire))]
    sync = feed.syncs["BTC-USDT"]
    assert sync.state is SyncState.BUFFERING and len(sync.buffer) == 4
    (req_text,) = sent  # asked once, on the first increment, on this same link
    req = json.loads(req_text)
    assert req["req"] == "market.btcusdt.mbp.150"

    # the server echoes the id the client sent; the recorded reply carries the recorder's id
    reply = json.loads(lines[4])
    reply["id"] = req["id"]
    actions = feed.on_frame(gzip.compress(json.dumps(reply).encode()), _recv_ns(rep))
    assert actions == []
    assert sync.state is SyncState.SYNCED and sync.gaps == 0
    assert sync.last_id == increments[3]["tick"]["seqNum"]  # 160 -> 204 -> 226 applied
    assert sync.applied == 2  # increments with seqNum <= 160 dropped
    assert _book_as_decimals(sync) == _independent_book(rep, increments)
    assert not sync.book.is_crossed()

    # the last recorded increment is not chained (prevSeqNum 500 != 226): resync, req again
    actions = feed.on_frame(gzip.compress(lines[5]), _recv_ns(late))
    assert sync.state is SyncState.RESYNCING and sync.gaps == 1
    assert len(actions) == 1 and json.loads(actions[0].text)["req"] == "market.btcusdt.mbp.150"
    assert json.loads(actions[0].text)["id"] != req["id"]
    assert session.stats.bad_frames == 0


def test_reply_older_than_every_buffered_increment_asks_again(real_data):
    """Feed only increments 3 and 4 before the reply (seqNum 160): 204's prevSeqNum is 160, so
    it still aligns; drop increment 3 too and the reply is too old: ask again, keep the buffer."""
    lines = _tardis(real_data)
    session = HtxSession(["BTC-USDT"])
    feed = VenueFeed(session)
    session.on_open(1)
    (req,) = feed.on_frame(gzip.compress(lines[3]), 10)  # only seqNum 226 (prev 204)
    reply = json.loads(lines[4])
    reply["id"] = json.loads(req.text)["id"]
    again = feed.on_frame(gzip.compress(json.dumps(reply).encode()), 200_000_000)
    sync = feed.syncs["BTC-USDT"]
    assert sync.state is SyncState.BUFFERING and len(sync.buffer) == 1
    assert len(again) == 1 and json.loads(again[0].text)["req"] == "market.btcusdt.mbp.150"


@pytest.mark.parametrize("n_before", [1, 2, 3])
def test_alignment_holds_whatever_was_buffered_before_the_reply(real_data, n_before):
    """Reply after 1..3 increments; the rest arrive after it: the book is the same."""
    lines = _tardis(real_data)
    wires = [json.loads(line, parse_float=Decimal) for line in lines]
    session = HtxSession(["BTC-USDT"])
    feed = VenueFeed(session)
    session.on_open(1)
    sent = []
    for i in range(n_before):
        sent += feed.on_frame(gzip.compress(lines[i]), 10 + i)
    reply = json.loads(lines[4])
    reply["id"] = json.loads(sent[0].text)["id"]
    feed.on_frame(gzip.compress(json.dumps(reply).encode()), 20)
    for i in range(n_before, 4):
        feed.on_frame(gzip.compress(lines[i]), 30 + i)
    sync = feed.syncs["BTC-USDT"]
    assert sync.state is SyncState.SYNCED and sync.gaps == 0, sync.reason
    assert _book_as_decimals(sync) == _independent_book(wires[4], wires[:4])


# -- one-pass decode ------------------------------------------------------------------------


def _envelope_only(session: HtxSession) -> HtxSession:
    """``session`` with its tagged union refusing every frame: the envelope path, the reference."""

    def refuse(_text: object) -> None:
        raise msgspec.DecodeError("forced")

    session._decode = refuse  # type: ignore[method-assign]
    return session


def _counting_envelope(session: HtxSession) -> list[bytes]:
    taken: list[bytes] = []
    envelope = session._envelope

    def counting(text, recv_ns):  # type: ignore[no-untyped-def]
        taken.append(bytes(text))
        return envelope(text, recv_ns)

    session._envelope = counting  # type: ignore[method-assign]
    return taken


@pytest.mark.parametrize("capture", ["cryptofeed depth.step0", "tardis mbp.150"])
def test_typed_union_decodes_every_real_frame_like_the_envelope_reference(real_data, capture):
    """The one-pass union (one Struct per subscribed topic) is a fast path only: on every
    real frame it gives what the envelope-then-tick decode gives, and only frames that are
    not data of a subscribed topic (pings, the req reply) take the envelope path."""
    if capture.startswith("cryptofeed"):
        frames = [r.payload for r in _capture(real_data) if r.kind is Kind.RECV]
        make = lambda: HtxSession(CAPTURE_SYMBOLS, book_channel="depth", trades=True)  # noqa: E731
    else:
        frames = [gzip.compress(line) for line in _tardis(real_data)]
        make = lambda: HtxSession(["BTC-USDT"])  # noqa: E731
    typed, reference = make(), _envelope_only(make())
    taken = _counting_envelope(typed)
    events = 0
    for i, frame in enumerate(frames):
        got = typed.on_frame(frame, i)
        assert got == reference.on_frame(frame, i), frame[:80]
        events += len(got)
    data = [f for f in frames if b'"ch"' in gzip.decompress(f)[:10]]
    assert len(taken) == len(frames) - len(data) < len(frames) // 2
    assert events >= len(data) > 0
    assert typed.stats.bad_frames == reference.stats.bad_frames == 0
