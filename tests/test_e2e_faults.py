"""Faults injected by the simulators, seen through the real client: only the broken book suffers."""

from __future__ import annotations

import asyncio

from arbwire.config import Config
from arbwire.engine import Engine
from arbwire.model import BadFrame, FeedState, Opportunity, OpportunityEvent, SyncState
from arbwire.sim.market import MarketConfig
from arbwire.sim.runner import start_simulators
from helpers.engine import all_synced, fast_link, running, sim_config, until

SYMBOLS = ["BTC-USDT", "ETH-USDT"]


def _config(sims, tmp_path, **venue_options) -> Config:
    return sim_config(sims, tmp_path, symbols=SYMBOLS, options=venue_options, link=fast_link())


async def _run(engine: Engine, seconds: float, during=None) -> list:
    async with running(engine) as events:
        if during is not None:
            await during(events)
        else:
            await asyncio.sleep(seconds)
    return events


async def test_skipped_sequence_resyncs_that_symbol_only_and_never_trades_on_it(tmp_path):
    # an episode open for the whole run: the broken book would show an opportunity if used
    market = MarketConfig(episode_first_s=0.3, episode_every_s=100, episode_duration_s=100)
    sims = await start_simulators(venues=("binance", "okx"), symbols=SYMBOLS, seed=5, tick_ms=50, market=market)
    engine = Engine(_config(sims, tmp_path))

    async def scenario(events: list) -> None:
        await until(lambda: all_synced(engine))
        await until(lambda: any(ep.start_ns for ep in sims.model.episodes))
        await asyncio.sleep(0.3)
        broken.append(sims.model.episodes[0].symbol)  # break the book that shows the arbitrage
        for venue in ("binance", "okx"):
            sims.inject(venue, "skip_sequence", symbol=broken[0])
        await until(lambda: engine.feeds["binance"].syncs[broken[0]].resyncs >= 1)
        await until(lambda: engine.feeds["okx"].syncs[broken[0]].resyncs >= 1)
        await until(lambda: all_synced(engine))
        await asyncio.sleep(0.3)
        for venue, feed in engine.feeds.items():  # as the run ends, before shutdown
            counts[venue] = {s: (y.gaps, y.resyncs, y.synced) for s, y in feed.syncs.items()}
            connects[venue] = engine.links[venue].stats.connects

    broken: list[str] = []
    counts: dict[str, dict] = {}
    connects: dict[str, int] = {}
    try:
        events = await _run(engine, 0, scenario)
    finally:
        await sims.close()
    for venue in ("binance", "okx"):
        (sym,) = broken
        (other,) = set(SYMBOLS) - {sym}
        assert counts[venue][sym] == (1, 1, True), venue
        assert counts[venue][other] == (0, 0, True), venue
        assert connects[venue] == 1  # the link itself never dropped
        # between the gap and the resync, no opportunity used that venue's BTC book
        states = [e for e in events if isinstance(e, FeedState) and e.venue == venue and e.symbol == sym]
        broke = next(e.recv_ns for e in states if e.state is SyncState.RESYNCING)
        healed = next(e.recv_ns for e in states if e.state is SyncState.SYNCED and e.recv_ns > broke)
        for e in events:
            if (
                isinstance(e, Opportunity)
                and e.symbol == sym
                and venue in (e.buy_venue, e.sell_venue)
                and e.event is not OpportunityEvent.CLOSED
            ):
                assert not broke <= e.recv_ns < healed, e
    # the episode was seen before the break (so the check above had something to guard)
    assert any(isinstance(e, Opportunity) and e.symbol == broken[0] for e in events)


async def test_bad_frames_are_counted_and_the_link_carries_on(tmp_path):
    sims = await start_simulators(venues=("binance", "okx"), symbols=SYMBOLS, seed=3, tick_ms=50)
    engine = Engine(_config(sims, tmp_path))
    junk = [
        b"{not json",
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":"soon","U":1,"u":2,"b":[],"a":[]}}',
        b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"U":1,',
        b'{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":5}]}',
        b'{"event":"mystery"}',
    ]

    async def scenario(events: list) -> None:
        await until(lambda: all_synced(engine))
        before = {v: engine.links[v].stats.frames for v in engine.links}
        for venue in ("binance", "okx"):
            for frame in junk:
                sims.venue(venue).inject("send_raw", payload=frame)
        await until(lambda: all(engine.links[v].stats.frames > before[v] + 20 for v in engine.links))
        for venue in engine.links:
            synced[venue] = all(s.synced for s in engine.feeds[venue].syncs.values())

    synced: dict[str, bool] = {}
    try:
        events = await _run(engine, 0, scenario)
    finally:
        await sims.close()
    bad = [e for e in events if isinstance(e, BadFrame)]
    for venue in ("binance", "okx"):
        assert engine.feeds[venue].session.stats.bad_frames >= 4, venue
        assert any(b.venue == venue for b in bad)
        assert engine.links[venue].stats.connects == 1
        assert synced[venue]


async def test_a_symbol_the_venue_does_not_list_is_reported_once_and_the_rest_run(tmp_path):
    sims = await start_simulators(venues=("binance", "okx"), symbols=SYMBOLS, seed=2, tick_ms=50)
    config = _config(sims, tmp_path)
    for venue in config.venues.values():
        venue.symbols = [*SYMBOLS, "NOPE-USDT"]
    engine = Engine(config)

    async def scenario(events: list) -> None:
        await until(lambda: engine.instruments is not None and all_synced(engine))
        await asyncio.sleep(0.2)

    try:
        events = await _run(engine, 0, scenario)
    finally:
        await sims.close()
    errors = [e for e in events if type(e).__name__ == "VenueError"]
    for venue in ("binance", "okx"):
        mine = [e for e in errors if e.venue == venue]
        assert len(mine) == 1 and mine[0].symbol == "NOPE-USDT", mine
        assert set(engine.feeds[venue].syncs) == set(SYMBOLS)
    assert engine.unlisted == {"binance": ["NOPE-USDT"], "okx": ["NOPE-USDT"]}


async def test_a_venue_listing_none_of_the_symbols_is_left_out_and_the_others_run(tmp_path):
    sims = await start_simulators(venues=("binance", "okx"), symbols=SYMBOLS, seed=2, tick_ms=50)
    config = _config(sims, tmp_path)
    config.venues["okx"].symbols = ["NOPE-USDT"]
    engine = Engine(config)

    async def scenario(events: list) -> None:
        await until(lambda: engine.instruments is not None and all_synced(engine))
        summary.update(engine.snapshot())

    summary: dict = {}
    try:
        await _run(engine, 0, scenario)
    finally:
        await sims.close()
    assert set(engine.feeds) == {"binance"} and set(summary["venues"]) == {"binance"}
    assert engine.unlisted == {"okx": ["NOPE-USDT"]}


async def test_okx_spent_subscribe_allowance_moves_the_books_to_a_new_connection(tmp_path):
    """OKX allows 480 subscribe/unsubscribe requests an hour per connection (here 4). When a
    resync finds no room for its two, the link opens a new connection, the broken book
    takes the snapshot that connection gets on subscribing, the others never leave SYNCED,
    and the old connection is then closed."""
    from arbwire.monitor.actions import Actions
    from arbwire.net.link import Link

    sims = await start_simulators(venues=("okx",), symbols=("BTC-USDT", "ETH-USDT"), seed=31, tick_ms=50)
    try:
        engine = Engine(sim_config(sims, tmp_path, link=fast_link(), options={"okx": {"max_requests_per_hour": 4}}))
        actions = Actions(engine)
        okx = engine.feeds["okx"]
        link: Link = engine.links["okx"]
        states: list[FeedState] = []
        engine.listeners.append(lambda e: states.append(e) if isinstance(e, FeedState) else None)
        async with running(engine):
            await until(lambda: all_synced(engine), what="books synced")
            assert actions.resync("okx", "BTC-USDT", "operator")[0]  # 2 of the 3 left
            await until(lambda: all_synced(engine), what="BTC resynced by resubscribing")
            assert link.stats.connects == 1 and okx.session.requests_left() == 1
            done, detail = actions.resync("okx", "ETH-USDT", "operator")
            assert done and "Reconnect" in detail
            await until(lambda: link.stats.switchovers == 1 and all_synced(engine), timeout=5,
                        what="a new connection with ETH synced from its snapshot")
            await until(lambda: len(sims.venue("okx").links) == 1, what="the old connection closed")
            applied = okx.syncs["ETH-USDT"].applied
            await until(lambda: okx.syncs["ETH-USDT"].applied > applied + 3, what="ETH updates flow")
        assert link.stats.connects == 2 and okx.session.budget_reconnects == 0  # the new session's count
        assert okx.syncs["BTC-USDT"].resyncs == 1 and okx.syncs["ETH-USDT"].resyncs == 1
        btc_states = [(s.state, s.reason) for s in states if s.symbol == "BTC-USDT"]
        assert (SyncState.RESYNCING, "link lost") not in btc_states
    finally:
        await sims.close()
