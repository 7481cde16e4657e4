"""The Binance simulator over real sockets on 127.0.0.1, checked with the stdlib only."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from arbwire.sim.runner import Simulators, start_simulators
from helpers import ws as client
from helpers.ws import read_until, sims_fixture

FIXED8 = re.compile(r"^\d+\.\d{8}$")
TICK_MS = 20


sims = sims_fixture(("binance",), tick_ms=TICK_MS, seed=3)


async def read_json(ws: aiohttp.ClientWebSocketResponse, seconds: float) -> list[Any]:
    """Every text frame for ``seconds``, decoded with the stdlib; other frames but a close are passed over."""
    return await client.read_json(ws, seconds, stop=client.CLOSED)


def apply(book: dict[str, dict[Decimal, Decimal]], bids: list, asks: list) -> None:
    for side, levels in (("bids", bids), ("asks", asks)):
        for price, size in levels:
            if Decimal(size) == 0:
                book[side].pop(Decimal(price), None)
            else:
                book[side][Decimal(price)] = Decimal(size)


async def test_combined_stream_frames_have_the_documented_shapes(sims: Simulators, http) -> None:
    url = sims.endpoints["binance"].ws_url + "/stream?streams=btcusdt@depth@100ms/btcusdt@bookTicker/btcusdt@trade"
    async with http.ws_connect(url) as ws:
        frames = await read_json(ws, 1.0)
    kinds = {f["stream"] for f in frames}
    assert kinds == {"btcusdt@depth@100ms", "btcusdt@bookTicker", "btcusdt@trade"}
    last_u = None
    spans = []
    for f in frames:
        assert set(f) == {"stream", "data"}
        d = f["data"]
        if f["stream"] == "btcusdt@depth@100ms":
            assert set(d) == {"e", "E", "s", "U", "u", "b", "a"} and d["e"] == "depthUpdate"
            assert d["s"] == "BTCUSDT" and isinstance(d["E"], int) and len(str(d["E"])) == 13
            assert all(FIXED8.match(x) for lvl in d["b"] + d["a"] for x in lvl)
            if last_u is not None:
                assert d["U"] == last_u + 1
            spans.append(d["u"] - d["U"] + 1)
            last_u = d["u"]
        elif f["stream"] == "btcusdt@bookTicker":
            assert set(d) == {"u", "s", "b", "B", "a", "A"}
            assert Decimal(d["b"]) < Decimal(d["a"]) and FIXED8.match(d["B"])
        else:
            assert d["e"] == "trade" and {"E", "s", "t", "p", "q", "T", "m", "M"} <= set(d)
            assert isinstance(d["m"], bool) and Decimal(d["q"]) > 0
    assert len(spans) > 20 and max(spans) > 1  # several update ids per diff


async def test_rest_snapshot_and_diffs_rebuild_the_book_exactly(sims: Simulators, http) -> None:
    ep = sims.endpoints["binance"]
    async with http.ws_connect(ep.ws_url + "/ws/btcusdt@depth@100ms") as ws:
        buffered = await read_json(ws, 0.2)  # events before the snapshot, as the procedure says
        async with http.get(ep.rest_url + "/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "5000"}) as r:
            assert r.status == 200
            snap = json.loads(await r.text())
        assert buffered and snap["lastUpdateId"] >= buffered[0]["U"]
        last = snap["lastUpdateId"]
        book: dict[str, dict[Decimal, Decimal]] = {"bids": {}, "asks": {}}
        apply(book, snap["bids"], snap["asks"])
        events = buffered + await read_json(ws, 0.3)
        events = [e for e in events if e["u"] > last]
        assert events[0]["U"] <= last + 1 <= events[0]["u"]
        for e in events:
            assert e["U"] == last + 1, "gap in a clean feed"
            apply(book, e["b"], e["a"])
            last = e["u"]
        async with http.get(ep.rest_url + "/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "5000"}) as r:
            later = json.loads(await r.text())
        assert later["lastUpdateId"] >= last
        if later["lastUpdateId"] > last:
            for e in await read_until(ws, lambda e: e["u"] >= later["lastUpdateId"]):
                assert e["U"] == last + 1
                apply(book, e["b"], e["a"])
                last = e["u"]
        assert last == later["lastUpdateId"], "REST ids and diff ids are one sequence"
    expected: dict[str, dict[Decimal, Decimal]] = {"bids": {}, "asks": {}}
    apply(expected, later["bids"], later["asks"])
    assert book == expected
    assert max(book["bids"]) < min(book["asks"])


async def test_subscribe_on_raw_ws_and_its_error_replies(sims: Simulators, http) -> None:
    async with http.ws_connect(sims.endpoints["binance"].ws_url + "/ws") as ws:
        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["xyzusdt@trade"], "id": 1}))
        assert json.loads((await ws.receive(timeout=1)).data) == {"result": None, "id": 1}
        assert await read_json(ws, 0.3) == [], "unknown but well-formed symbol: silence"

        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depthx"], "id": 2}))
        assert json.loads((await ws.receive(timeout=1)).data) == {
            "code": 2, "msg": "Invalid request: invalid stream", "id": 2}
        await ws.send_str("{not json")
        assert json.loads((await ws.receive(timeout=1)).data)["code"] == 3

        await ws.send_str(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@depth@100ms"], "id": 3}))
        frames = await read_until(ws, lambda f: f.get("e") == "depthUpdate")
        assert frames[0] == {"result": None, "id": 3}
        assert frames[-1]["s"] == "ETHUSDT" and "stream" not in frames[-1]  # raw, not wrapped

        await ws.send_str(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 4}))
        reply = (await read_until(ws, lambda f: f.get("id") == 4))[-1]
        assert reply["result"] == ["xyzusdt@trade", "ethusdt@depth@100ms"]

        await ws.send_str(json.dumps({"method": "SET_PROPERTY", "params": ["combined", True], "id": 5}))
        await read_until(ws, lambda f: f.get("id") == 5)
        wrapped = (await read_until(ws, lambda f: "stream" in f))[-1]
        assert wrapped["stream"] == "ethusdt@depth@100ms"

        await ws.send_str(json.dumps({"method": "UNSUBSCRIBE", "params": ["ethusdt@depth@100ms"], "id": 6}))
        await read_until(ws, lambda f: f.get("id") == 6)
        assert await read_json(ws, 0.2) == []


async def test_malformed_stream_in_url_is_refused(sims: Simulators, http) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(sims.endpoints["binance"].ws_url + "/stream?streams=btcusdt@nonsense")
    assert info.value.status == 400


async def test_skip_sequence_breaks_only_that_symbols_chain(sims: Simulators, http) -> None:
    url = sims.endpoints["binance"].ws_url + "/stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms"
    async with http.ws_connect(url) as ws:
        before = await read_json(ws, 0.2)
        sims.venue("binance").skip_sequence("BTC-USDT")
        after = await read_json(ws, 0.3)
    gaps: dict[str, int] = {"BTCUSDT": 0, "ETHUSDT": 0}
    last: dict[str, int] = {}
    for f in before + after:
        d = f["data"]
        if d["s"] in last and d["U"] != last[d["s"]] + 1:
            assert d["U"] > last[d["s"]] + 1
            gaps[d["s"]] += 1
        last[d["s"]] = d["u"]
    assert gaps == {"BTCUSDT": 1, "ETHUSDT": 0}


async def test_server_pings_and_closes_a_link_that_never_pongs(http) -> None:
    opts = {"binance": {"ping_interval_s": 0.1, "pong_timeout_s": 0.3}}
    async with await start_simulators(("binance",), tick_ms=TICK_MS, venue_options=opts) as s:
        url = s.endpoints["binance"].ws_url + "/ws"
        async with http.ws_connect(url, autoping=False) as mute, http.ws_connect(url) as polite:
            loop = asyncio.get_running_loop()
            start, pings, closed_after = loop.time(), 0, None
            while loop.time() - start < 1.0:
                msg = await mute.receive(timeout=1.0)
                if msg.type == aiohttp.WSMsgType.PING:
                    pings += 1
                    await mute.pong(b"not the payload")  # an unsolicited pong does not count
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                    closed_after = loop.time() - start
                    break
            assert pings >= 2
            assert closed_after is not None and 0.3 <= closed_after < 0.8
            await asyncio.sleep(0.3)
            assert not polite.closed, "a link that echoes the ping payload stays up"


async def test_rest_errors_and_exchange_info(sims: Simulators, http) -> None:
    rest = sims.endpoints["binance"].rest_url
    async with http.get(rest + "/api/v3/depth", params={"symbol": "NOPEUSDT"}) as r:
        assert r.status == 400 and json.loads(await r.text()) == {"code": -1121, "msg": "Invalid symbol."}
    async with http.get(rest + "/api/v3/depth", params={"symbol": "ETHUSDT"}) as r:
        body = json.loads(await r.text())
        assert 40 <= len(body["bids"]) <= 100 and 40 <= len(body["asks"]) <= 100
        assert all(FIXED8.match(x) for lvl in body["bids"] + body["asks"] for x in lvl)
    async with http.get(rest + "/api/v3/depth", params={"symbol": "ETHUSDT", "limit": "5"}) as r:
        body = json.loads(await r.text())
        assert len(body["bids"]) == len(body["asks"]) == 5
        prices = [Decimal(p) for p, _ in body["bids"]]
        assert prices == sorted(prices, reverse=True) and prices[0] < Decimal(body["asks"][0][0])
    async with http.get(rest + "/api/v3/exchangeInfo") as r:
        info = json.loads(await r.text())
    by_name = {s["symbol"]: s for s in info["symbols"]}
    assert set(by_name) == {"BTCUSDT", "ETHUSDT"}
    btc = by_name["BTCUSDT"]
    assert (btc["status"], btc["baseAsset"], btc["quoteAsset"]) == ("TRADING", "BTC", "USDT")
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert Decimal(filters["PRICE_FILTER"]["tickSize"]) == Decimal("0.01")
    assert Decimal(filters["LOT_SIZE"]["stepSize"]) == Decimal("0.0001")
    async with http.get(rest + "/api/v3/exchangeInfo", params={"symbol": "ETHUSDT"}) as r:
        assert [s["symbol"] for s in json.loads(await r.text())["symbols"]] == ["ETHUSDT"]


async def test_server_shutdown_event_then_close(sims: Simulators, http) -> None:
    url = sims.endpoints["binance"].ws_url + "/stream?streams=btcusdt@trade"
    async with http.ws_connect(url) as ws:
        await asyncio.sleep(0.05)
        sims.venue("binance").server_shutdown(close_after_s=0.1)
        frames = await read_json(ws, 1.0)
        assert ws.closed or (await ws.receive(timeout=0.5)).type in (
            aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    shutdown = [f for f in frames if f["stream"] == "!serverShutdown"]
    assert len(shutdown) == 1 and shutdown[0]["data"]["e"] == "serverShutdown"


async def test_stall_then_resume_leaves_a_gap_and_raw_frames_arrive(sims: Simulators, http) -> None:
    server = sims.venue("binance")
    async with http.ws_connect(sims.endpoints["binance"].ws_url + "/ws/btcusdt@depth@100ms") as ws:
        before = await read_json(ws, 0.15)
        server.stall()
        assert await read_json(ws, 0.2) == []
        assert server.send_raw(b'{"e":"depthUpdate",') == 1  # raw frames go out even stalled
        msg = await ws.receive(timeout=1)
        assert msg.data == '{"e":"depthUpdate",'
        server.resume()
        after = await read_json(ws, 0.15)
        assert after and after[0]["U"] > before[-1]["u"] + 1
        server.drop_connections()
        msg = await ws.receive(timeout=1)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


async def test_microsecond_time_unit(sims: Simulators, http) -> None:
    url = sims.endpoints["binance"].ws_url + "/stream?streams=btcusdt@depth@100ms&timeUnit=MICROSECOND"
    async with http.ws_connect(url) as ws:
        frames = await read_json(ws, 0.2)
    assert frames and all(len(str(f["data"]["E"])) == 16 for f in frames)


async def test_one_second_diff_stream_aggregates_and_chains(http) -> None:
    async with await start_simulators(("binance",), tick_ms=50, seed=4) as s:
        url = s.endpoints["binance"].ws_url + "/stream?streams=btcusdt@depth/btcusdt@depth@100ms"
        async with http.ws_connect(url) as ws:
            frames = await read_json(ws, 2.2)
    slow = [f["data"] for f in frames if f["stream"] == "btcusdt@depth"]
    fast = [f["data"] for f in frames if f["stream"] == "btcusdt@depth@100ms"]
    assert 2 <= len(slow) <= 3 and len(fast) > 4 * len(slow)
    for a, b in zip(slow, slow[1:], strict=False):
        assert b["U"] == a["u"] + 1
    # A slow event is the merge of the fast ones it spans.
    merged: dict[str, dict[Decimal, Decimal]] = {"bids": {}, "asks": {}}
    target = slow[-1]
    for d in fast:
        if target["U"] <= d["U"] and d["u"] <= target["u"]:
            for side, key in (("bids", "b"), ("asks", "a")):
                merged[side].update({Decimal(p): Decimal(q) for p, q in d[key]})
    assert merged["bids"] == {Decimal(p): Decimal(q) for p, q in target["b"]}
    assert merged["asks"] == {Decimal(p): Decimal(q) for p, q in target["a"]}
