"""The Binance simulator's SBE endpoint (exchange-protocols.md §1.13): byte layouts checked
against hand-computed bytes, and the live endpoint read with picows and a small reader
written here (it shares nothing with the encoder or with arbwire's client)."""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import aiohttp
import pytest
from picows import WSFrame, WSHandshakeError, WSListener, WSMsgType, WSTransport, ws_connect

from arbwire.sim import binance_sbe as sbe
from arbwire.sim.runner import Simulators, start_simulators
from helpers.ws import sims_fixture

TICK_MS = 20
KEY = "sbe-test-key"

sims = sims_fixture(("binance",), tick_ms=TICK_MS, seed=3,
                    venue_options={"binance": {"sbe": True, "sbe_api_keys": (KEY, "other-key")}})


# ----- hand-made bytes -----


def u8(v: int) -> bytes:
    return v.to_bytes(1, "little")


def u16(v: int) -> bytes:
    return v.to_bytes(2, "little")


def u32(v: int) -> bytes:
    return v.to_bytes(4, "little")


def i8(v: int) -> bytes:
    return v.to_bytes(1, "little", signed=True)


def i64(v: int) -> bytes:
    return v.to_bytes(8, "little", signed=True)


def header(block_length: int, template_id: int) -> bytes:
    return u16(block_length) + u16(template_id) + u16(1) + u16(0)


def test_mantissa_at_exponent_minus_8_is_exact_or_refused() -> None:
    assert sbe.mantissa8("60000.01000000") == 6000001000000
    assert sbe.mantissa8(Decimal("0.00000001")) == 1
    assert sbe.mantissa8("0") == 0 and sbe.mantissa8("0.00000000") == 0
    assert sbe.mantissa8("-1.5") == -150000000
    assert sbe.mantissa8(Decimal("1E+3")) == 100000000000
    assert sbe.mantissa8("1.10000000000000000000") == 110000000  # trailing zeros are exact
    assert sbe.mantissa8("92233720368.54775807") == 2**63 - 1
    for bad in ("0.000000001", "1.000000000000000000000000000001", "92233720368.54775808",
                "1e20", "NaN", "Infinity", "abc", ""):
        with pytest.raises(ValueError):
            sbe.mantissa8(bad)


def test_trades_stream_event_layout() -> None:
    msg = sbe.encode_trades(
        1_700_000_000_123_456, 1_700_000_000_123_400,
        [(12345, 6000001000000, 50000000, True), (12346, 6000002000000, 1, False)],
        "BTCUSDT",
    )
    expected = (
        bytes.fromhex("1200" "1027" "0100" "0000")  # blockLength 18, templateId 10000, schema 1, v0
        + i64(1_700_000_000_123_456) + i64(1_700_000_000_123_400) + b"\xf8\xf8"
        + bytes.fromhex("1900" "02000000")  # group: blockLength 25, numInGroup 2 (u32)
        + i64(12345) + i64(6000001000000) + i64(50000000) + b"\x01"
        + i64(12346) + i64(6000002000000) + i64(1) + b"\x00"
        + b"\x07BTCUSDT"
    )
    assert msg == expected
    assert len(msg) == 8 + 18 + 6 + 2 * 25 + 1 + 7
    assert msg[24:26] == b"\xf8\xf8"  # priceExponent, qtyExponent = -8 at root offsets 16, 17
    assert msg[26:28] == u16(25) and msg[28:32] == u32(2)


def test_best_bid_ask_stream_event_layout() -> None:
    msg = sbe.encode_best_bid_ask(
        1_700_000_000_000_001, 987654321, (6000000000000, 123000000), (6000001000000, 5), "ETHUSDT"
    )
    expected = (
        header(50, 10001)
        + i64(1_700_000_000_000_001) + i64(987654321) + i8(-8) + i8(-8)
        + i64(6000000000000) + i64(123000000) + i64(6000001000000) + i64(5)
        + u8(7) + b"ETHUSDT"
    )
    assert msg == expected
    assert msg[:2] == b"\x32\x00" and msg[2:4] == b"\x11\x27"
    assert len(msg) == 8 + 50 + 1 + 7


def test_depth_snapshot_stream_event_layout() -> None:
    bids = [(300000000000, 100000000), (299999000000, 250000000)]
    asks = [(300001000000, 70000000)]
    msg = sbe.encode_depth_snapshot(5, 42, bids, asks, "ETHUSDT")
    expected = (
        header(18, 10002) + i64(5) + i64(42) + i8(-8) + i8(-8)
        + u16(16) + u16(2)  # bids: 16-bit numInGroup here, unlike trades
        + i64(300000000000) + i64(100000000) + i64(299999000000) + i64(250000000)
        + u16(16) + u16(1) + i64(300001000000) + i64(70000000)
        + u8(7) + b"ETHUSDT"
    )
    assert msg == expected
    assert len(msg) == 8 + 18 + 4 + 32 + 4 + 16 + 8


def test_depth_diff_stream_event_layout_with_an_empty_side() -> None:
    msg = sbe.encode_depth_diff(7, 100, 103, [(1, 0)], [], "BTCUSDT")
    expected = (
        header(26, 10003) + i64(7) + i64(100) + i64(103) + i8(-8) + i8(-8)
        + u16(16) + u16(1) + i64(1) + i64(0)
        + u16(16) + u16(0)
        + u8(7) + b"BTCUSDT"
    )
    assert msg == expected
    assert msg[16:24] == i64(100) and msg[24:32] == i64(103) and msg[32:34] == b"\xf8\xf8"


def test_trades_from_json_groups_runs_of_one_taker_side() -> None:
    events = [
        {"e": "trade", "s": "BTCUSDT", "t": 1, "p": "60000.00000000", "q": "0.10000000", "m": True},
        {"e": "trade", "s": "BTCUSDT", "t": 2, "p": "59999.99000000", "q": "0.20000000", "m": True},
        {"e": "trade", "s": "BTCUSDT", "t": 3, "p": "60000.01000000", "q": "0.30000000", "m": False},
    ]
    msgs = sbe.trades_from_json(events, 99)
    assert [decode(m)["trades"] for m in msgs] == [
        [(1, 6000000000000, 10000000, True), (2, 5999999000000, 20000000, True)],
        [(3, 6000001000000, 30000000, False)],
    ]
    assert sbe.trades_from_json([], 99) == []


# ----- an independent reader -----


def decode(buf: bytes) -> dict[str, Any]:
    """One SBE message, walked by the blockLength values it carries (not fixed sizes)."""
    block, template, schema, version = struct.unpack_from("<HHHH", buf, 0)
    assert (schema, version) == (1, 0)
    pos = 8
    out: dict[str, Any] = {"template": template}

    def groups(n: int, wide: bool) -> list[list[tuple[int, ...]]]:
        nonlocal pos
        result = []
        for _ in range(n):
            if wide:
                size, count = struct.unpack_from("<HI", buf, pos)
                pos += 6
            else:
                size, count = struct.unpack_from("<HH", buf, pos)
                pos += 4
            fmt = "<qqqB" if wide else "<qq"
            entries = []
            for _ in range(count):
                entries.append(struct.unpack_from(fmt, buf, pos))
                pos += size
            result.append(entries)
        return result

    if template == 10000:
        out["time"], out["transact"], pe, qe = struct.unpack_from("<qqbb", buf, pos)
        pos += block
        (trades,) = groups(1, wide=True)
        out["trades"] = [(t, p, q, bool(m)) for t, p, q, m in trades]
    elif template == 10001:
        (out["time"], out["id"], pe, qe, *top) = struct.unpack_from("<qqbbqqqq", buf, pos)
        out["top"] = tuple(top)
        pos += block
    elif template == 10002:
        out["time"], out["id"], pe, qe = struct.unpack_from("<qqbb", buf, pos)
        pos += block
        out["bids"], out["asks"] = groups(2, wide=False)
    elif template == 10003:
        out["time"], out["U"], out["u"], pe, qe = struct.unpack_from("<qqqbb", buf, pos)
        pos += block
        out["bids"], out["asks"] = groups(2, wide=False)
    else:
        raise AssertionError(f"unknown templateId {template}")
    assert (pe, qe) == (-8, -8)
    n = buf[pos]
    out["symbol"] = buf[pos + 1 : pos + 1 + n].decode()
    assert pos + 1 + n == len(buf), "one message per frame, nothing after the symbol"
    return out


def mant(text: str) -> int:
    """Binance 8-decimal text -> mantissa, independently of the encoder."""
    whole, _, frac = text.partition(".")
    assert len(frac) <= 8
    return int(whole + frac.ljust(8, "0"))


# ----- a picows client -----


@dataclass
class Received:
    frames: asyncio.Queue[tuple[WSMsgType, bytes]] = field(default_factory=asyncio.Queue)


class Collector(WSListener):
    def __init__(self, into: Received) -> None:
        self.into = into

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CLOSE):
            self.into.frames.put_nowait((frame.msg_type, frame.get_payload_as_bytes()))

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.into.frames.put_nowait((WSMsgType.CLOSE, b""))


@asynccontextmanager
async def connect(url: str, key: str | None = KEY) -> AsyncIterator[tuple[WSTransport, Received]]:
    got = Received()
    headers = {"X-MBX-APIKEY": key} if key is not None else None
    transport, _ = await ws_connect(lambda: Collector(got), url, extra_headers=headers)
    try:
        yield transport, got
    finally:
        transport.disconnect()
        await transport.wait_disconnected()


async def frames_for(got: Received, seconds: float) -> list[tuple[WSMsgType, bytes]]:
    out = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        try:
            out.append(await asyncio.wait_for(got.frames.get(), left))
        except TimeoutError:
            break
        if out[-1][0] == WSMsgType.CLOSE:
            break
    return out


async def next_text(got: Received, seconds: float = 1.0) -> Any:
    """The next text frame as JSON; binary frames before it are passed over."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while True:
        kind, data = await asyncio.wait_for(got.frames.get(), end - loop.time())
        if kind == WSMsgType.TEXT:
            return json.loads(data)
        assert kind == WSMsgType.BINARY


def messages(frames: list[tuple[WSMsgType, bytes]]) -> list[dict[str, Any]]:
    assert all(kind == WSMsgType.BINARY for kind, _ in frames), "market data is binary only"
    return [decode(data) for _, data in frames]


Book = dict[str, dict[int, int]]


def apply(book: Book, bids: list[tuple[int, ...]], asks: list[tuple[int, ...]]) -> None:
    for side, levels in (("bids", bids), ("asks", asks)):
        for price, qty in levels:
            if qty == 0:
                book[side].pop(price, None)
            else:
                book[side][price] = qty


def from_rest(snap: dict[str, Any]) -> Book:
    return {side: {mant(p): mant(q) for p, q in snap[side]} for side in ("bids", "asks")}


async def rest_depth(http: aiohttp.ClientSession, sims: Simulators, symbol: str) -> dict[str, Any]:
    url = sims.endpoints["binance"].rest_url + "/api/v3/depth"
    async with http.get(url, params={"symbol": symbol, "limit": "5000"}) as r:
        assert r.status == 200
        return json.loads(await r.text())


# ----- the live endpoint -----


async def test_combined_streams_are_bare_binary_sbe_that_chains(sims: Simulators) -> None:
    url = sims.endpoints["binance"].ws_url + (
        "/stream?streams=btcusdt@depth/ethusdt@depth/btcusdt@bestBidAsk/btcusdt@trade/ethusdt@trade"
    )
    async with connect(url) as (_, got):
        msgs = messages(await frames_for(got, 1.5))
    assert {(m["template"], m["symbol"]) for m in msgs} == {
        (10003, "BTCUSDT"), (10003, "ETHUSDT"), (10001, "BTCUSDT"), (10000, "BTCUSDT"), (10000, "ETHUSDT")}
    now_us = time.time_ns() // 1000
    assert all(now_us - 10_000_000 < m["time"] <= now_us for m in msgs), "times are microseconds"

    last_u: dict[str, int] = {}
    diffs = 0
    for m in msgs:
        if m["template"] == 10003:
            assert m["U"] <= m["u"]
            if m["symbol"] in last_u:
                assert m["U"] == last_u[m["symbol"]] + 1, "gap in a clean feed"
            last_u[m["symbol"]] = m["u"]
            diffs += 1
        elif m["template"] == 10001 and "BTCUSDT" in last_u:
            # Sent after the same step's diff: bookUpdateId is that diff's last id.
            assert m["id"] == last_u["BTCUSDT"], "bestBidAsk and depth share one id counter"
            bid, bid_qty, ask, ask_qty = m["top"]
            assert 0 < bid < ask and bid_qty > 0 and ask_qty > 0
    assert diffs > 40 and len(last_u) == 2

    trades = [t for m in msgs if m["template"] == 10000 and m["symbol"] == "BTCUSDT" for t in m["trades"]]
    assert trades and all(p > 0 and q > 0 for _, p, q, _ in trades)
    ids = [t[0] for t in trades]
    assert ids == list(range(ids[0], ids[0] + len(ids))), "one id per trade, no gaps"
    assert all(m["time"] == m["transact"] for m in msgs if m["template"] == 10000)


async def test_rest_snapshot_and_sbe_diffs_rebuild_the_book(sims: Simulators, http) -> None:
    url = sims.endpoints["binance"].ws_url + "/ws/btcusdt@depth/btcusdt@bestBidAsk/btcusdt@depth20"
    async with connect(url) as (_, got):
        buffered = messages(await frames_for(got, 0.2))
        snap = await rest_depth(http, sims, "BTCUSDT")
        diffs = [m for m in buffered if m["template"] == 10003]
        assert diffs and snap["lastUpdateId"] >= diffs[0]["U"]
        last = snap["lastUpdateId"]
        book = from_rest(snap)
        live = buffered + messages(await frames_for(got, 0.6))
        checked = {10001: 0, 10002: 0}
        synced = False
        for m in live:
            if m["template"] == 10003:
                if m["u"] <= last:
                    continue
                if not synced:
                    assert m["U"] <= last + 1 <= m["u"]
                    synced = True
                else:
                    assert m["U"] == last + 1
                apply(book, m["bids"], m["asks"])
                last = m["u"]
            elif synced and m["template"] == 10001:
                assert m["id"] == last
                best_bid, best_ask = max(book["bids"]), min(book["asks"])
                assert m["top"] == (best_bid, book["bids"][best_bid], best_ask, book["asks"][best_ask])
                checked[10001] += 1
            elif synced and m["template"] == 10002:
                assert m["id"] == last, "depth20 is as of the symbol's last update id"
                assert m["bids"] == sorted(book["bids"].items(), reverse=True)[:20]
                assert m["asks"] == sorted(book["asks"].items())[:20]
                checked[10002] += 1
        assert checked[10001] > 3 and checked[10002] > 3
        # depth20 comes every 50 ms (of model time), not with every 20 ms tick.
        times = [m["time"] for m in live if m["template"] == 10002]
        assert len(times) >= 8
        assert 35_000 < (times[-1] - times[0]) / (len(times) - 1) < 80_000
        later = await rest_depth(http, sims, "BTCUSDT")
        assert later["lastUpdateId"] >= last
        while last < later["lastUpdateId"]:
            kind, data = await asyncio.wait_for(got.frames.get(), 2.0)
            m = decode(data)
            if m["template"] == 10003:
                assert m["U"] == last + 1
                apply(book, m["bids"], m["asks"])
                last = m["u"]
        assert last == later["lastUpdateId"], "REST ids and SBE diff ids are one sequence"
    assert book == from_rest(later)


async def test_subscribe_replies_are_json_text(sims: Simulators) -> None:
    async with connect(sims.endpoints["binance"].ws_url + "/ws") as (transport, got):
        transport.send(WSMsgType.TEXT, json.dumps(
            {"method": "SUBSCRIBE", "params": ["ethusdt@bestBidAsk", "ethusdt@depth"], "id": 1}).encode())
        assert await next_text(got) == {"result": None, "id": 1}
        kind, data = await asyncio.wait_for(got.frames.get(), 1.0)
        assert kind == WSMsgType.BINARY and decode(data)["symbol"] == "ETHUSDT"

        for stream in ("ethusdt@bookTicker", "ethusdt@depth@100ms", "ethusdt@depth5"):  # JSON-only names
            transport.send(WSMsgType.TEXT, json.dumps(
                {"method": "SUBSCRIBE", "params": [stream], "id": 2}).encode())
            assert await next_text(got) == {"code": 2, "msg": "Invalid request: invalid stream", "id": 2}

        transport.send(WSMsgType.TEXT, json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 3}).encode())
        assert await next_text(got) == {"result": ["ethusdt@bestBidAsk", "ethusdt@depth"], "id": 3}

        transport.send(WSMsgType.TEXT, json.dumps(
            {"method": "UNSUBSCRIBE", "params": ["ethusdt@bestBidAsk", "ethusdt@depth"], "id": 4}).encode())
        assert await next_text(got) == {"result": None, "id": 4}
        await frames_for(got, 0.05)  # frames already in flight
        assert await frames_for(got, 0.2) == []


async def test_server_shutdown_stays_json_text(sims: Simulators) -> None:
    async with connect(sims.endpoints["binance"].ws_url + "/stream?streams=btcusdt@depth") as (_, got):
        await asyncio.sleep(0.05)
        sims.venue("binance").server_shutdown(close_after_s=0.1)
        frames = await frames_for(got, 1.0)
    texts = [json.loads(data) for kind, data in frames if kind == WSMsgType.TEXT]
    assert len(texts) == 1 and texts[0]["stream"] == "!serverShutdown"
    assert texts[0]["data"]["e"] == "serverShutdown"
    assert frames[-1][0] == WSMsgType.CLOSE


@pytest.mark.parametrize("key", [None, "", "wrong-key"])
async def test_upgrade_without_a_known_api_key_is_refused(sims: Simulators, key: str | None) -> None:
    with pytest.raises(WSHandshakeError) as info:
        async with connect(sims.endpoints["binance"].ws_url + "/ws/btcusdt@depth", key=key):
            pass
    response = info.value.response
    assert response is not None and response.status == 401
    assert json.loads(info.value.raw_body or b"") == {
        "code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}


async def test_a_json_stream_name_in_the_url_is_a_bad_request(sims: Simulators) -> None:
    with pytest.raises(WSHandshakeError) as info:
        async with connect(sims.endpoints["binance"].ws_url + "/ws/btcusdt@depth@100ms"):
            pass
    assert info.value.response is not None and info.value.response.status == 400


async def test_without_a_key_list_any_nonempty_key_is_accepted() -> None:
    opts = {"binance": {"sbe": True}}
    async with await start_simulators(("binance",), tick_ms=TICK_MS, venue_options=opts) as s:
        url = s.endpoints["binance"].ws_url + "/ws/btcusdt@depth"
        async with connect(url, key="anything") as (_, got):
            assert {m["template"] for m in messages(await frames_for(got, 0.2))} == {10003}
        with pytest.raises(WSHandshakeError) as info:
            async with connect(url, key=None):
                pass
        assert info.value.response is not None and info.value.response.status == 401


async def test_json_endpoint_ignores_the_key_and_stays_text() -> None:
    async with await start_simulators(("binance",), tick_ms=TICK_MS) as s:
        url = s.endpoints["binance"].ws_url + "/ws/btcusdt@depth@100ms"
        async with connect(url, key=None) as (_, got):
            frames = await frames_for(got, 0.2)
        assert frames and all(kind == WSMsgType.TEXT for kind, _ in frames)
        assert json.loads(frames[0][1])["e"] == "depthUpdate"
        with pytest.raises(WSHandshakeError) as info:
            async with connect(s.endpoints["binance"].ws_url + "/ws/btcusdt@bestBidAsk"):
                pass
        assert info.value.response is not None and info.value.response.status == 400
