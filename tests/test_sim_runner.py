"""Starting the simulators, driving them, faults from a plan, and the ``arbwire sim`` lines."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from arbwire.sim.faults import FaultAt, parse_fault
from arbwire.sim.runner import start_simulators
from arbwire.sim.server import FaultError

Side = dict[Decimal, Decimal]


async def drain(ws: aiohttp.ClientWebSocketResponse, quiet_s: float = 0.05) -> list[Any]:
    """Frames until the link has been quiet for ``quiet_s``."""
    out = []
    while True:
        try:
            msg = await ws.receive(timeout=quiet_s)
        except TimeoutError:
            return out
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        out.append(json.loads(msg.data))


def apply(bids: Side, asks: Side, new_bids: list, new_asks: list) -> None:
    for side, levels in ((bids, new_bids), (asks, new_asks)):
        for level in levels:
            price, size = Decimal(level[0]), Decimal(level[1])
            if size == 0:
                side.pop(price, None)
            else:
                side[price] = size


async def test_episode_copies_are_exactly_what_the_wire_shows() -> None:
    """Books rebuilt from both venues' frames equal the episode's book copies."""
    sims = await start_simulators(seed=2, tick_ms=100, autostart=False)
    books: dict[tuple[str, str], tuple[Side, Side]] = {
        (v, s): ({}, {}) for v in ("binance", "okx") for s in ("BTC-USDT", "ETH-USDT")
    }
    try:
        async with aiohttp.ClientSession() as http:
            b_ep, o_ep = sims.endpoints["binance"], sims.endpoints["okx"]
            bws = await http.ws_connect(b_ep.ws_url + "/stream?streams=btcusdt@depth@100ms/ethusdt@depth@100ms")
            ows = await http.ws_connect(o_ep.ws_url + "/ws/v5/public")
            await ows.send_str(json.dumps({"op": "subscribe", "args": [
                {"channel": "books", "instId": "BTC-USDT"}, {"channel": "books", "instId": "ETH-USDT"}]}))
            for f in await drain(ows):
                if f.get("action") == "snapshot":
                    apply(*books[("okx", f["arg"]["instId"])], f["data"][0]["bids"], f["data"][0]["asks"])
            for symbol in ("BTC-USDT", "ETH-USDT"):
                async with http.get(b_ep.rest_url + "/api/v3/depth",
                                    params={"symbol": symbol.replace("-", ""), "limit": "5000"}) as r:
                    snap = json.loads(await r.text())
                apply(*books[("binance", symbol)], snap["bids"], snap["asks"])
            episode = None
            for _ in range(15):
                sims.tick()
                for f in await drain(bws):
                    d = f["data"]
                    apply(*books[("binance", d["s"][:-4] + "-USDT")], d["b"], d["a"])
                for f in await drain(ows):
                    apply(*books[("okx", f["arg"]["instId"])], f["data"][0]["bids"], f["data"][0]["asks"])
                if sims.model.episodes:
                    episode = sims.model.episodes[0]
                    break
            await bws.close()
            await ows.close()
    finally:
        await sims.close()
    assert episode is not None and episode.start_ns > 0
    bids, asks = books[(episode.buy_venue, episode.symbol)]
    assert (bids, asks) == (dict(episode.buy_book.bids), dict(episode.buy_book.asks))
    bids, asks = books[(episode.sell_venue, episode.symbol)]
    assert (bids, asks) == (dict(episode.sell_book.bids), dict(episode.sell_book.asks))
    assert min(books[(episode.buy_venue, episode.symbol)][1]) == episode.buy_price
    assert max(books[(episode.sell_venue, episode.symbol)][0]) == episode.sell_price


async def test_endpoints_episodes_and_close() -> None:
    seen: list[tuple[str, int]] = []
    async with await start_simulators(
        tick_ms=50, on_episode=lambda kind, ep: seen.append((kind, ep.id))
    ) as sims:
        ports = set()
        for name, ep in sims.endpoints.items():
            assert ep.venue == name
            assert ep.ws_url.startswith("ws://127.0.0.1:") and ep.rest_url.startswith("http://127.0.0.1:")
            ports |= {ep.ws_url.rsplit(":", 1)[1], ep.rest_url.rsplit(":", 1)[1]}
        assert len(ports) == 4
        await asyncio.sleep(1.3)
        assert seen and seen[0] == ("opened", 1)
        ep = sims.model.episodes[0]
        assert ep.start_ns > 0 and {ep.buy_venue, ep.sell_venue} == {"binance", "okx"}
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http:
            await http.get(sims.endpoints["binance"].rest_url + "/api/v3/ping")


async def test_faults_by_name_and_from_a_plan() -> None:
    plan = [FaultAt(0.05, "binance", "stall"), FaultAt(0.05, "market", "freeze", {"symbol": "ETH-USDT"})]
    async with await start_simulators(tick_ms=50, faults=plan) as sims:
        with pytest.raises(FaultError):
            sims.inject("binance", "bad_checksum", symbol="BTC-USDT")  # an OKX-only fault
        with pytest.raises(FaultError):
            sims.inject("okx", "skip_sequence", symbol="XRP-USDT")
        with pytest.raises(KeyError):
            sims.venue("kraken")
        await asyncio.sleep(0.2)
        assert sims.venue("binance").stalled and not sims.venue("okx").stalled
        step = sims.model.step()
        assert all(symbol != "ETH-USDT" for _, symbol in step.diffs)


def test_parse_fault() -> None:
    assert parse_fault("2.5:okx:skip_sequence:symbol=BTC-USDT") == FaultAt(
        2.5, "okx", "skip_sequence", {"symbol": "BTC-USDT"})
    assert parse_fault("1:binance:stall:seconds=0.5").args == {"seconds": 0.5}
    assert parse_fault("3:okx:drop_connections") == FaultAt(3.0, "okx", "drop_connections")
    with pytest.raises(ValueError):
        parse_fault("okx:stall")


async def test_unknown_venue_is_refused() -> None:
    with pytest.raises(ValueError, match="kraken"):
        await start_simulators(("binance", "kraken"))


def test_cli_prints_endpoints_then_episodes_as_json_lines() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "arbwire.sim.runner", "--duration", "1.4", "--tick-ms", "50",
         "--set", "okx.ws_snapshot=false", "--fault", "0.5:okx:skip_sequence:symbol=BTC-USDT"],
        capture_output=True, text=True, timeout=20,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["event"] for line in lines[:3]] == ["endpoint", "endpoint", "ready"]
    assert {line["venue"] for line in lines[:2]} == {"binance", "okx"}
    assert lines[3]["event"] == "episode_opened" and "buy_book" not in lines[3]
