"""The Bybit simulator over real sockets on 127.0.0.1, checked with the stdlib only.

Every expectation comes from the protocol reference (§2): ack and pong shapes per
category, one reply per request, ``u`` +1 per message per topic, ``seq`` growing by
varying amounts, snapshot-only ``orderbook.1``, the REST ``u`` of the 1000-level stream.
"""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from arbwire.sim.runner import Simulators, start_simulators
from arbwire.sim.server import FaultError
from helpers.ws import drain, read_json, read_until, sims_fixture

TICK_MS = 20
SHORTEST = re.compile(r"^(0|[1-9]\d*)(\.\d*[1-9])?$")  # "60000.1", "0.5", never "0.50"
CONN_ID = re.compile(r"^[0-9a-v]{20}-[a-z]{4}$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
SPOT, LINEAR = "/v5/public/spot", "/v5/public/linear"


class Book:
    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def reset(self, data: dict[str, Any]) -> None:
        self.bids.clear()
        self.asks.clear()
        self.apply(data, snapshot=True)

    def apply(self, data: dict[str, Any], snapshot: bool = False) -> None:
        for side, levels in ((self.bids, data["b"]), (self.asks, data["a"])):
            for px, sz in levels:
                assert SHORTEST.match(px) and SHORTEST.match(sz), (px, sz)
                if sz == "0":
                    assert not snapshot
                    removed = side.pop(Decimal(px), None)
                    assert removed is not None or not self.strict, f"delete of unknown {px}"
                else:
                    side[Decimal(px)] = Decimal(sz)

    def crossed(self) -> bool:
        return bool(self.bids and self.asks) and max(self.bids) >= min(self.asks)

    def top(self, n: int) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        return sorted(self.bids.items(), reverse=True)[:n], sorted(self.asks.items())[:n]


def model_top(sims: Simulators, symbol: str, n: int) -> tuple[list, list]:
    book = sims.model.book("bybit", symbol)
    return sorted(book.bids.items(), reverse=True)[:n], sorted(book.asks.items())[:n]


sims = sims_fixture(("bybit",), ("BTC-USDT", "ETH-USDT"), tick_ms=TICK_MS, seed=5)


def request(op: str, *args: str, req_id: Any = None) -> str:
    msg: dict[str, Any] = {"op": op, "args": list(args)}
    if req_id is not None:
        msg["req_id"] = req_id
    return json.dumps(msg)


def of(frames: list[Any], topic: str) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("topic") == topic]


def replies(frames: list[Any]) -> list[dict[str, Any]]:
    return [f for f in frames if "success" in f]


class Chain:
    """One book topic as a client keeps it: snapshot, then deltas with ``u`` +1."""

    def __init__(self, topic: str, depth: int) -> None:
        self.topic, self.depth = topic, depth
        self.book = Book()
        self.u: int | None = None
        self.msgs = 0
        self.seq_steps: list[int] = []
        self._seq = 0

    def feed(self, frames: list[Any]) -> None:
        for m in of(frames, self.topic):
            assert list(m) == ["topic", "ts", "type", "data", "cts"]  # spot: ts before type
            assert isinstance(m["ts"], int) and isinstance(m["cts"], int) and m["cts"] <= m["ts"]
            data = m["data"]
            assert list(data) == ["s", "b", "a", "u", "seq"] and data["s"] == "BTCUSDT"
            if self.u is None:
                assert m["type"] == "snapshot"
                self.book.reset(data)
            else:
                assert m["type"] == "delta" and data["u"] == self.u + 1
                self.seq_steps.append(data["seq"] - self._seq)
                self.book.apply(data)
            assert not self.book.crossed()
            assert len(self.book.bids) <= self.depth and len(self.book.asks) <= self.depth
            self.u, self._seq = data["u"], data["seq"]
            self.msgs += 1


async def test_spot_snapshot_then_deltas_chain_and_match_rest(sims: Simulators, http) -> None:
    ep = sims.endpoints["bybit"]
    chains = [Chain("orderbook.50.BTCUSDT", 50), Chain("orderbook.1000.BTCUSDT", 1000)]
    async with http.ws_connect(ep.ws_url + SPOT) as ws:
        await ws.send_str(request("subscribe", "orderbook.50.BTCUSDT", "orderbook.1000.BTCUSDT", req_id=7))
        frames = await read_json(ws, 0.6)
        (ack,) = replies(frames)
        assert list(ack) == ["success", "ret_msg", "conn_id", "req_id", "op"]
        assert ack["success"] is True and ack["ret_msg"] == "subscribe" and ack["op"] == "subscribe"
        assert ack["req_id"] == "7" and CONN_ID.match(ack["conn_id"])
        assert frames[0] is ack
        for chain in chains:
            chain.feed(frames)
            assert chain.msgs > 10
            assert all(s > 0 for s in chain.seq_steps) and len(set(chain.seq_steps)) > 5
        # The REST book carries the u of the 1000-level stream.
        async with http.get(ep.rest_url + "/v5/market/orderbook",
                            params={"category": "spot", "symbol": "BTCUSDT", "limit": "1000"}) as r:
            rest = json.loads(await r.text())
        assert rest["retCode"] == 0 and rest["retMsg"] == "OK"
        snap = rest["result"]
        assert set(snap) == {"s", "a", "b", "ts", "u", "seq", "cts"}
        full = chains[1]
        assert full.u is not None
        if snap["u"] > full.u:
            more = await read_until(ws, lambda f: f.get("topic") == full.topic and f["data"]["u"] >= snap["u"])
            for chain in chains:
                chain.feed(more)
        assert full.u == snap["u"]
        expected = Book()
        expected.reset(snap)
        assert (full.book.bids, full.book.asks) == (expected.bids, expected.asks)
        # A quiet market: both topics equal the model's book, the 50 one cut to 50 levels.
        sims.model.freeze("BTC-USDT")
        more = await read_json(ws, 0.15)
        for chain in chains:
            chain.feed(more)
    for chain in chains:
        assert chain.book.top(2000) == model_top(sims, "BTC-USDT", chain.depth)


async def test_linear_shapes_tickers_and_trades(sims: Simulators, http) -> None:
    async with http.ws_connect(sims.endpoints["bybit"].ws_url + LINEAR) as ws:
        await ws.send_str(request("subscribe", "orderbook.50.ETHUSDT", "orderbook.1.ETHUSDT",
                                  "tickers.ETHUSDT", "publicTrade.ETHUSDT"))
        frames = await read_json(ws, 1.0)
        await ws.send_str(json.dumps({"op": "ping"}))
        await ws.send_str(json.dumps({"op": "ping", "req_id": "100001"}))
        frames += await read_until(ws, lambda f: f.get("req_id") == "100001")
        sims.model.freeze("ETH-USDT")
        frames += await read_json(ws, 0.15)
    ack, *pongs = replies(frames)
    assert ack == {"success": True, "ret_msg": "", "conn_id": ack["conn_id"], "req_id": "", "op": "subscribe"}
    assert list(ack) == ["success", "ret_msg", "conn_id", "req_id", "op"]
    assert [list(p) for p in pongs] == [["success", "ret_msg", "conn_id", "req_id", "op"]] * 2
    assert [(p["ret_msg"], p["op"], p["req_id"]) for p in pongs] == [("pong", "ping", ""), ("pong", "ping", "100001")]
    for m in of(frames, "orderbook.50.ETHUSDT"):
        assert list(m) == ["topic", "type", "ts", "data", "cts"]  # linear level > 1: type first
    level1 = of(frames, "orderbook.1.ETHUSDT")
    assert len(level1) > 5
    for prev, m in zip(level1, level1[1:], strict=False):
        assert list(m) == ["topic", "ts", "type", "data", "cts"] and m["type"] == "snapshot"
        assert len(m["data"]["b"]) == len(m["data"]["a"]) == 1
        assert m["data"]["u"] == prev["data"]["u"] + 1
    tickers = of(frames, "tickers.ETHUSDT")
    assert tickers[0]["type"] == "snapshot" and all(t["type"] == "delta" for t in tickers[1:])
    assert len(tickers) > 5
    state: dict[str, str] = {}
    for t in tickers:
        assert list(t) == ["topic", "type", "data", "cs", "ts"] and t["data"]["symbol"] == "ETHUSDT"
        state.update(t["data"])
        assert Decimal(state["bid1Price"]) < Decimal(state["ask1Price"])
    assert {"bid1Price", "bid1Size", "ask1Price", "ask1Size", "lastPrice", "markPrice"} <= set(tickers[0]["data"])
    assert any(len(t["data"]) < len(tickers[0]["data"]) for t in tickers[1:])  # deltas carry changes only
    bids, asks = model_top(sims, "ETH-USDT", 1)
    assert (Decimal(state["bid1Price"]), Decimal(state["bid1Size"])) == bids[0]
    assert (Decimal(state["ask1Price"]), Decimal(state["ask1Size"])) == asks[0]
    trades = [e for f in of(frames, "publicTrade.ETHUSDT") for e in f["data"]]
    assert trades
    for e in trades:
        assert list(e) == ["T", "s", "S", "v", "p", "L", "i", "BT", "RPI", "seq"]
        assert UUID.match(e["i"]) and e["S"] in ("Buy", "Sell") and SHORTEST.match(e["p"])
        assert e["L"] in ("PlusTick", "ZeroPlusTick", "MinusTick", "ZeroMinusTick")


async def test_spot_trades_tickers_and_pong(sims: Simulators, http) -> None:
    async with http.ws_connect(sims.endpoints["bybit"].ws_url + SPOT) as ws:
        await ws.send_str(request("subscribe", "publicTrade.BTCUSDT", "tickers.BTCUSDT"))
        frames = await read_json(ws, 1.0)
        await ws.send_str(json.dumps({"op": "ping"}))
        (pong,) = replies(await read_until(ws, lambda f: f.get("op") == "ping"))
    (ack,) = replies(frames)
    assert "req_id" not in ack and ack["ret_msg"] == "subscribe"  # spot: no req_id key unless sent
    assert list(pong) == ["success", "ret_msg", "conn_id", "op"] and pong["ret_msg"] == "pong"
    trades = [e for f in of(frames, "publicTrade.BTCUSDT") for e in f["data"]]
    assert trades
    for e in trades:
        assert list(e) == ["i", "T", "p", "v", "S", "seq", "s", "BT", "RPI"]
        assert e["i"].isdigit() and e["s"] == "BTCUSDT"
    ids = [int(e["i"]) for e in trades]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    tickers = of(frames, "tickers.BTCUSDT")
    assert all(t["type"] == "snapshot" and "bid1Price" not in t["data"] for t in tickers)
    assert tickers[-1]["data"]["lastPrice"] == trades[-1]["p"]


async def test_a_bad_topic_fails_its_whole_request(sims: Simulators, http) -> None:
    url = sims.endpoints["bybit"].ws_url
    async with http.ws_connect(url + SPOT) as ws:
        await ws.send_str(request("subscribe", "orderbook.50.BTCUSDT", "orderbook.50.NOPEUSDT", req_id="a"))
        frames = await read_json(ws, 0.3)
        await ws.send_str(request("subscribe", "orderbook.25.BTCUSDT", req_id="b"))
        await ws.send_str(request("subscribe", *[f"publicTrade.X{i}USDT" for i in range(11)], req_id="c"))
        frames += await read_json(ws, 0.3)
    assert [f for f in frames if "topic" in f] == []  # nothing of the refused request flows
    a, b, c = replies(frames)
    assert (a["success"], a["req_id"], a["op"]) == (False, "a", "subscribe")
    assert a["ret_msg"] == "Invalid symbol :[orderbook.50.NOPEUSDT]"
    assert b["success"] is False and b["ret_msg"] == "error:handler not found,topic:orderbook.25.BTCUSDT"
    assert c["success"] is False and c["ret_msg"] == "args size >10"


async def test_reject_style_and_linear_args(http) -> None:
    opts = {"bybit": {"reject_style": "handler_not_found"}}
    async with (
        await start_simulators(("bybit",), tick_ms=TICK_MS, venue_options=opts) as s,
        http.ws_connect(s.endpoints["bybit"].ws_url + LINEAR) as ws,
    ):
        await ws.send_str(request("subscribe", "publicTrade.NOPEUSDT"))
        (err,) = replies(await read_json(ws, 0.2))
        assert err["ret_msg"] == "error:handler not found,topic:publicTrade.NOPEUSDT" and err["req_id"] == ""
        args = [f"publicTrade.{n}" for n in ("BTCUSDT", "ETHUSDT")] * 6  # 12 args: fine on linear
        await ws.send_str(request("subscribe", *args))
        (ack,) = replies(await read_json(ws, 0.2))
        assert ack["success"] is True
    with pytest.raises(ValueError):
        await start_simulators(("bybit",), venue_options={"bybit": {"reject_style": "nope"}})


async def test_skip_sequence_breaks_one_u_of_one_symbol(sims: Simulators, http) -> None:
    async with http.ws_connect(sims.endpoints["bybit"].ws_url + SPOT) as ws:
        await ws.send_str(request("subscribe", "orderbook.50.BTCUSDT", "orderbook.200.ETHUSDT"))
        frames = await read_json(ws, 0.15)
        sims.venue("bybit").skip_sequence("BTC-USDT")
        frames += await read_json(ws, 0.3)
    with pytest.raises(FaultError):
        sims.venue("bybit").skip_sequence("XRP-USDT")
    for topic, jumps in (("orderbook.50.BTCUSDT", [2]), ("orderbook.200.ETHUSDT", [])):
        us = [m["data"]["u"] for m in of(frames, topic)]
        steps = [b - a for a, b in zip(us, us[1:], strict=False)]
        assert [s for s in steps if s != 1] == jumps, topic


async def test_restart_pushes_a_u1_snapshot(sims: Simulators, http) -> None:
    async with http.ws_connect(sims.endpoints["bybit"].ws_url + LINEAR) as ws:
        await ws.send_str(request("subscribe", "orderbook.50.BTCUSDT"))
        before = of(await read_json(ws, 0.1), "orderbook.50.BTCUSDT")
        sims.inject("bybit", "restart", symbol="BTC-USDT")
        after = of(await read_json(ws, 0.2), "orderbook.50.BTCUSDT")
    assert before[-1]["data"]["u"] > 1000
    (restart,) = [i for i, m in enumerate(after) if m["data"]["u"] == 1]
    in_flight, after = after[:restart], after[restart:]  # sent before the fault, read after it
    assert [m["data"]["u"] for m in before + in_flight] == list(
        range(before[0]["data"]["u"], before[0]["data"]["u"] + len(before) + len(in_flight)))
    assert after[0]["type"] == "snapshot"
    assert [m["data"]["u"] for m in after] == list(range(1, len(after) + 1))
    book = Book()
    book.reset(after[0]["data"])
    for m in after[1:]:
        book.apply(m["data"])  # strict: the restart snapshot is the whole book
        assert not book.crossed()


async def test_data_before_ack_option(http) -> None:
    opts = {"bybit": {"ack_after_data": True}}
    async with (
        await start_simulators(("bybit",), tick_ms=TICK_MS, venue_options=opts) as s,
        http.ws_connect(s.endpoints["bybit"].ws_url + SPOT) as ws,
    ):
        await ws.send_str(request("subscribe", "orderbook.50.BTCUSDT", req_id=1))
        first, second = (await read_json(ws, 0.05))[:2]
    assert first["topic"] == "orderbook.50.BTCUSDT" and first["type"] == "snapshot"
    assert second["success"] is True and second["req_id"] == "1"


async def test_level1_repeats_an_unchanged_snapshot_with_the_same_u(http) -> None:
    opts = {"bybit": {"level1_repeat_s": 0.1}}
    async with await start_simulators(("bybit",), tick_ms=TICK_MS, venue_options=opts) as s:
        s.model.freeze("BTC-USDT")
        await asyncio.sleep(0.05)
        async with http.ws_connect(s.endpoints["bybit"].ws_url + SPOT) as ws:
            await ws.send_str(request("subscribe", "orderbook.1.BTCUSDT"))
            msgs = of(await read_json(ws, 0.55), "orderbook.1.BTCUSDT")
    assert 4 <= len(msgs) <= 7
    assert all(m["type"] == "snapshot" for m in msgs)
    assert len({m["data"]["u"] for m in msgs}) == 1
    assert len({json.dumps([m["data"]["b"], m["data"]["a"]]) for m in msgs}) == 1


async def test_idle_links_are_cut_unless_they_ping(http) -> None:
    opts = {"bybit": {"idle_timeout_s": 0.3, "idle_counts_pushes": False}}
    async with await start_simulators(("bybit",), tick_ms=TICK_MS, venue_options=opts) as s:
        url = s.endpoints["bybit"].ws_url + SPOT
        async with http.ws_connect(url) as silent, http.ws_connect(url) as pinger:
            await silent.send_str(request("subscribe", "orderbook.50.BTCUSDT"))  # busy, never pings
            await pinger.send_str(request("subscribe", "orderbook.50.BTCUSDT"))
            loop = asyncio.get_running_loop()
            start = loop.time()
            while loop.time() - start < 0.8:
                await pinger.send_str(json.dumps({"op": "ping"}))
                assert replies(await read_until(pinger, lambda f: f.get("ret_msg") == "pong"))
                await asyncio.sleep(0.1)
            assert not pinger.closed
            msgs = [m async for m in drain(silent, 2)]
            assert len(msgs) > 5
            assert msgs[-1].type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_by_default_stream_data_keeps_a_link_alive(http) -> None:
    opts = {"bybit": {"idle_timeout_s": 0.3}}
    async with await start_simulators(("bybit",), tick_ms=TICK_MS, venue_options=opts) as s:
        url = s.endpoints["bybit"].ws_url + LINEAR
        async with http.ws_connect(url) as busy, http.ws_connect(url) as quiet:
            await busy.send_str(request("subscribe", "orderbook.50.BTCUSDT"))
            frames = await read_json(busy, 0.8)
            assert not busy.closed and len(frames) > 20
            assert (await quiet.receive(timeout=1)).type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_unsubscribe_stall_and_drop(sims: Simulators, http) -> None:
    bybit = sims.venue("bybit")
    async with http.ws_connect(sims.endpoints["bybit"].ws_url + SPOT) as ws:
        await ws.send_str(request("subscribe", "orderbook.50.BTCUSDT", "orderbook.50.ETHUSDT"))
        frames = await read_json(ws, 0.1)
        await ws.send_str(request("unsubscribe", "orderbook.50.ETHUSDT", req_id=9))
        frames += await read_until(ws, lambda f: f.get("op") == "unsubscribe")
        assert frames[-1]["success"] is True and frames[-1]["ret_msg"] == "unsubscribe"
        bybit.stall()
        frames += await read_json(ws, 0.1)  # what was in flight
        last_u = of(frames, "orderbook.50.BTCUSDT")[-1]["data"]["u"]
        await asyncio.sleep(0.1)
        assert await read_json(ws, 0.05) == []
        bybit.resume()
        later = await read_json(ws, 0.2)
        assert of(later, "orderbook.50.ETHUSDT") == []
        assert of(later, "orderbook.50.BTCUSDT")[0]["data"]["u"] > last_u + 1  # lost while stalled
        assert bybit.drop_connections() == 1
        msgs = [m async for m in drain(ws, 2)]
        assert msgs[-1].type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


async def test_unknown_path_is_404(sims: Simulators, http) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(sims.endpoints["bybit"].ws_url + "/v5/public/option")


async def test_rest_instruments_and_errors(sims: Simulators, http) -> None:
    rest = sims.endpoints["bybit"].rest_url
    async with http.get(rest + "/v5/market/instruments-info", params={"category": "spot"}) as r:
        body = json.loads(await r.text())
    assert body["retCode"] == 0 and body["result"]["category"] == "spot"
    items = {i["symbol"]: i for i in body["result"]["list"]}
    assert set(items) == {"BTCUSDT", "ETHUSDT"}
    btc = items["BTCUSDT"]
    assert (btc["baseCoin"], btc["quoteCoin"], btc["status"]) == ("BTC", "USDT", "Trading")
    assert btc["priceFilter"]["tickSize"] == "0.01" and btc["lotSizeFilter"]["basePrecision"] == "0.0001"
    seen, cursor = [], ""
    for _ in range(3):
        params = {"category": "linear", "limit": "1"} | ({"cursor": cursor} if cursor else {})
        async with http.get(rest + "/v5/market/instruments-info", params=params) as r:
            page = json.loads(await r.text())["result"]
        seen += [(i["symbol"], i["contractType"], i["lotSizeFilter"]["qtyStep"]) for i in page["list"]]
        cursor = page["nextPageCursor"]
        if not cursor:
            break
    assert seen == [("BTCUSDT", "LinearPerpetual", "0.0001"), ("ETHUSDT", "LinearPerpetual", "0.0001")]
    for params in ({"category": "spot", "symbol": "NOPEUSDT"}, {"category": "option", "symbol": "BTCUSDT"}):
        async with http.get(rest + "/v5/market/orderbook", params=params) as r:
            err = json.loads(await r.text())
        assert err["retCode"] == 10001 and err["retMsg"]
    for category, n in (("spot", 1), ("linear", 25)):  # default limits
        async with http.get(rest + "/v5/market/orderbook", params={"category": category, "symbol": "ETHUSDT"}) as r:
            res = json.loads(await r.text())["result"]
        assert len(res["b"]) == len(res["a"]) == n
