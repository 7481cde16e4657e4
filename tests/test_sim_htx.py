"""The HTX simulator over real sockets on 127.0.0.1, checked with aiohttp and the stdlib.

Every server frame must be gzip binary; numbers are decoded with ``parse_float=Decimal``
so a book rebuilt from the wire can be compared exactly with the model's.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from arbwire.sim.htx import htx_num
from arbwire.sim.market import Instrument
from arbwire.sim.runner import SERVERS, Simulators, start_simulators
from arbwire.sim.server import FaultError
from helpers import ws as client
from helpers.ws import receive_by, sims_fixture

TICK_MS = 20
JSON_NUMBER = re.compile(r"^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$")
PEPE = Instrument("PEPE-USDT", Decimal("0.00001234"), Decimal("3000000"), tick=Decimal("0.00000001"),
                  lot=Decimal("1"))


sims = sims_fixture(("htx",), tick_ms=TICK_MS, seed=7)


def decode(msg: aiohttp.WSMessage) -> tuple[Any, str]:
    """(JSON with exact Decimals, text) of one server frame, which must be gzip binary."""
    assert msg.type == aiohttp.WSMsgType.BINARY, msg
    assert msg.data[:2] == b"\x1f\x8b"
    text = gzip.decompress(msg.data).decode()
    return json.loads(text, parse_float=Decimal), text


async def read(ws: aiohttp.ClientWebSocketResponse, seconds: float, texts: list[str] | None = None) -> list[Any]:
    out: list[Any] = []
    end = asyncio.get_running_loop().time() + seconds
    while (msg := await receive_by(ws, end)) is not None:
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            break
        body, text = decode(msg)
        out.append(body)
        if texts is not None:
            texts.append(text)
    return out


async def read_until(ws: aiohttp.ClientWebSocketResponse, pred: Callable[[Any], bool], seconds: float = 2.0) -> list[Any]:
    return await client.read_until(ws, pred, seconds, parse=lambda msg: decode(msg)[0])


def on(frames: list[Any], topic: str) -> list[dict[str, Any]]:
    return [f["tick"] for f in frames if f.get("ch") == topic]


class Book:
    def __init__(self) -> None:
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def apply(self, tick: dict[str, Any]) -> None:
        for key, side in (("bids", self.bids), ("asks", self.asks)):
            for price, size in tick.get(key, []):
                if size == 0:
                    side.pop(Decimal(price), None)
                else:
                    side[Decimal(price)] = Decimal(size)

    def crossed(self) -> bool:
        return bool(self.bids and self.asks) and max(self.bids) >= min(self.asks)


def model_top(sims: Simulators, symbol: str, n: int) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    book = sims.model.book("htx", symbol)
    bids = sorted(book.bids, reverse=True)[:n]
    asks = sorted(book.asks)[:n]
    return {p: book.bids[p] for p in bids}, {p: book.asks[p] for p in asks}


def test_numbers_print_like_java_doubles_with_the_exact_value() -> None:
    cases = {
        "710": "710.0", "0.1": "0.1", "0.00018": "1.8E-4", "40000000": "4.0E7", "0.001": "0.001",
        "33581495.08": "3.358149508E7", "0.0000009121": "9.121E-7", "60000.10": "60000.1",
        "0": "0.0", "9999999.5": "9999999.5", "-0.5": "-0.5",
    }
    for value, text in cases.items():
        assert htx_num(Decimal(value)) == text, value
        assert Decimal(text) == Decimal(value)
    assert htx_num(Decimal("9144"), bare_ints=True) == "9144"
    assert htx_num(Decimal("0"), bare_ints=True) == "0"
    assert htx_num(Decimal("0.00018"), bare_ints=True) == "1.8E-4"


async def test_acks_errors_and_every_frame_gzip_binary(sims: Simulators, http) -> None:
    ep = sims.endpoints["htx"]
    async with http.ws_connect(ep.ws_url + "/feed") as ws:
        await ws.send_str(json.dumps({"sub": "market.btcusdt.mbp.150", "id": "id1"}))
        await ws.send_str(json.dumps({"sub": ["market.ethusdt.mbp.5", "market.nopeusdt.mbp.5"], "id": 5}))
        await ws.send_str(json.dumps({"sub": "market.btcusdt.mbp.7", "id": "x"}))
        await ws.send_str(json.dumps({"sub": "market.btcusdt.bbo", "id": "y"}))  # a /ws topic
        await ws.send_str("hello")
        await ws.send_str(json.dumps({"unsub": "market.btcusdt.mbp.5", "id": "u"}))
        frames = await read(ws, 0.2)
        control = [f for f in frames if "ch" not in f]
        assert control[0] == {"id": "id1", "status": "ok", "subbed": "market.btcusdt.mbp.150",
                              "ts": control[0]["ts"]}
        assert control[1]["id"] == 5 and control[1]["subbed"] == "market.ethusdt.mbp.5"
        errors = [f for f in control if f.get("status") == "error"]
        for err in errors:
            assert set(err) <= {"status", "ts", "id", "err-code", "err-msg"} and err["err-code"] == "bad-request"
            assert isinstance(err["ts"], int) and err["ts"] > 1_600_000_000_000
        assert [(e.get("id"), e["err-msg"]) for e in errors] == [
            (5, "invalid symbol nopeusdt"),
            ("x", "invalid topic market.btcusdt.mbp.7"),
            ("y", "invalid topic market.btcusdt.bbo"),
            (None, "not json string"),
            ("u", "unsub with not subbed topic"),
        ]
        assert on(frames, "market.btcusdt.mbp.150") and on(frames, "market.ethusdt.mbp.5")
        await ws.send_str(json.dumps({"unsub": "market.btcusdt.mbp.150", "id": "u2"}))
        frames = await read_until(ws, lambda f: f.get("unsubbed") == "market.btcusdt.mbp.150")
        assert frames[-1]["id"] == "u2" and frames[-1]["status"] == "ok"
        later = await read(ws, 0.15)
        assert not on(later, "market.btcusdt.mbp.150") and on(later, "market.ethusdt.mbp.5")


async def test_mbp150_chain_late_rep_alignment_and_idle_pushes(sims: Simulators, http) -> None:
    topic = "market.btcusdt.mbp.150"
    sims.inject("htx", "late_rep", symbol="BTC-USDT", delay_s=0.15)
    async with http.ws_connect(sims.endpoints["htx"].ws_url + "/feed") as ws:
        await ws.send_str(json.dumps({"sub": topic, "id": "s"}))
        await ws.send_str(json.dumps({"req": topic, "id": "r"}))
        texts: list[str] = []
        frames = await read_until(ws, lambda f: "rep" in f)
        frames += await read(ws, 0.3, texts)
        rep = next(f for f in frames if "rep" in f)
        assert rep["id"] == "r" and rep["status"] == "ok" and rep["rep"] == topic and isinstance(rep["ts"], int)
        assert set(rep["data"]) == {"seqNum", "bids", "asks"}
        snap = rep["data"]["seqNum"]
        ticks = on(frames, topic)
        before_rep = on(frames[: frames.index(rep)], topic)
        assert before_rep and before_rep[-1]["seqNum"] > snap, "the rep is older than increments already sent"
        for t in ticks:
            assert set(t) == {"seqNum", "prevSeqNum", "bids", "asks"}  # both sides, always
        steps = [b["seqNum"] - a["seqNum"] for a, b in zip(ticks, ticks[1:], strict=False)]
        assert all(b["prevSeqNum"] == a["seqNum"] for a, b in zip(ticks, ticks[1:], strict=False))
        assert len(set(steps)) > 5 and min(steps) > 0
        # align as the docs say: drop seqNum <= snapshot, the first kept chains from it
        kept = [t for t in ticks if t["seqNum"] > snap]
        assert kept[0]["prevSeqNum"] == snap
        book = Book()
        book.apply(rep["data"])
        for t in kept:
            book.apply(t)
            assert not book.crossed()
        sims.model.freeze("BTC-USDT")
        idle = on(await read(ws, 0.15), topic)
        for t in idle:
            book.apply(t)
        tail = on(await read(ws, 0.15), topic)
        assert len(tail) >= 4
        for t in tail:
            assert t == {"seqNum": t["seqNum"], "prevSeqNum": t["seqNum"], "bids": [], "asks": []}
        assert (book.bids, book.asks) == model_top(sims, "BTC-USDT", 150)
        # numbers are JSON numbers, integral ones bare as in the captures (deletes are 0)
        for text in texts:
            assert '"[' not in text and not re.search(r'\[\s*"', text)
        assert any(",0]" in text for text in texts)


async def test_mbp5_is_the_top5_view_one_side_per_tick(sims: Simulators, http) -> None:
    topic = "market.ethusdt.mbp.5"
    async with http.ws_connect(sims.endpoints["htx"].ws_url + "/feed") as ws:
        await ws.send_str(json.dumps({"sub": topic, "id": 1}))
        await read(ws, 0.05)
        await ws.send_str(json.dumps({"req": topic, "id": 2}))
        frames = await read(ws, 0.5)
        rep = next(f for f in frames if "rep" in f)
        ticks = on(frames, topic)
        assert all(b["prevSeqNum"] == a["seqNum"] for a, b in zip(ticks, ticks[1:], strict=False))
        assert any(set(t) == {"seqNum", "prevSeqNum", "bids"} for t in ticks)
        assert any(set(t) == {"seqNum", "prevSeqNum", "asks"} for t in ticks)
        book = Book()
        book.apply(rep["data"])
        assert len(book.bids) == len(book.asks) == 5
        snap = rep["data"]["seqNum"]
        kept = [t for t in ticks if t["seqNum"] > snap]
        assert kept[0]["prevSeqNum"] == snap
        for t in kept:
            book.apply(t)
            assert len(book.bids) == len(book.asks) == 5 and not book.crossed()
        sims.model.freeze("ETH-USDT")
        for t in on(await read(ws, 0.1), topic):
            book.apply(t)
        assert on(await read(ws, 0.1), topic) == []  # 5/20 are silent when nothing changes
        assert (book.bids, book.asks) == model_top(sims, "ETH-USDT", 5)


async def test_skip_sequence_and_empty_diff(sims: Simulators, http) -> None:
    btc, eth = "market.btcusdt.mbp.150", "market.ethusdt.mbp.150"
    async with http.ws_connect(sims.endpoints["htx"].ws_url + "/feed") as ws:
        await ws.send_str(json.dumps({"sub": [btc, eth], "id": "a"}))
        frames = await read(ws, 0.1)
        sims.venue("htx").skip_sequence("BTC-USDT")
        sims.inject("htx", "empty_diff", symbol="ETH-USDT")
        frames += await read(ws, 0.2)
    for topic, want_breaks in ((btc, 1), (eth, 0)):
        ticks = on(frames, topic)
        breaks = [b for a, b in zip(ticks, ticks[1:], strict=False) if b["prevSeqNum"] != a["seqNum"]]
        assert len(breaks) == want_breaks, topic
        for b in breaks:
            assert b["prevSeqNum"] > ticks[ticks.index(b) - 1]["seqNum"]  # the unsent increment's seqNum
    empties = [t for t in on(frames, eth) if t["bids"] == t["asks"] == [] and t["seqNum"] > t["prevSeqNum"]]
    assert len(empties) == 1
    with pytest.raises(FaultError):
        sims.inject("htx", "skip_sequence", symbol="XRP-USDT")
    with pytest.raises(FaultError):
        sims.inject("htx", "checksum")


async def test_req_rate_limit_levels_and_paths(sims: Simulators, http) -> None:
    ep = sims.endpoints["htx"]
    async with http.ws_connect(ep.ws_url + "/feed") as ws:
        await ws.send_str(json.dumps({"req": "market.btcusdt.mbp.20", "id": "a"}))
        await ws.send_str(json.dumps({"req": "market.btcusdt.mbp.150", "id": "b"}))
        first = await read(ws, 0.05)
        assert first[0]["rep"] == "market.btcusdt.mbp.20" and len(first[0]["data"]["bids"]) == 20
        assert first[1] == {"status": "error", "ts": first[1]["ts"], "id": "b", "err-code": "bad-request",
                            "err-msg": "429 too many request"}
        await asyncio.sleep(0.11)
        await ws.send_str(json.dumps({"req": "market.btcusdt.mbp.400", "id": "c"}))
        (null,) = await read(ws, 0.05)
        assert null["rep"] == "market.btcusdt.mbp.400" and null["status"] == "ok" and null["data"] is None
    async with http.ws_connect(ep.ws_url + "/ws") as ws:
        await ws.send_str(json.dumps({"sub": "market.btcusdt.mbp.150", "id": "d"}))
        await ws.send_str(json.dumps({"req": "market.btcusdt.mbp.150", "id": "e"}))
        errs = await read(ws, 0.05)
        assert [e["err-msg"] for e in errs] == ["invalid topic market.btcusdt.mbp.150"] * 2
    async with http.get(ep.rest_url + "/v1/common/symbols") as r:
        body = json.loads(await r.text(), parse_float=Decimal)
    btc = next(d for d in body["data"] if d["symbol"] == "btcusdt")
    assert body["status"] == "ok" and {d["symbol"] for d in body["data"]} == {"btcusdt", "ethusdt"}
    assert (btc["base-currency"], btc["quote-currency"], btc["price-precision"], btc["amount-precision"],
            btc["state"], btc["min-order-amt"]) == ("btc", "usdt", 2, 4, "online", Decimal("0.0001"))
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(ep.ws_url + "/ws/v2")


async def test_server_pings_and_drops_a_link_after_two_missed_pongs(http) -> None:
    opts = {"htx": {"ping_interval_s": 0.1}}
    async with await start_simulators(("htx",), tick_ms=TICK_MS, venue_options=opts) as s:
        url = s.endpoints["htx"].ws_url
        async with http.ws_connect(url + "/ws") as mute, http.ws_connect(url + "/feed") as polite:
            await polite.send_str(json.dumps({"pong": "abc"}))
            pings: list[int] = []
            loop = asyncio.get_running_loop()
            end = loop.time() + 0.6
            errors = []
            while loop.time() < end:
                body, _ = decode(await polite.receive(timeout=1))
                if "ping" in body:
                    pings.append(body["ping"])
                    await polite.send_str(json.dumps({"pong": body["ping"]}))
                else:
                    errors.append(body)
            assert len(pings) >= 4 and pings == sorted(set(pings)) and pings[0] > 1_600_000_000_000
            assert errors[0]["err-msg"] == "invalid ping"
            assert not polite.closed
            got = []
            while True:
                msg = await mute.receive(timeout=1)
                if msg.type != aiohttp.WSMsgType.BINARY:
                    break
                got.append(decode(msg)[0])
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert [list(g) for g in got] == [["ping"], ["ping"]]  # closed at the third ping time


async def test_ws_depth_bbo_and_trades(http) -> None:
    opts = {"htx": {"depth_interval_s": 0.1}}
    async with (
        await start_simulators(("htx",), ("BTC-USDT", PEPE), tick_ms=TICK_MS, seed=3,  # type: ignore[arg-type]
                               venue_options=opts) as s,
        http.ws_connect(s.endpoints["htx"].ws_url + "/ws") as ws,
    ):
        await ws.send_str(json.dumps({"sub": [
            "market.pepeusdt.depth.step0", "market.btcusdt.bbo", "market.btcusdt.trade.detail",
            "market.pepeusdt.trade.detail"], "id": "w"}))
        texts: list[str] = []
        frames = await read(ws, 0.8, texts)
        s.model.freeze("PEPE-USDT")
        await read(ws, 0.1)
        (last,) = on(await read(ws, 0.13), "market.pepeusdt.depth.step0")[-1:]
    depth = on(frames, "market.pepeusdt.depth.step0")
    assert len(depth) >= 5
    versions = [d["version"] for d in depth]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)
    for d in depth:
        assert set(d) == {"bids", "asks", "version", "ts"}
        bids, asks = [p for p, _ in d["bids"]], [p for p, _ in d["asks"]]
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    bids, asks = model_top(s, "PEPE-USDT", 150)
    assert {p: q for p, q in last["bids"]} == bids and {p: q for p, q in last["asks"]} == asks
    depth_text = next(t for t in texts if t.startswith('{"ch":"market.pepeusdt.depth.step0"'))
    assert re.search(r"\[\d\.\d+E-5,", depth_text), "tiny prices go out in exponent form"
    assert re.search(r",\d+\.0\]", depth_text), "integral sizes print as 3000000.0"
    bbo = on(frames, "market.btcusdt.bbo")
    assert len(bbo) > 3
    for q in bbo:
        assert set(q) == {"seqId", "ask", "askSize", "bid", "bidSize", "quoteTime", "symbol"}
        assert q["symbol"] == "btcusdt" and q["bid"] < q["ask"] and q["bidSize"] > 0
    trades = [d for ch in ("market.btcusdt.trade.detail", "market.pepeusdt.trade.detail")
              for t in on(frames, ch) for d in t["data"]]
    assert len(trades) > 3
    for t in trades:
        assert set(t) == {"id", "ts", "tradeId", "amount", "price", "direction", "isRpiTrade"}
        assert isinstance(t["id"], int) and t["id"] > 10**25 and t["direction"] in ("buy", "sell")
        assert isinstance(t["amount"], Decimal) and t["amount"] > 0
    ids = [t["tradeId"] for t in trades]
    assert len(set(ids)) == len(ids)
    for text in texts:  # every price and size is a JSON number literal, never a string
        for num in re.findall(r'"(?:price|amount|ask|bid|askSize|bidSize)":([^,}]+)', text):
            assert JSON_NUMBER.match(num), num


async def test_registered_and_faults_by_name(sims: Simulators) -> None:
    assert SERVERS["htx"].__name__ == "HtxServer"
    server = sims.venue("htx")
    assert {"late_rep", "empty_diff", "skip_sequence", "drop_connections", "stall", "send_raw"} <= server.faults
    sims.inject("htx", "late_rep", delay_s=0.2, count=2)
    server.late_rep(0.1)  # type: ignore[attr-defined]
    with pytest.raises(FaultError):
        sims.inject("htx", "empty_diff", symbol="BTC-USDT", levels=7)
    assert sims.inject("htx", "drop_connections") == 0
