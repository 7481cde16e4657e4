"""End to end: simulators on loopback, the real client code, the arbitrage the model opened."""

from __future__ import annotations

import asyncio

from arbwire.engine import Engine
from arbwire.model import OpportunityEvent, SyncState
from arbwire.sim.market import MarketConfig
from arbwire.sim.runner import start_simulators
from helpers.engine import collect_opportunities, running, sim_config, sync_states
from helpers.oracle import assert_episodes_found


async def _run_on_sims(tmp_path, venues, seconds, **sim_options):
    """Simulators for ``venues``, an engine on them for ``seconds``: (sims, opportunities, book states)."""
    sims = await start_simulators(venues=venues, **sim_options)
    engine = Engine(sim_config(sims, tmp_path))
    seen = collect_opportunities(engine)
    try:
        async with running(engine):
            await asyncio.sleep(seconds)
            states = sync_states(engine)
    finally:
        await sims.close()
    return sims, seen, states


async def test_demo_finds_the_arbitrage_the_model_opened(tmp_path):
    market = MarketConfig(episode_first_s=0.8, episode_every_s=1.6, episode_duration_s=0.6)
    sims, seen, states = await _run_on_sims(tmp_path, ("binance", "okx"), 4.5, seed=11, tick_ms=50, market=market)

    assert all(state is SyncState.SYNCED for state in states.values()), states
    assert_episodes_found(sims.model.episodes, seen, check_buy_price=True)


async def test_five_venues_sync_and_show_arbitrage_on_all_ten_pairs(tmp_path):
    venues = ("binance", "okx", "bybit", "gateio", "htx")
    market = MarketConfig(episode_first_s=0.8, episode_every_s=0.7, episode_duration_s=0.5, episode_pairs="cycle")
    sims, seen, states = await _run_on_sims(tmp_path, venues, 10, seed=4, tick_ms=100, market=market)
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
