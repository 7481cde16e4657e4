"""The Gate simulator over real sockets on 127.0.0.1, checked with the stdlib only.

Expectations come from the protocol reference (§4): the request/ack envelope, the
real ``spot.obu`` frame shape, ``U == previous u + 1``, Gate's REST-based procedure
for ``spot.order_book_update``, WebSocket pings, ``spot.ping``, errors, faults.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import socket
import time
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from arbwire.sim.runner import Simulators, start_simulators
from helpers.ws import read_json, read_until, sims_fixture

TICK_MS = 20
SHORTEST = re.compile(r"^(0|[1-9]\d*)(\.\d*[1-9])?$")
PATH = "/ws/v4/"
CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


class Book:
    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def reset(self, result: dict[str, Any]) -> None:
        self.bids.clear()
        self.asks.clear()
        self.apply(result)

    def apply(self, result: dict[str, Any]) -> None:
        bids = result.get("b", result.get("bids"))
        asks = result.get("a", result.get("asks"))
        for side, levels in ((self.bids, bids), (self.asks, asks)):
            for px, sz in levels:
                assert SHORTEST.match(px) and SHORTEST.match(sz), (px, sz)
                if sz == "0":
                    removed = side.pop(Decimal(px), None)
                    assert removed is not None or not self.strict, f"delete of unknown {px}"
                else:
                    side[Decimal(px)] = Decimal(sz)

    def crossed(self) -> bool:
        return bool(self.bids and self.asks) and max(self.bids) >= min(self.asks)

    def top(self) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())


def model_top(sims: Simulators, symbol: str, n: int) -> tuple[list, list]:
    book = sims.model.book("gateio", symbol)
    return sorted(book.bids.items(), reverse=True)[:n], sorted(book.asks.items())[:n]


sims = sims_fixture(("gateio",), ("BTC-USDT", "ETH-USDT"), tick_ms=TICK_MS, seed=9)


def req(channel: str, payload: list[str] | None = None, event: str = "subscribe",
        req_id: int | None = None, **extra: Any) -> str:
    msg: dict[str, Any] = {"time": int(time.time())}
    if req_id is not None:
        msg["id"] = req_id
    msg["channel"] = channel
    if payload is not None:
        msg |= {"event": event, "payload": payload}
    return json.dumps(msg | extra)


def acks(frames: list[Any]) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("event") in ("subscribe", "unsubscribe")]


def obu(frames: list[Any], stream: str) -> list[dict[str, Any]]:
    return [f["result"] for f in frames if f.get("channel") == "spot.obu"
            and f.get("event") == "update" and f["result"]["s"] == stream]


def updates(frames: list[Any], pair: str) -> list[dict[str, Any]]:
    return [f["result"] for f in frames if f.get("channel") == "spot.order_book_update"
            and f.get("event") == "update" and f["result"]["s"] == pair]


def breaks(results: list[dict[str, Any]]) -> int:
    return sum(b["U"] != a["u"] + 1 for a, b in zip(results, results[1:], strict=False) if "U" in b)


async def test_obu_full_then_increments_chained(sims: Simulators, http) -> None:
    ep = sims.endpoints["gateio"]
    async with http.ws_connect(ep.ws_url + PATH) as ws:
        await ws.send_str(req("spot.obu", ["ob.BTC_USDT.50", "ob.BTC_USDT.400"], req_id=5))
        frames = await read_json(ws, 0.6)
        sims.model.freeze("BTC-USDT")
        frames += await read_json(ws, 0.15)
        (ack,) = acks(frames)
        assert list(ack) == ["time", "time_ms", "id", "conn_id", "trace_id", "channel", "event",
                             "payload", "result"]
        assert (ack["id"], ack["channel"], ack["result"]) == (5, "spot.obu", {"status": "success"})
        assert ack["payload"] == ["ob.BTC_USDT.50", "ob.BTC_USDT.400"] and "error" not in ack
        assert re.match(r"^[0-9a-f]{16}$", ack["conn_id"]) and ack["time_ms"] // 1000 == ack["time"]
        for f in frames:
            if f.get("channel") == "spot.obu" and f["event"] == "update":
                assert list(f) == ["channel", "result", "time_ms", "event"]  # no ``time``
        books = {}
        for level in (50, 400):
            results = obu(frames, f"ob.BTC_USDT.{level}")
            full, incs = results[0], results[1:]
            assert list(full) == ["t", "full", "s", "u", "b", "a"] and full["full"] is True
            assert len(incs) > 10
            book = Book()
            book.reset(full)
            prev = full["u"]
            for r in incs:
                assert list(r) == ["t", "s", "u", "U", "b", "a"]
                assert r["U"] == prev + 1 and r["u"] >= r["U"]
                book.apply(r)
                assert not book.crossed() and len(book.bids) <= level and len(book.asks) <= level
                prev = r["u"]
            assert book.top() == model_top(sims, "BTC-USDT", level)
            books[level] = (book, prev)
        # The 400 stream shows every change: its last u is the REST id of the same book.
        async with http.get(ep.rest_url + "/api/v4/spot/order_book",
                            params={"currency_pair": "BTC_USDT", "limit": "1000", "with_id": "true"}) as r:
            snap = json.loads(await r.text())
        assert list(snap) == ["id", "current", "update", "asks", "bids"]
        book, last = books[400]
        assert snap["id"] == last and snap["id"] == sims.venue("gateio").book_id("BTC-USDT")
        expected = Book()
        expected.reset(snap)
        assert (expected.bids, expected.asks) == (book.bids, book.asks)


async def test_order_book_update_synced_with_the_rest_snapshot(sims: Simulators, http) -> None:
    ep = sims.endpoints["gateio"]
    async with http.ws_connect(ep.ws_url + PATH) as ws:
        await ws.send_str(req("spot.order_book_update", ["ETH_USDT", "100ms"]))
        buffered = await read_json(ws, 0.2)
        async with http.get(ep.rest_url + "/api/v4/spot/order_book",
                            params={"currency_pair": "ETH_USDT", "limit": "100", "with_id": "true"}) as r:
            snap = json.loads(await r.text())
        frames = buffered + await read_json(ws, 0.4)
        for f in frames[1:]:
            assert list(f) == ["time", "time_ms", "channel", "event", "result"] and f["event"] == "update"
            assert list(f["result"]) == ["t", "e", "E", "s", "U", "u", "b", "a"]  # no full: increments
        results = updates(frames, "ETH_USDT")
        assert breaks(results) == 0
        base = snap["id"]
        kept = [r for r in results if r["u"] >= base + 1]  # Gate's procedure, step 3
        assert kept[0]["U"] <= base + 1 <= kept[0]["u"]  # step 4
        book = Book()
        book.reset(snap)
        for r in kept:
            book.apply(r)
            assert not book.crossed()
        sims.model.freeze("ETH-USDT")
        more = updates(await read_json(ws, 0.15), "ETH_USDT")
        for r in more:
            assert r["U"] == kept[-1]["u"] + 1
            book.apply(r)
            kept.append(r)
        async with http.get(ep.rest_url + "/api/v4/spot/order_book",
                            params={"currency_pair": "ETH_USDT", "limit": "100", "with_id": "true"}) as r:
            later = json.loads(await r.text())
    assert later["id"] == kept[-1]["u"]
    expected = Book()
    expected.reset(later)
    assert (book.bids, book.asks) == (expected.bids, expected.asks)


async def test_update_full_first_option(http) -> None:
    opts = {"gateio": {"update_full_first": True}}
    async with (
        await start_simulators(("gateio",), tick_ms=TICK_MS, venue_options=opts) as s,
        http.ws_connect(s.endpoints["gateio"].ws_url + PATH) as ws,
    ):
        await ws.send_str(req("spot.order_book_update", ["BTC_USDT", "20ms"]))
        results = updates(await read_json(ws, 0.3), "BTC_USDT")
    first = results[0]
    assert first["full"] is True and first["l"] == "20" and len(first["b"]) == len(first["a"]) == 20
    assert results[1]["U"] == first["u"] + 1 and "full" not in results[1]
    book = Book()
    book.reset(first)
    for r in results[1:]:
        book.apply(r)
        assert len(book.bids) <= 20 and len(book.asks) <= 20


async def test_errors_fail_the_whole_request(sims: Simulators, http) -> None:
    async with http.ws_connect(sims.endpoints["gateio"].ws_url + PATH) as ws:
        await ws.send_str(req("spot.trades", ["NOPE_USDT"], req_id=3))
        await ws.send_str(req("spot.book_ticker", ["BTC_USDT", "NOPE_USD"], req_id=4))
        await ws.send_str(req("spot.obu", ["ob.BTC_USDT.50"], req_id=5))
        await ws.send_str(req("spot.obu", ["ob.BTC_USDT.50"], req_id=6))
        await ws.send_str(req("spot.obu", ["ob.BTC_USDT.20"], req_id=7))
        await ws.send_str(json.dumps({"id": 8, "channel": "spot.trades", "event": "subscribe",
                                      "payload": ["BTC_USDT"]}))  # no time
        await ws.send_str(req("spot.candles", ["BTC_USDT"], req_id=9))
        await ws.send_str("{not json")
        await ws.send_str(req("spot.ping"))
        frames = await read_json(ws, 0.4)
    replies = {f.get("id"): f for f in frames if f.get("error")}
    (pong,) = [f for f in frames if f.get("channel") == "spot.pong"]
    assert pong == {"time": pong["time"], "channel": "spot.pong", "event": "", "error": None, "result": None}
    assert set(replies) == {3, 4, 6, 7, 8, 9, None}
    err = replies[3]
    assert err["error"] == {"code": 2, "message": "unknown currency pair: NOPE_USDT"}
    assert err["result"] == {"status": "fail"} and err["payload"] == ["NOPE_USDT"]
    assert (err["channel"], err["event"]) == ("spot.trades", "subscribe")
    assert replies[4]["error"]["message"] == "unknown currency pair: NOPE_USD"
    assert replies[6]["error"] == {"code": 2, "message": "Alert sub ob.BTC_USDT.50"}
    assert all(replies[i]["error"]["code"] == 2 for i in (7, 8, 9))
    assert replies[None]["error"]["code"] == 1
    assert not [f for f in frames if f.get("channel") == "spot.book_ticker" and f["event"] == "update"]
    (ok,) = [f for f in frames if f.get("id") == 5]
    assert ok["result"] == {"status": "success"}


async def test_server_pings_and_the_timeout(http) -> None:
    opts = {"gateio": {"ping_interval_s": 0.1, "ping_timeout_s": 0.4}}
    async with await start_simulators(("gateio",), tick_ms=TICK_MS, venue_options=opts) as s:
        url = s.endpoints["gateio"].ws_url + PATH
        async with (
            http.ws_connect(url, autoping=False) as deaf,
            http.ws_connect(url) as polite,
            http.ws_connect(url, autoping=False) as app_pinger,
        ):
            loop = asyncio.get_running_loop()
            start = loop.time()
            kinds = []
            while loop.time() - start < 1.0:
                await app_pinger.send_str(req("spot.ping"))
                while True:  # its pings are never answered; spot.ping alone keeps it
                    msg = await app_pinger.receive(timeout=1)
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        assert json.loads(msg.data)["channel"] == "spot.pong"
                        break
                    assert msg.type == aiohttp.WSMsgType.PING
                await asyncio.sleep(0.1)
            while True:
                msg = await deaf.receive(timeout=1)
                kinds.append(msg.type)
                if msg.type in CLOSED:
                    break
            assert kinds.count(aiohttp.WSMsgType.PING) >= 2 and kinds[-1] in CLOSED
            assert deaf.close_code == 1008
            assert not polite.closed and not app_pinger.closed


async def test_strict_mode_needs_spot_ping(http) -> None:
    opts = {"gateio": {"ping_interval_s": 0.1, "ping_timeout_s": 0.4, "pongs_count": False}}
    async with await start_simulators(("gateio",), tick_ms=TICK_MS, venue_options=opts) as s:
        url = s.endpoints["gateio"].ws_url + PATH
        async with http.ws_connect(url) as polite, http.ws_connect(url) as app_pinger:
            for _ in range(8):
                await app_pinger.send_str(req("spot.ping"))
                await read_until(app_pinger, lambda f: f["channel"] == "spot.pong")
                await asyncio.sleep(0.1)
            assert (await polite.receive(timeout=1)).type in CLOSED  # answered every ping frame
            assert not app_pinger.closed


async def test_skip_sequence_and_full_snapshot(sims: Simulators, http) -> None:
    gate = sims.venue("gateio")
    async with http.ws_connect(sims.endpoints["gateio"].ws_url + PATH) as ws:
        await ws.send_str(req("spot.obu", ["ob.BTC_USDT.50", "ob.ETH_USDT.50"]))
        await ws.send_str(req("spot.order_book_update", ["BTC_USDT", "100ms"]))
        frames = await read_json(ws, 0.15)
        gate.skip_sequence("BTC-USDT")
        sims.inject("gateio", "full_snapshot", symbol="ETH-USDT")
        frames += await read_json(ws, 0.3)
    assert breaks(obu(frames, "ob.BTC_USDT.50")) == 1
    assert breaks(updates(frames, "BTC_USDT")) == 1
    eth = obu(frames, "ob.ETH_USDT.50")
    fulls = [i for i, r in enumerate(eth) if r.get("full")]
    assert len(fulls) == 2 and fulls[0] == 0  # the subscription's and the extra one
    assert breaks(eth) == 0  # the extra full book continues the chain
    book = Book()
    for r in eth:
        if r.get("full"):
            book.reset(r)
        else:
            book.apply(r)
        assert not book.crossed()


async def test_upgrade_event_then_close(sims: Simulators, http) -> None:
    async with http.ws_connect(sims.endpoints["gateio"].ws_url + PATH) as ws:
        await asyncio.sleep(0.05)
        assert sims.inject("gateio", "upgrade", close_after_s=0.1) == 1
        msg = json.loads((await ws.receive(timeout=1)).data)
        assert msg == {"time": msg["time"], "time_ms": msg["time_ms"], "channel": "", "event": "upgrade"}
        assert (await ws.receive(timeout=1)).type in CLOSED
        assert ws.close_code == 1001


def _client_frame(text: str) -> bytes:
    """A masked text frame, as every client must send (RFC 6455 §5.3)."""
    data, mask = text.encode(), os.urandom(4)
    n = len(data)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


async def test_a_consumer_that_stops_reading_is_cut(http) -> None:
    opts = {"gateio": {"sndbuf_bytes": 4096, "max_buffer_bytes": 64 * 1024}}
    async with await start_simulators(("gateio",), ("BTC-USDT", "ETH-USDT", "SOL-USDT"),
                                      tick_ms=TICK_MS, venue_options=opts) as s:
        gate = s.venue("gateio")
        port = int(s.endpoints["gateio"].ws_url.rsplit(":", 1)[1])
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            key = base64.b64encode(os.urandom(16)).decode()
            await loop.sock_sendall(sock, (
                f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode())
            head = b""
            while b"\r\n\r\n" not in head:
                head += await loop.sock_recv(sock, 1)  # byte by byte: leave the frames unread
            assert head.startswith(b"HTTP/1.1 101")
            for pair in ("BTC_USDT", "ETH_USDT", "SOL_USDT"):
                await loop.sock_sendall(sock, _client_frame(req("spot.obu", [f"ob.{pair}.400"])))
            for _ in range(100):  # a busy market, and a client that reads nothing
                if gate.slow_closes:
                    break
                for symbol in ("BTC-USDT", "ETH-USDT", "SOL-USDT"):
                    gate.full_snapshot(symbol)
                await asyncio.sleep(0.03)
            assert gate.slow_closes == 1 and not gate.links
        finally:
            sock.close()
        async with http.ws_connect(s.endpoints["gateio"].ws_url + PATH) as ws:
            await asyncio.sleep(0.05)
            assert s.inject("gateio", "slow_consumer") == 1
            assert (await ws.receive(timeout=1)).type in CLOSED
            assert gate.slow_closes == 2


async def test_book_ticker_and_trades(sims: Simulators, http) -> None:
    async with http.ws_connect(sims.endpoints["gateio"].ws_url + PATH) as ws:
        await ws.send_str(req("spot.book_ticker", ["BTC_USDT", "ETH_USDT"]))
        await ws.send_str(req("spot.trades", ["BTC_USDT", "ETH_USDT"]))
        frames = await read_json(ws, 1.0)
        await ws.send_str(req("spot.trades", ["BTC_USDT", "ETH_USDT"], event="unsubscribe", req_id=2))
        frames += await read_until(ws, lambda f: f.get("id") == 2)
        after = await read_json(ws, 0.2)
    assert not [f for f in after if f["channel"] == "spot.trades"]
    tickers = [f for f in frames if f["channel"] == "spot.book_ticker" and f["event"] == "update"]
    assert len(tickers) > 10
    last_u: dict[str, int] = {}
    for f in tickers:
        assert list(f) == ["time", "time_ms", "channel", "event", "result"]
        r = f["result"]
        assert list(r) == ["t", "u", "s", "b", "B", "a", "A"]
        assert Decimal(r["b"]) < Decimal(r["a"]) and Decimal(r["B"]) > 0 and Decimal(r["A"]) > 0
        assert r["u"] > last_u.get(r["s"], 0)
        last_u[r["s"]] = r["u"]
    trades = [f["result"] for f in frames if f["channel"] == "spot.trades" and f["event"] == "update"]
    assert trades
    for t in trades:
        assert list(t) == ["id", "id_market", "create_time", "create_time_ms", "side",
                           "currency_pair", "amount", "price", "range"]
        assert t["side"] in ("buy", "sell") and re.match(r"^\d+\.\d{10}$", t["amount"])
        assert re.match(r"^\d{13}(\.\d+)?$", t["create_time_ms"])
        assert int(t["create_time_ms"][:10]) == t["create_time"]
        assert t["range"] == f"{t['id']}-{t['id']}"
    ids = [t["id"] for t in trades]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    for pair in ("BTC_USDT", "ETH_USDT"):
        markets = [t["id_market"] for t in trades if t["currency_pair"] == pair]
        assert markets == list(range(markets[0], markets[0] + len(markets)))  # continuous per market


async def test_unknown_path_and_drop(sims: Simulators, http) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await http.ws_connect(sims.endpoints["gateio"].ws_url + "/ws/v3/")
    async with http.ws_connect(sims.endpoints["gateio"].ws_url + "/ws/v4") as ws:  # no slash: fine
        await asyncio.sleep(0.05)
        assert sims.venue("gateio").drop_connections() == 1
        assert (await ws.receive(timeout=1)).type in CLOSED


async def test_rest_pairs_and_errors(sims: Simulators, http) -> None:
    rest = sims.endpoints["gateio"].rest_url
    async with http.get(rest + "/api/v4/spot/currency_pairs") as r:
        pairs = {p["id"]: p for p in json.loads(await r.text())}
    assert set(pairs) == {"BTC_USDT", "ETH_USDT"}
    btc = pairs["BTC_USDT"]
    assert (btc["base"], btc["quote"], btc["precision"], btc["amount_precision"], btc["trade_status"]) == (
        "BTC", "USDT", 2, 4, "tradable")
    async with http.get(rest + "/api/v4/spot/currency_pairs/ETH_USDT") as r:
        assert json.loads(await r.text())["id"] == "ETH_USDT"
    for params, label in (({}, "MISSING_REQUIRED_PARAM"), ({"currency_pair": "NOPE_USDT"}, "INVALID_CURRENCY_PAIR")):
        async with http.get(rest + "/api/v4/spot/order_book", params=params) as r:
            assert r.status == 400 and json.loads(await r.text())["label"] == label
    async with http.get(rest + "/api/v4/spot/order_book", params={"currency_pair": "BTC_USDT"}) as r:
        book = json.loads(await r.text())
    assert "id" not in book and len(book["bids"]) == len(book["asks"]) == 10  # Gate's default limit
    assert book["update"] <= book["current"]
