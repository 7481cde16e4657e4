"""End to end: simulators on loopback, the real client code, the arbitrage the model opened."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import ROUND_DOWN, Decimal, localcontext

from arbwire.config import Config, VenueConfig
from arbwire.engine import Engine
from arbwire.model import Opportunity, OpportunityEvent, SyncState
from arbwire.sim.market import BookCopy, MarketConfig, instrument_for
from arbwire.sim.runner import start_simulators

FEE = Decimal("0.001")  # 10 bps, the base-tier taker fee of both simulated venues
MIN_EDGE = Decimal("0.001")
MAX_NOTIONAL = Decimal(10_000)
LOT = Decimal("0.00000001")


def _walk(levels: list[tuple[Decimal, Decimal]], size: Decimal) -> Decimal | None:
    """Cost of taking ``size`` from ``levels`` (best first), None if too thin."""
    left, cost = size, Decimal(0)
    for price, qty in levels:
        take = min(left, qty)
        cost += take * price
        left -= take
        if not left:
            return cost
    return None


def oracle_size(buy: BookCopy, sell: BookCopy) -> Decimal:
    """Largest size (to 1e-8) whose average prices clear the minimum net edge, by bisection."""
    asks, bids = buy.sorted_asks(), sell.sorted_bids()

    def clears(q: Decimal) -> bool:
        cost, proceeds = _walk(asks, q), _walk(bids, q)
        if cost is None or proceeds is None or cost > MAX_NOTIONAL:
            return False
        return proceeds * (1 - FEE) >= cost * (1 + FEE) * (1 + MIN_EDGE)

    with localcontext() as ctx:
        ctx.prec = 60
        lo, hi = Decimal(0), sum(q for _, q in asks)
        while hi - lo > LOT:
            mid = ((lo + hi) / 2).quantize(LOT)
            if mid in (lo, hi):
                break
            lo, hi = (mid, hi) if clears(mid) else (lo, mid)
        return hi if clears(hi) else lo


async def test_demo_finds_the_arbitrage_the_model_opened(tmp_path):
    market = MarketConfig(episode_first_s=0.8, episode_every_s=1.6, episode_duration_s=0.6)
    sims = await start_simulators(venues=("binance", "okx"), seed=11, tick_ms=50, market=market)
    config = Config(
        instrument_cache_dir=str(tmp_path),
        venues={
            name: VenueConfig(symbols=["BTC-USDT", "ETH-USDT"], ws_url=ep.ws_url, rest_url=ep.rest_url)
            for name, ep in sims.endpoints.items()
        }
    )
    engine = Engine(config)
    seen: list[Opportunity] = []
    engine.listeners.append(lambda e: seen.append(e) if isinstance(e, Opportunity) else None)
    task = asyncio.create_task(engine.run())
    try:
        await asyncio.sleep(4.5)
        states = {(v, s): sync.state for v, f in engine.feeds.items() for s, sync in f.syncs.items()}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sims.close()

    assert all(state is SyncState.SYNCED for state in states.values()), states
    episodes = [ep for ep in sims.model.episodes if ep.start_ns and ep.end_ns]
    assert len(episodes) >= 2, "the model should have opened and closed arbitrage by now"
    for ep in episodes:
        during = [
            o
            for o in seen
            if o.symbol == ep.symbol
            and o.event is not OpportunityEvent.CLOSED
            and ep.start_ns <= o.recv_ns <= ep.end_ns + 50_000_000
        ]
        assert during, f"episode {ep.id} ({ep.symbol} buy {ep.buy_venue} sell {ep.sell_venue}) not found"
        assert {(o.buy_venue, o.sell_venue) for o in during} == {(ep.buy_venue, ep.sell_venue)}
        best = max(during, key=lambda o: Decimal(o.size))
        # the detector rounds down to the venues' lot, which it learned from their instrument lists
        lot = Decimal(str(instrument_for(ep.symbol).lot))
        expected = oracle_size(ep.buy_book, ep.sell_book).quantize(lot, rounding=ROUND_DOWN)
        assert Decimal(best.size) == expected, (ep.id, best.size, expected)
        assert Decimal(best.buy_price) <= ep.buy_price * (1 + Decimal("0.0001"))
        closed = [
            o
            for o in seen
            if o.event is OpportunityEvent.CLOSED
            and (o.symbol, o.buy_venue, o.sell_venue) == (ep.symbol, ep.buy_venue, ep.sell_venue)
            and o.recv_ns >= ep.end_ns
        ]
        assert closed and closed[0].lifetime_ns > 0
    # outside the episodes the venues never look crossed after fees
    windows = [(ep.start_ns, (ep.end_ns or 1 << 62) + 50_000_000) for ep in sims.model.episodes if ep.start_ns]
    for o in seen:
        if o.event is OpportunityEvent.OPENED:
            assert any(start <= o.recv_ns <= end for start, end in windows), o


async def test_five_venues_sync_and_show_arbitrage_on_all_ten_pairs(tmp_path):
    venues = ("binance", "okx", "bybit", "gateio", "htx")
    market = MarketConfig(episode_first_s=0.8, episode_every_s=0.7, episode_duration_s=0.5, episode_pairs="cycle")
    sims = await start_simulators(venues=venues, seed=4, tick_ms=100, market=market)
    config = Config(
        instrument_cache_dir=str(tmp_path),
        venues={
            name: VenueConfig(symbols=["BTC-USDT", "ETH-USDT"], ws_url=ep.ws_url, rest_url=ep.rest_url)
            for name, ep in sims.endpoints.items()
        },
    )
    engine = Engine(config)
    seen: list[Opportunity] = []
    engine.listeners.append(lambda e: seen.append(e) if isinstance(e, Opportunity) else None)
    task = asyncio.create_task(engine.run())
    try:
        await asyncio.sleep(10)
        states = {(v, s): sync.state for v, f in engine.feeds.items() for s, sync in f.syncs.items()}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sims.close()
    assert len(states) == 10 and all(st is SyncState.SYNCED for st in states.values()), states
    found = set()
    for ep in sims.model.episodes:
        if not ep.start_ns:
            continue
        end = (ep.end_ns or 1 << 62) + 50_000_000
        if any(
            o.event is OpportunityEvent.OPENED
            and (o.symbol, o.buy_venue, o.sell_venue) == (ep.symbol, ep.buy_venue, ep.sell_venue)
            and ep.start_ns <= o.recv_ns <= end
            for o in seen
        ):
            found.add(frozenset((ep.buy_venue, ep.sell_venue)))
    assert len(found) == 10, sorted(tuple(sorted(p)) for p in found)
