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


async def _started(venue: str, *, seed: int, market: MarketConfig | None = None, **options):  # type: ignore[no-untyped-def]
    """Simulators for ``venue`` and an engine on them (not yet running): its link and first shard."""
    sims = await start_simulators(venues=(venue,), symbols=SYMBOLS, seed=seed, tick_ms=TICK_MS, market=market)
    engine = _engine(sims, venue, **options)
    link = engine.links[venue]
    return sims, engine, link, link.shards[0]


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
    sims, engine, link, shard = await _started(venue, seed=21, market=MARKET, warm_standby=True)
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
    sims, engine, link, shard = await _started(venue, seed=22, market=MARKET)  # warm_standby off (the default)
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
    sims, engine, link, shard = await _started(venue, seed=23, warm_standby=True)
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
    sims, engine, link, shard = await _started(venue, seed=24, warm_standby=True, dead_after_s=0.5)
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


# -- races: a connection that finishes connecting after the roles changed ----------------------------
class _Gates:
    """Holds the link's connection attempts of one role until released, to force a race."""

    def __init__(self, link: Link, *held: Role) -> None:
        self.open = {role: asyncio.Event() for role in (Role.PRIMARY, Role.STANDBY)}
        for role, gate in self.open.items():
            if role not in held:
                gate.set()
        self.waiting = dict.fromkeys(self.open, 0)
        self.opened: list = []  # every connection opened, in order
        self._real = link._open
        link._open = self._gated  # type: ignore[method-assign]

    async def _gated(self, shard, role: Role):
        gate = self.open.get(role)
        if gate is not None and not gate.is_set():
            self.waiting[role] += 1
            try:
                await gate.wait()
            finally:
                self.waiting[role] -= 1
        conn = await self._real(shard, role)
        self.opened.append(conn)
        return conn

    def release_one_round(self, role: Role) -> None:
        """Let the attempts waiting now through; later ones wait again."""
        self.open[role].set()
        self.open[role].clear()


def _no_backoff_for_a_while(link: Link) -> None:
    link.backoff_s = lambda shard=None: 30.0  # type: ignore[method-assign]


async def test_a_standby_connecting_when_the_primary_drops_takes_over_without_backoff():
    venue = "binance"
    sims, engine, link, shard = await _started(venue, seed=25, warm_standby=True)
    gates = _Gates(link, Role.STANDBY)
    _no_backoff_for_a_while(link)  # the supervisor's reconnect would come 30 s later
    try:
        async with _running(engine):
            await _until(lambda: _synced(engine) and gates.waiting[Role.STANDBY] == 1)
            old = shard.primary
            _lose(sims, venue, old)
            await _until(lambda: old.closed and shard.primary is None)
            gates.release_one_round(Role.STANDBY)  # the standby connects into the gap
            await _until(lambda: shard.primary is not None, timeout=2.0)
            late = shard.primary
            assert late is not old and late.role is Role.PRIMARY
            await _until(lambda: _synced(engine), timeout=3.0)
            assert engine.feeds[venue].session is late.session  # it drives the books
            gates.open[Role.STANDBY].set()
            await _until(lambda: _standby_ready(link) and shard.standby is not late)
            resyncs = _resyncs(engine, venue)
            links = len(sims.venue(venue).links)
    finally:
        await sims.close()
    stats = link.stats
    assert stats.standby_failovers == 1 and stats.reconnects == 1
    assert resyncs == {s: 1 for s in SYMBOLS}  # its stream starts after the loss: one resync
    assert links == 2  # the promoted standby and its new standby, nothing left over


@pytest.mark.parametrize("standby_taken", [False, True])
async def test_a_primary_connecting_after_the_standby_took_over_becomes_the_standby_or_closes(standby_taken):
    venue = "okx"
    sims, engine, link, shard = await _started(venue, seed=26, warm_standby=True)
    gates = _Gates(link, Role.STANDBY)
    link.backoff_s = lambda shard=None: 0.0  # type: ignore[method-assign]
    try:
        async with _running(engine):
            await _until(lambda: _synced(engine) and gates.waiting[Role.STANDBY] == 1)
            gates.open[Role.PRIMARY].clear()  # the supervisor's reconnect will wait
            _lose(sims, venue, shard.primary)
            await _until(lambda: shard.primary is None and gates.waiting[Role.PRIMARY] == 1)
            gates.release_one_round(Role.STANDBY)
            await _until(lambda: shard.primary is not None and _synced(engine), timeout=3.0)
            promoted = shard.primary
            if standby_taken:  # the keeper's next standby connects first
                await _until(lambda: gates.waiting[Role.STANDBY] == 1)
                gates.release_one_round(Role.STANDBY)
                await _until(lambda: _standby_ready(link))
            standby_before = shard.standby
            connects = link.stats.connects
            gates.release_one_round(Role.PRIMARY)  # the supervisor's connection lands late
            await _until(lambda: link.stats.connects == connects + 1)
            await _until(lambda: gates.waiting[Role.PRIMARY] == 0 and len(gates.opened) == connects + 1)
            late = gates.opened[-1]
            if standby_taken:
                await _until(lambda: late.closed)
                assert shard.standby is standby_before
            else:
                await _until(lambda: _standby_ready(link))
                assert shard.standby is late and late.role is Role.STANDBY
            await asyncio.sleep(0.3)
            assert shard.primary is promoted and promoted.role is Role.PRIMARY
            assert _synced(engine)
            primaries = [c for c in link._conns if c.role is Role.PRIMARY]
            links = len(sims.venue(venue).links)
            resyncs = _resyncs(engine, venue)
    finally:
        await sims.close()
    assert primaries == [promoted]  # one connection drives the books
    assert links == 2  # primary and standby; a surplus connection is closed
    assert resyncs == {s: 1 for s in SYMBOLS}
    assert link.stats.standby_failovers == 1


def test_config_key_reaches_the_link_options():
    config = Config(
        venues={"binance": VenueConfig(symbols=["BTC-USDT"])},
        link=LinkConfig(warm_standby=True),
    )
    assert Engine(config).links["binance"].options.warm_standby is True
    assert Engine(Config(venues={"binance": VenueConfig(symbols=["BTC-USDT"])})).links[
        "binance"
    ].options.warm_standby is False
