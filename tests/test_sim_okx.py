"""The OKX simulator over real sockets on 127.0.0.1, checked with the stdlib only.

Checksums are recomputed here with an implementation written from the protocol
reference (§3.6), over a book kept from the strings exactly as received.
"""

from __future__ import annotations

import asyncio
import json
import re
import zlib
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from arbwire.sim.okx import okx_checksum
from arbwire.sim.runner import Simulators, start_simulators
from arbwire.sim.server import FaultError
from helpers.ws import drain, read_json, read_until, sims_fixture

TICK_MS = 20
CANONICAL = re.compile(r"^(0|[1-9]\d*)(\.\d*[1-9])?$")  # "60000.1", "0.5", never "0.50"


def crc(bids: list[tuple[str, str]], asks: list[tuple[str, str]]) -> int:
    parts: list[str] = []
    b, a = bids[:25], asks[:25]
    for i in range(max(len(b), len(a))):
        if i < len(b):
            parts += [b[i][0], b[i][1]]
        if i < len(a):
            parts += [a[i][0], a[i][1]]
    value = zlib.crc32(":".join(parts).encode())
    return value - 2**32 if value >= 2**31 else value


class Book:
    """A book kept as the strings were received, keyed by exact price."""

    def __init__(self, strict: bool = True) -> None:
        self.strict = strict  # False once a gap is expected: deletes may name unknown levels
        self.bids: dict[Decimal, tuple[str, str]] = {}
        self.asks: dict[Decimal, tuple[str, str]] = {}

    def apply(self, data: dict[str, Any]) -> None:
        for side, levels in ((self.bids, data["bids"]), (self.asks, data["asks"])):
            for px, sz, zero, count in levels:
                assert zero == "0" and CANONICAL.match(px) and CANONICAL.match(sz)
                if sz == "0":
                    assert count == "0"
                    removed = side.pop(Decimal(px), None)
                    assert removed is not None or not self.strict, f"delete of unknown {px}"
                else:
                    assert int(count) >= 1
                    side[Decimal(px)] = (px, sz)

    def checksum(self) -> int:
        bids = [self.bids[p] for p in sorted(self.bids, reverse=True)]
        asks = [self.asks[p] for p in sorted(self.asks)]
        return crc(bids, asks)

    def crossed(self) -> bool:
        return bool(self.bids and self.asks) and max(self.bids) >= min(self.asks)


sims = sims_fixture(("okx",), tick_ms=TICK_MS, seed=5)


def subscribe(*args: tuple[str, str], op: str = "subscribe", req_id: str | None = "7") -> str:
    msg: dict[str, Any] = {"op": op, "args": [{"channel": c, "instId": i} for c, i in args]}
    if req_id is not None:
        msg["id"] = req_id
    return json.dumps(msg)


def books_of(frames: list[Any], inst: str = "BTC-USDT") -> list[dict[str, Any]]:
    return [f for f in frames if f.get("arg", {}).get("channel") == "books"
            and f["arg"]["instId"] == inst and "data" in f]


def test_checksum_matches_the_reference_vectors() -> None:
    assert crc([("3366.1", "7"), ("3366", "6")], [("3366.8", "9"), ("3368", "8")]) == -1881014294
    assert crc([("3366.1", "7")], [("3366.8", "9"), ("3368", "8"), ("3372", "8")]) == 831078360
    assert okx_checksum([("3366.1", "7"), ("3366", "6")], [("3366.8", "9"), ("3368", "8")]) == -1881014294


async def test_snapshot_then_chained_updates_with_true_checksums(sims: Simulators, http) -> None:
    ep = sims.endpoints["okx"]
    async with http.ws_connect(ep.ws_url + "/ws/v5/public") as ws:
        await ws.send_str(subscribe(("books", "BTC-USDT"), ("bbo-tbt", "BTC-USDT")))
        frames = await read_json(ws, 1.0)
        acks = [f for f in frames if f.get("event") == "subscribe"]
        assert [a["arg"] for a in acks] == [{"channel": "books", "instId": "BTC-USDT"},
                                             {"channel": "bbo-tbt", "instId": "BTC-USDT"}]
        assert all(a["id"] == "7" and re.match(r"^[0-9a-f]{8}$", a["connId"]) for a in acks)
        books = books_of(frames)
        assert books[0]["action"] == "snapshot" and books[0]["data"][0]["prevSeqId"] == -1
        assert all(b["action"] == "update" for b in books[1:]) and len(books) > 20
        book = Book()
        last_seq = None
        steps = []
        for msg in books:
            (data,) = msg["data"]
            assert set(data) == {"asks", "bids", "ts", "checksum", "prevSeqId", "seqId"}
            assert isinstance(data["ts"], str) and len(data["ts"]) == 13
            if last_seq is not None:
                assert data["prevSeqId"] == last_seq
                steps.append(data["seqId"] - last_seq)
            book.apply(data)
            assert data["checksum"] == book.checksum() and data["checksum"] != 0
            assert not book.crossed()
            last_seq = data["seqId"]
        assert all(1 <= s <= 90 for s in steps) and len(set(steps)) > 5
        # The REST book is a snapshot of the same sequence.
        async with http.get(ep.rest_url + "/api/v5/market/books", params={"instId": "BTC-USDT", "sz": "400"}) as r:
            rest = json.loads(await r.text())
        assert rest["code"] == "0"
        (snap,) = rest["data"]
        if snap["seqId"] > last_seq:
            for msg in books_of(await read_until(ws, lambda f: books_of([f]) and f["data"][0]["seqId"] >= snap["seqId"])):
                assert msg["data"][0]["prevSeqId"] == last_seq
                book.apply(msg["data"][0])
                last_seq = msg["data"][0]["seqId"]
        assert last_seq == snap["seqId"]
        expected = Book()
        expected.apply({"bids": snap["bids"], "asks": snap["asks"]})
        assert (book.bids, book.asks) == (expected.bids, expected.asks)


async def test_unknown_instrument_gets_60018(sims: Simulators, http) -> None:
    async with http.ws_connect(sims.endpoints["okx"].ws_url + "/ws/v5/public") as ws:
        await ws.send_str(subscribe(("books", "BTC-USDTT"), req_id=None))
        (err,) = await read_json(ws, 0.3)
    assert err["event"] == "error" and err["code"] == "60018" and "id" not in err
    assert "books" in err["msg"] and "BTC-USDTT" in err["msg"] and err["connId"]


async def test_rest_seeded_mode_without_snapshot_or_checksum(http) -> None:
    opts = {"okx": {"ws_snapshot": False, "checksum": False}}
    async with await start_simulators(("okx",), tick_ms=TICK_MS, venue_options=opts) as s:
        ep = s.endpoints["okx"]
        async with http.ws_connect(ep.ws_url + "/ws/v5/public") as ws:
            await ws.send_str(subscribe(("books", "ETH-USDT")))
            buffered = books_of(await read_json(ws, 0.2), "ETH-USDT")
            assert buffered[0]["action"] == "update", "no WS snapshot in this mode"
            async with http.get(ep.rest_url + "/api/v5/market/books", params={"instId": "ETH-USDT", "sz": "400"}) as r:
                (snap,) = json.loads(await r.text())["data"]
            assert snap["seqId"] >= buffered[0]["data"][0]["prevSeqId"]
            live = buffered + books_of(await read_json(ws, 0.3), "ETH-USDT")
            kept = [m["data"][0] for m in live if m["data"][0]["seqId"] > snap["seqId"]]
            assert kept[0]["prevSeqId"] <= snap["seqId"] < kept[0]["seqId"]
            book = Book()
            book.apply({"bids": snap["bids"], "asks": snap["asks"]})
            seq = snap["seqId"]
            for data in kept:
                assert data["prevSeqId"] == seq and data["checksum"] == 0
                book.apply(data)
                assert not book.crossed()
                seq = data["seqId"]
            async with http.get(ep.rest_url + "/api/v5/market/books", params={"instId": "ETH-USDT", "sz": "400"}) as r:
                (later,) = json.loads(await r.text())["data"]
            if later["seqId"] > seq:
                for msg in books_of(await read_until(ws, lambda f: books_of([f], "ETH-USDT") and f["data"][0]["seqId"] >= later["seqId"]), "ETH-USDT"):
                    book.apply(msg["data"][0])
                    seq = msg["data"][0]["seqId"]
            assert seq == later["seqId"]
            expected = Book()
            expected.apply({"bids": later["bids"], "asks": later["asks"]})
            assert book.bids == expected.bids and book.asks == expected.asks
        with pytest.raises(FaultError):
            s.venue("okx").bad_checksum("ETH-USDT")


async def test_skip_sequence_and_bad_checksum_each_hit_one_update(sims: Simulators, http) -> None:
    async with http.ws_connect(sims.endpoints["okx"].ws_url + "/ws/v5/public") as ws:
        await ws.send_str(subscribe(("books", "BTC-USDT"), ("books", "ETH-USDT")))
        first = await read_json(ws, 0.15)
        sims.venue("okx").skip_sequence("BTC-USDT")
        sims.venue("okx").bad_checksum("ETH-USDT")
        frames = first + await read_json(ws, 0.3)
    for inst in ("BTC-USDT", "ETH-USDT"):
        book, seq, breaks, mismatches = Book(strict=False), None, 0, 0
        for msg in books_of(frames, inst):
            data = msg["data"][0]
            if seq is not None and data["prevSeqId"] != seq:
                assert data["prevSeqId"] > seq  # the skipped update's seqId
                breaks += 1
            book.apply(data)
            if not breaks:  # after a gap this book is knowingly incomplete
                mismatches += data["checksum"] != book.checksum()
            seq = data["seqId"]
        if inst == "BTC-USDT":
            assert (breaks, mismatches) == (1, 0)
        else:
            assert (breaks, mismatches) == (0, 1)


async def test_reset_sequence_goes_backwards_once(sims: Simulators, http) -> None:
    async with http.ws_connect(sims.endpoints["okx"].ws_url + "/ws/v5/public") as ws:
        await ws.send_str(subscribe(("books", "BTC-USDT")))
        before = await read_json(ws, 0.1)
        sims.inject("okx", "reset_sequence", symbol="BTC-USDT")
        after = await read_json(ws, 0.2)
    datas = [m["data"][0] for m in books_of(before + after)]
    backwards = [d for d in datas if d["seqId"] < d["prevSeqId"]]
    assert len(backwards) == 1
    assert all(b["prevSeqId"] == a["seqId"] for a, b in zip(datas, datas[1:], strict=False))


async def test_text_ping_pong_and_idle_links_are_dropped(http) -> None:
    opts = {"okx": {"idle_timeout_s": 0.3}}
    async with await start_simulators(("okx",), tick_ms=TICK_MS, venue_options=opts) as s:
        s.model.freeze("ETH-USDT")  # a quiet instrument: no pushes after the snapshot
        url = s.endpoints["okx"].ws_url + "/ws/v5/public"
        async with http.ws_connect(url) as quiet, http.ws_connect(url) as pinger:
            await quiet.send_str(subscribe(("books", "ETH-USDT")))
            await pinger.send_str(subscribe(("books", "ETH-USDT")))
            loop = asyncio.get_running_loop()
            start = loop.time()
            pongs = 0
            while loop.time() - start < 0.7:
                await pinger.send_str("ping")
                pongs += (await read_json_text(pinger, "pong"))
                await asyncio.sleep(0.1)
            assert pongs >= 5
            assert not pinger.closed
            msgs = [m async for m in drain(quiet, 1)]
            assert msgs[-1].type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert quiet.close_code == 4004


async def test_strict_idle_rule_needs_client_messages(http) -> None:
    opts = {"okx": {"idle_timeout_s": 0.25, "idle_counts_pushes": False}}
    async with (
        await start_simulators(("okx",), tick_ms=TICK_MS, venue_options=opts) as s,
        http.ws_connect(s.endpoints["okx"].ws_url + "/ws/v5/public") as ws,
    ):
        await ws.send_str(subscribe(("books", "BTC-USDT")))  # a busy feed...
        msgs = [m async for m in drain(ws, 1)]
        assert len(msgs) > 5  # ...still closes: the client never spoke again
        assert msgs[-1].type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def read_json_text(ws: aiohttp.ClientWebSocketResponse, text: str) -> int:
    """Read frames until the literal ``text`` arrives; 1 if it did."""
    while True:
        msg = await ws.receive(timeout=1)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return 0
        if msg.data == text:
            return 1


async def test_no_change_heartbeat_keeps_the_sequence(http) -> None:
    opts = {"okx": {"heartbeat_s": 0.15}}
    async with await start_simulators(("okx",), tick_ms=TICK_MS, venue_options=opts) as s:
        s.model.freeze("BTC-USDT")
        await asyncio.sleep(0.05)
        async with http.ws_connect(s.endpoints["okx"].ws_url + "/ws/v5/public") as ws:
            await ws.send_str(subscribe(("books", "BTC-USDT")))
            datas = [m["data"][0] for m in books_of(await read_json(ws, 0.5))]
    snap, beats = datas[0], datas[1:]
    assert snap["prevSeqId"] == -1 and 2 <= len(beats) <= 4
    for beat in beats:
        assert beat["asks"] == [] and beat["bids"] == []
        assert beat["prevSeqId"] == beat["seqId"] == snap["seqId"]
        assert beat["checksum"] == snap["checksum"] != 0


async def test_notice_64008_then_close(sims: Simulators, http) -> None:
    async with http.ws_connect(sims.endpoints["okx"].ws_url + "/ws/v5/public") as ws:
        await asyncio.sleep(0.05)
        sims.inject("okx", "notice", close_after_s=0.1)
        msg = await ws.receive(timeout=1)
        notice = json.loads(msg.data)
        assert (notice["event"], notice["code"]) == ("notice", "64008") and notice["connId"]
        assert (await ws.receive(timeout=1)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_bbo_tbt_and_trades_pushes(sims: Simulators, http) -> None:
    async with http.ws_connect(sims.endpoints["okx"].ws_url + "/ws/v5/public") as ws:
        await ws.send_str(subscribe(("bbo-tbt", "ETH-USDT"), ("trades", "ETH-USDT")))
        frames = await read_json(ws, 0.6)
    bbo = [f["data"][0] for f in frames if f.get("arg", {}).get("channel") == "bbo-tbt" and "data" in f]
    trades = [f["data"][0] for f in frames if f.get("arg", {}).get("channel") == "trades" and "data" in f]
    assert len(bbo) > 3 and trades
    for d in bbo:
        assert set(d) == {"asks", "bids", "ts", "seqId"} and len(d["asks"]) == len(d["bids"]) == 1
        assert Decimal(d["bids"][0][0]) < Decimal(d["asks"][0][0])
    for t in trades:
        assert {"instId", "tradeId", "px", "sz", "side", "ts", "count", "source", "seqId"} == set(t)
        assert t["side"] in ("buy", "sell") and CANONICAL.match(t["px"]) and Decimal(t["sz"]) > 0
    ids = [int(t["tradeId"]) for t in trades]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_unsubscribe_stops_the_channel(sims: Simulators, http) -> None:
    async with http.ws_connect(sims.endpoints["okx"].ws_url + "/ws/v5/public") as ws:
        await ws.send_str(subscribe(("books", "BTC-USDT")))
        assert books_of(await read_json(ws, 0.1))
        await ws.send_str(subscribe(("books", "BTC-USDT"), op="unsubscribe", req_id="9"))
        frames = await read_until(ws, lambda f: f.get("event") == "unsubscribe")
        assert frames[-1]["id"] == "9" and frames[-1]["arg"]["instId"] == "BTC-USDT"
        assert await read_json(ws, 0.15) == []


async def test_rest_instruments_and_unknown_instrument(sims: Simulators, http) -> None:
    rest = sims.endpoints["okx"].rest_url
    async with http.get(rest + "/api/v5/public/instruments", params={"instType": "SPOT"}) as r:
        body = json.loads(await r.text())
    insts = {d["instId"]: d for d in body["data"]}
    assert body["code"] == "0" and set(insts) == {"BTC-USDT", "ETH-USDT"}
    btc = insts["BTC-USDT"]
    assert (btc["baseCcy"], btc["quoteCcy"], btc["tickSz"], btc["lotSz"], btc["state"]) == (
        "BTC", "USDT", "0.01", "0.0001", "live")
    async with http.get(rest + "/api/v5/market/books", params={"instId": "NOPE-USDT"}) as r:
        body = json.loads(await r.text())
    assert body["code"] == "51001" and body["data"] == []
    async with http.get(rest + "/api/v5/market/books", params={"instId": "BTC-USDT"}) as r:
        (one,) = json.loads(await r.text())["data"]
    assert len(one["bids"]) == len(one["asks"]) == 1  # OKX's default sz is 1
