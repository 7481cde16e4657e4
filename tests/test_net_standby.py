"""Warm standby (``LinkOptions.warm_standby``) against the Binance and OKX simulators:
losing the primary connection promotes the standby at once, the books never leave
SYNCED; without the option the same loss makes the books resync."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from arbwire.config import Config, LinkConfig, VenueConfig
from arbwire.engine import Engine
from arbwire.model import FeedState, SyncState, Trade
from arbwire.net.link import Link, LinkOptions, Role
from arbwire.sim.market import MarketConfig
from arbwire.sim.runner import Simulators, start_simulators

SYMBOLS = ["BTC-USDT", "ETH-USDT"]
TICK_MS = 50
FAST = dict(backoff_base_s=0.05, backoff_cap_s=0.2, timer_s=0.05, rtt_ping_s=0.2)
MARKET = MarketConfig(episode_first_s=0.3, episode_every_s=0.7, episode_duration_s=0.5)
VENUES = ["binance", "okx"]


def _engine(sims: Simulators, venue: str, **options) -> Engine:
    config = Config(
        venues={
            venue: VenueConfig(
                symbols=list(SYMBOLS),
                ws_url=sims.endpoints[venue].ws_url,
                rest_url=sims.endpoints[venue].rest_url,
            )
        },
        link=LinkConfig(backoff_base_s=0.05, backoff_cap_s=0.2),
    )
    engine = Engine(config)
    opts = LinkOptions(**{**FAST, **options})
    for name, link in list(engine.links.items()):
        engine.links[name] = Link(link.feed, engine.rest, engine.latency[name], opts)
    return engine


@contextlib.asynccontextmanager
async def _running(engine: Engine):
    events: list = []
    engine.listeners.append(events.append)
    task = asyncio.create_task(engine.run())
    try:
        yield events
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(predicate, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


def _synced(engine: Engine) -> bool:
    return all(s.synced for f in engine.feeds.values() for s in f.syncs.values())


def _resyncs(engine: Engine, venue: str) -> dict[str, int]:
    return {s: y.resyncs for s, y in engine.feeds[venue].syncs.items()}


def _server_link(sims: Simulators, venue: str, conn):
    """The simulator's side of one client connection (matched by TCP port)."""
    local = conn.transport.underlying_transport.get_extra_info("sockname")[:2]
    for link in sims.venue(venue).links.values():
        if link.transport.underlying_transport.get_extra_info("peername")[:2] == local:
            return link
    raise AssertionError(f"no simulator link for {conn!r}")


def _lose(sims: Simulators, venue: str, conn) -> None:
    """A network loss of exactly this one connection: TCP abort, no close frame."""
    _server_link(sims, venue, conn).transport.disconnect(graceful=False)


def _standby_ready(link: Link) -> bool:
    shard = link.shards[0]
    sb = shard.standby
    return sb is not None and sb.transport is not None and set(shard.symbols) <= sb.aligned


def _state_changes(events: list, venue: str, since: int) -> list[FeedState]:
    return [e for e in events[since:] if isinstance(e, FeedState) and e.venue == venue]


def _trade_keys(events: list, venue: str) -> list[tuple[str, str]]:
    return [(e.symbol, e.trade_id) for e in events if isinstance(e, Trade) and e.venue == venue]


# -- failover ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("venue", VENUES)
async def test_losing_the_primary_promotes_the_warm_standby_without_resync(venue):
    sims = await start_simulators(venues=(venue,), symbols=SYMBOLS, seed=21, tick_ms=TICK_MS, market=MARKET)
    engine = _engine(sims, venue, warm_standby=True)
    link = engine.links[venue]
    shard = link.shards[0]
    loop = asyncio.get_running_loop()
    try:
        async with _running(engine) as events:
            await _until(lambda: _synced(engine) and _standby_ready(link))
            assert len(sims.venue(venue).links) == 2  # primary and standby, both subscribed
            await asyncio.sleep(0.3)  # overlap: both links carry the same trades
            since = len(events)
            old, standby = shard.primary, shard.standby
            assert old is not None and standby is not None
            updates = engine.counters[venue].book_updates
            _lose(sims, venue, old)
            lost_at = loop.time()
            await _until(lambda: shard.primary is standby, timeout=1.0)
            assert standby.role is Role.PRIMARY and old.closed
            # the feed keeps applying diffs: the next tick's diff lands on the books
            await _until(lambda: engine.counters[venue].book_updates > updates, timeout=1.0)
            await _until(lambda: engine.counters[venue].book_updates > updates + 1, timeout=1.0)
            resumed_s = loop.time() - lost_at
            # a new standby is opened in the background and follows the books again
            await _until(lambda: _standby_ready(link) and shard.standby is not standby)
            await asyncio.sleep(0.3)
            assert _synced(engine)
            assert len(sims.venue(venue).links) == 2
            resyncs = _resyncs(engine, venue)
            events = list(events)
    finally:
        await sims.close()
    stats = link.stats
    assert stats.standby_failovers == 1 and stats.reconnects == 0 and stats.switchovers == 0
    assert stats.connects == 3  # primary, standby, the new standby
    assert resumed_s < 3 * TICK_MS / 1000 + 0.1, resumed_s  # about one tick, no backoff
    assert all(n == 0 for n in resyncs.values()), resyncs
    changes = _state_changes(events, venue, since)
    assert not changes, changes  # the books never left SYNCED
    trades = _trade_keys(events, venue)
    assert trades and len(trades) == len(set(trades))  # no trade delivered twice
    assert _trade_keys(events[since:], venue)  # and trades kept coming after the switch


@pytest.mark.parametrize("venue", VENUES)
async def test_without_standby_the_same_loss_resyncs_the_books(venue):
    sims = await start_simulators(venues=(venue,), symbols=SYMBOLS, seed=22, tick_ms=TICK_MS, market=MARKET)
    engine = _engine(sims, venue)  # warm_standby off (the default)
    link = engine.links[venue]
    shard = link.shards[0]
    try:
        async with _running(engine) as events:
            await _until(lambda: _synced(engine))
            assert shard.standby is None and len(sims.venue(venue).links) == 1
            since = len(events)
            _lose(sims, venue, shard.primary)
            await _until(lambda: link.stats.connects == 2)
            await _until(lambda: _synced(engine))
            resyncs = _resyncs(engine, venue)
            events = list(events)
    finally:
        await sims.close()
    assert link.stats.reconnects == 1 and link.stats.standby_failovers == 0
    assert resyncs == {s: 1 for s in SYMBOLS}
    lost = [e for e in _state_changes(events, venue, since) if e.state is not SyncState.SYNCED]
    assert {e.symbol for e in lost} == set(SYMBOLS)


async def test_losing_the_standby_reopens_it_and_leaves_the_primary_alone():
    venue = "binance"
    sims = await start_simulators(venues=(venue,), symbols=SYMBOLS, seed=23, tick_ms=TICK_MS)
    engine = _engine(sims, venue, warm_standby=True)
    link = engine.links[venue]
    shard = link.shards[0]
    try:
        async with _running(engine) as events:
            await _until(lambda: _synced(engine) and _standby_ready(link))
            since = len(events)
            primary, standby = shard.primary, shard.standby
            _lose(sims, venue, standby)
            await _until(lambda: standby.closed)
            await _until(lambda: _standby_ready(link) and shard.standby is not standby)
            assert shard.primary is primary and primary.transport is not None
            resyncs = _resyncs(engine, venue)
            events = list(events)
    finally:
        await sims.close()
    stats = link.stats
    assert stats.standby_failovers == 0 and stats.reconnects == 0 and stats.connects == 3
    assert all(n == 0 for n in resyncs.values())
    assert not _state_changes(events, venue, since)


async def test_a_dead_primary_fails_over_to_the_standby():
    """Dead-link detection (no frame for ``dead_after_s``) on the primary only."""
    venue = "okx"
    sims = await start_simulators(venues=(venue,), symbols=SYMBOLS, seed=24, tick_ms=TICK_MS)
    engine = _engine(sims, venue, warm_standby=True, dead_after_s=0.5)
    link = engine.links[venue]
    shard = link.shards[0]
    try:
        async with _running(engine) as events:
            await _until(lambda: _synced(engine) and _standby_ready(link))
            since = len(events)
            standby = shard.standby
            shard.primary.transport.underlying_transport.pause_reading()  # frames stop arriving
            await _until(lambda: shard.primary is standby, timeout=3.0)
            await _until(lambda: _standby_ready(link) and shard.standby is not standby)
            resyncs = _resyncs(engine, venue)
            events = list(events)
    finally:
        await sims.close()
    assert link.stats.dead_links == 1 and link.stats.standby_failovers == 1 and link.stats.reconnects == 0
    assert all(n == 0 for n in resyncs.values())
    assert not _state_changes(events, venue, since)


def test_config_key_reaches_the_link_options():
    config = Config(
        venues={"binance": VenueConfig(symbols=["BTC-USDT"])},
        link=LinkConfig(warm_standby=True),
    )
    assert Engine(config).links["binance"].options.warm_standby is True
    assert Engine(Config(venues={"binance": VenueConfig(symbols=["BTC-USDT"])})).links[
        "binance"
    ].options.warm_standby is False
