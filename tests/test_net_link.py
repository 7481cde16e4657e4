"""Link faults against the venue simulators, through the real engine: each test ends with
the books recovered (resynced, and no opportunity from a book while it was unusable) or
with the failure reported in plain words."""

from __future__ import annotations

import asyncio
import functools
import logging
import socket

import msgspec
import pytest

from arbwire.engine import Engine
from arbwire.feed import VenueFeed
from arbwire.latency import VenueLatency
from arbwire.model import FeedState, Opportunity, OpportunityEvent, SyncState, Trade
from arbwire.net.link import Link, LinkOptions
from arbwire.net.rest import RestClient
from arbwire.sim.faulty import FaultyServer, PushServer
from arbwire.sim.market import MarketConfig
from arbwire.sim.runner import start_simulators
from arbwire.sim.tls import TlsRelay, make_certs
from arbwire.sinks import BoundedSink
from arbwire.venues.base import Endpoints, Send
from arbwire.venues.binance import BinanceSession
from helpers.engine import all_synced, fast_link, running, sim_config, until

SYMBOLS = ["BTC-USDT", "ETH-USDT"]
FAST = dict(backoff_base_s=0.05, backoff_cap_s=0.2, timer_s=0.05, rtt_ping_s=0.2)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("tls"))


def _engine(sims, venues=("binance", "okx"), ws_urls=None, ssl_context=None, **options) -> Engine:
    engine = Engine(sim_config(sims, venues=venues, symbols=SYMBOLS, ws_urls=ws_urls, link=fast_link()))
    opts = LinkOptions(**{**FAST, **options})
    for venue, link in list(engine.links.items()):
        engine.links[venue] = Link(
            link.feed, engine.rest, engine.latency[venue], opts, ssl_context=ssl_context
        )
    return engine


_until = functools.partial(until, timeout=8.0)  # link faults take longer to heal


def _no_opportunity_from_unusable_books(events: list, venue: str) -> None:
    """Between a book leaving SYNCED and coming back, no opportunity used it."""
    for symbol in SYMBOLS:
        states = [e for e in events if isinstance(e, FeedState) and e.venue == venue and e.symbol == symbol]
        down = None
        windows = []
        for e in states:
            if e.state is not SyncState.SYNCED and down is None:
                down = e.recv_ns
            elif e.state is SyncState.SYNCED and down is not None:
                windows.append((down, e.recv_ns))
                down = None
        for e in events:
            if (
                isinstance(e, Opportunity)
                and e.symbol == symbol
                and venue in (e.buy_venue, e.sell_venue)
                and e.event is not OpportunityEvent.CLOSED
            ):
                assert not any(a <= e.recv_ns < b for a, b in windows), e


def _resyncs(engine: Engine, venue: str) -> dict[str, int]:
    return {s: y.resyncs for s, y in engine.feeds[venue].syncs.items()}


MARKET = MarketConfig(episode_first_s=0.3, episode_every_s=0.7, episode_duration_s=0.5)


# -- RTT --------------------------------------------------------------------------------------------
async def test_rtt_pings_are_answered_by_both_simulators():
    sims = await start_simulators(venues=("binance", "okx"), symbols=SYMBOLS, seed=2, tick_ms=50)
    engine = _engine(sims, rtt_ping_s=0.1)
    try:
        async with running(engine):
            await _until(lambda: all(engine.latency[v].rtt.summary().count >= 3 for v in ("binance", "okx")))
    finally:
        await sims.close()
    for venue in ("binance", "okx"):
        rtt = engine.latency[venue].rtt.summary()
        assert 0 < rtt.p50 < 50_000  # µs on loopback
        assert engine.links[venue].stats.pongs_overdue == 0


# -- abrupt close, silent stall --------------------------------------------------------------------
async def test_abrupt_close_resyncs_only_that_venue_and_never_trades_on_it():
    sims = await start_simulators(venues=("binance", "okx"), symbols=SYMBOLS, seed=5, tick_ms=50, market=MARKET)
    engine = _engine(sims)
    try:
        async with running(engine) as events:
            await _until(lambda: all_synced(engine))
            okx_before = _resyncs(engine, "okx")
            assert sims.venue("binance").drop_connections() == 1
            await _until(lambda: engine.links["binance"].stats.connects == 2)
            await _until(lambda: all_synced(engine))
            await asyncio.sleep(0.3)
            resyncs = {v: _resyncs(engine, v) for v in ("binance", "okx")}
            events = list(events)
    finally:
        await sims.close()
    link = engine.links["binance"].stats
    assert link.reconnects == 1
    assert resyncs["binance"] == {"BTC-USDT": 1, "ETH-USDT": 1}  # both books went through resync
    assert resyncs["okx"] == okx_before  # the other venue never noticed
    _no_opportunity_from_unusable_books(events, "binance")
    lost = [e for e in events if isinstance(e, FeedState) and e.venue == "binance" and e.reason == "link lost"]
    assert {e.symbol for e in lost} == set(SYMBOLS)


async def test_silent_stall_is_a_dead_link_and_recovers():
    sims = await start_simulators(venues=("binance",), symbols=SYMBOLS, seed=6, tick_ms=50)
    # RTT pings keep being answered during the stall: they must not count as life
    engine = _engine(sims, venues=("binance",), dead_after_s=0.4, rtt_ping_s=0.1)
    try:
        async with running(engine) as events:
            await _until(lambda: all_synced(engine))
            sims.venue("binance").stall(seconds=1.0)
            await _until(lambda: engine.links["binance"].stats.dead_links >= 1)
            await _until(lambda: not sims.venue("binance").stalled)
            await _until(lambda: all_synced(engine))
    finally:
        await sims.close()
    assert "dead link" in engine.links["binance"].stats.last_error or engine.links["binance"].stats.reconnects
    _no_opportunity_from_unusable_books(events, "binance")


async def test_unanswered_pings_mean_a_dead_link(caplog):
    frame = msgspec.json.encode({"stream": "btcusdt@trade", "data": {
        "e": "trade", "E": 1, "s": "BTCUSDT", "t": 1, "p": "1.0", "q": "1.0", "T": 1, "m": True}})
    server = await PushServer(frame, interval_s=0.02, answer_pings=False).start()
    session = BinanceSession(["BTC-USDT"], Endpoints(server.url, "http://127.0.0.1:9"))
    link = Link(VenueFeed(session), RestClient(), VenueLatency("binance"),
                LinkOptions(**{**FAST, "rtt_ping_s": 0.1, "pong_timeout_s": 0.3, "dead_after_s": 30}))
    task = asyncio.create_task(link.run())
    try:
        with caplog.at_level(logging.INFO, logger="arbwire.net"):
            await _until(lambda: link.stats.pongs_overdue >= 1 and link.stats.connects >= 2)
    finally:
        await link.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.close()
    assert server.pings >= 1
    assert any("pong overdue" in r.getMessage() for r in caplog.records)


# -- planned disconnects: make-before-break --------------------------------------------------------
@pytest.mark.parametrize(
    ("venue", "fault", "kwargs"),
    [
        ("binance", "server_shutdown", {"close_after_s": 1.0}),
        ("okx", "notice", {"close_after_s": 1.0}),
        ("gateio", "upgrade", {"close_after_s": 1.0}),
    ],
)
async def test_planned_disconnect_switches_without_losing_the_books(venue, fault, kwargs):
    venues = (venue, "okx" if venue == "binance" else "binance")
    sims = await start_simulators(venues=venues, symbols=SYMBOLS, seed=7, tick_ms=20, market=MARKET)
    engine = _engine(sims, venues=venues)
    try:
        async with running(engine) as events:
            await _until(lambda: all_synced(engine))
            synced_at = len(events)
            updates = engine.counters[venue].book_updates
            sims.inject(venue, fault, **kwargs)
            await _until(lambda: engine.links[venue].stats.switchovers == 1)
            await asyncio.sleep(1.5)  # past the venue's close of the old link
            assert len(sims.venue(venue).links) == 1
            assert engine.counters[venue].book_updates > updates + 20
            assert all_synced(engine)
            resyncs = _resyncs(engine, venue)
            events = list(events)
    finally:
        await sims.close()
    stats = engine.links[venue].stats
    assert stats.connects == 2 and stats.reconnects == 0
    # the books never left SYNCED: no resync, no state change at all after the first sync
    assert all(n == 0 for n in resyncs.values())
    assert not [e for e in events[synced_at:] if isinstance(e, FeedState) and e.venue == venue]
    trades = [(e.symbol, e.trade_id) for e in events if isinstance(e, Trade) and e.venue == venue]
    assert trades and len(trades) == len(set(trades))  # the overlap delivered no trade twice


async def test_planned_disconnect_when_the_old_link_dies_first():
    sims = await start_simulators(venues=("binance",), symbols=SYMBOLS, seed=8, tick_ms=20)
    engine = _engine(sims, venues=("binance",))
    try:
        async with running(engine):
            await _until(lambda: all_synced(engine))
            sims.venue("binance").server_shutdown(close_after_s=0.0)  # closes at once
            await _until(lambda: engine.links["binance"].stats.connects == 2)
            await _until(lambda: all_synced(engine))
            await asyncio.sleep(0.3)
    finally:
        await sims.close()
    assert engine.links["binance"].stats.connects == 2


# -- shards: venue stream limits, resync per link ------------------------------------------------------
async def test_shards_and_a_lost_shard_resyncs_only_its_books():
    sims = await start_simulators(venues=("binance",), symbols=SYMBOLS, seed=9, tick_ms=50)
    engine = _engine(sims, venues=("binance",), max_symbols_per_link=1)
    link = engine.links["binance"]
    assert [s.symbols for s in link.shards] == [["BTC-USDT"], ["ETH-USDT"]]
    try:
        async with running(engine):
            await _until(lambda: all_synced(engine))
            server = sims.venue("binance")
            assert len(server.links) == 2
            eth = next(lk for lk in server.links.values() if any("ethusdt" in n for n in lk.state.streams))
            assert all("btcusdt" not in n for n in eth.state.streams)
            eth.transport.disconnect(graceful=False)
            await _until(lambda: link.stats.connects == 3)
            await _until(lambda: all_synced(engine))
            resyncs = _resyncs(engine, "binance")
    finally:
        await sims.close()
    assert resyncs == {"BTC-USDT": 0, "ETH-USDT": 1}


def test_binance_default_shards_at_1024_streams():
    symbols = [f"C{i}-USDT" for i in range(700)]
    feed = VenueFeed(BinanceSession(symbols, Endpoints("ws://127.0.0.1:1", "http://127.0.0.1:1")))
    link = Link(feed, RestClient(), VenueLatency("binance"))
    assert [len(s.symbols) for s in link.shards] == [341, 341, 18]  # 3 streams a symbol
    for shard in link.shards:
        assert len(shard.session.streams()) <= 1024  # type: ignore[attr-defined]
    assert link.max_sends_per_s == 4.0


async def test_sends_respect_the_venue_message_rate():
    server = await PushServer(interval_s=0.02).start()
    session = BinanceSession(["BTC-USDT"], Endpoints(server.url, "http://127.0.0.1:9"))
    link = Link(VenueFeed(session), RestClient(), VenueLatency("binance"),
                LinkOptions(**{**FAST, "max_sends_per_s": 20.0}))
    task = asyncio.create_task(link.run())
    try:
        await _until(lambda: link.stats.connected)
        loop = asyncio.get_running_loop()
        start = loop.time()
        assert link.execute_for("BTC-USDT", [Send(f'{{"id":{i}}}') for i in range(10)])
        await _until(lambda: len(server.received) == 10)
        elapsed = loop.time() - start
    finally:
        await link.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.close()
    assert elapsed >= 9 / 20 - 0.05  # one now, nine spaced at 50 ms
    assert link.stats.sends_queued == 9
    assert [m.decode() for m in server.received] == [f'{{"id":{i}}}' for i in range(10)]


# -- backoff, failover, rejected upgrades ----------------------------------------------------------------
def test_backoff_is_full_jitter_capped_and_reset_by_a_healthy_link():
    feed = VenueFeed(BinanceSession(["BTC-USDT"], Endpoints("ws://127.0.0.1:1", "http://127.0.0.1:1")))
    link = Link(feed, RestClient(), VenueLatency("binance"), LinkOptions(backoff_base_s=1.0, backoff_cap_s=60.0))
    ceilings = [min(60.0, 2.0**i) for i in range(10)]
    for ceiling in ceilings:
        delay = link.backoff_s()
        assert 0.0 <= delay <= ceiling
    samples = []
    for _ in range(2000):
        link.shards[0].attempt = 9
        samples.append(link.backoff_s())
    assert max(samples) <= 60.0 and min(samples) < 3.0 and max(samples) > 57.0  # uniform over [0, cap]
    link.shards[0].attempt = 0
    assert link.backoff_s() <= 1.0


async def test_failover_to_a_backup_endpoint_after_repeated_failures(caplog):
    sims = await start_simulators(venues=("binance",), symbols=SYMBOLS, seed=10, tick_ms=50)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"ws://127.0.0.1:{s.getsockname()[1]}"
    engine = _engine(sims, venues=("binance",), ws_urls={"binance": dead}, failover_after=2,
                     backup_ws_urls=(sims.endpoints["binance"].ws_url,))
    try:
        with caplog.at_level(logging.INFO, logger="arbwire.net"):
            async with running(engine):
                await _until(lambda: all_synced(engine))
    finally:
        await sims.close()
    stats = engine.links["binance"].stats
    assert stats.failovers == 1 and stats.failures == 2 and stats.connects == 1
    assert stats.endpoint == sims.endpoints["binance"].ws_url
    failed = [r.getMessage() for r in caplog.records if "connect failed" in r.getMessage()]
    assert len(failed) == 2  # each attempt logged once, with its reason
    assert all("connection refused by" in m for m in failed)
    assert "failing over to" in failed[-1]


async def test_429_retry_after_is_honoured_and_503_fails_over():
    sims = await start_simulators(venues=("binance",), symbols=SYMBOLS, seed=11, tick_ms=50)
    limited = await FaultyServer(mode="status", status=429, headers={"Retry-After": "0.4"},
                                 body=b'{"code":-1003,"msg":"Too many requests"}').start()
    down = await FaultyServer(mode="status", status=503, body=b"maintenance").start()
    engine = _engine(sims, venues=("binance",), ws_urls={"binance": limited.url}, failover_after=2,
                     backup_ws_urls=(down.url, sims.endpoints["binance"].ws_url))
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        async with running(engine):
            await _until(lambda: all_synced(engine))
        elapsed = loop.time() - start
    finally:
        await sims.close()
        await limited.close()
        await down.close()
    stats = engine.links["binance"].stats
    assert limited.attempts == 2 and down.attempts == 2
    assert stats.failovers == 2 and stats.connects == 1
    assert elapsed >= 0.8  # two waits of Retry-After 0.4 s, above the 0.2 s backoff cap
    assert stats.last_failure is not None and stats.last_failure.status == 503


# -- TLS through the real link ------------------------------------------------------------------------
async def test_invalid_certificate_is_reported_and_retried(certs, tmp_path):
    other = make_certs(tmp_path / "other", ca_name="someone else")
    sims = await start_simulators(venues=("binance",), symbols=SYMBOLS, seed=12, tick_ms=50)
    relay = await TlsRelay(sims.venue("binance").ws_port, certs.server_context()).start()
    engine = _engine(sims, venues=("binance",), ws_urls={"binance": relay.url_for("localhost")},
                     tls_cafile=str(other.ca_cert))
    try:
        async with running(engine):
            await _until(lambda: engine.links["binance"].stats.failures >= 2)
    finally:
        await relay.close()
        await sims.close()
    stats = engine.links["binance"].stats
    assert stats.connects == 0
    assert stats.last_failure is not None and stats.last_failure.kind == "certificate"
    assert "binance wss://localhost" in stats.last_error and "certificate of localhost rejected" in stats.last_error


async def test_tls_session_is_resumed_on_reconnect_and_books_resync(certs):
    sims = await start_simulators(venues=("binance",), symbols=SYMBOLS, seed=13, tick_ms=50)
    relay = await TlsRelay(sims.venue("binance").ws_port, certs.server_context()).start()
    engine = _engine(sims, venues=("binance",), ws_urls={"binance": relay.url_for("localhost")},
                     tls_cafile=str(certs.ca_cert), tls_session_reuse=True)
    try:
        async with running(engine):
            await _until(lambda: all_synced(engine))
            assert engine.links["binance"].stats.last_connect.tls_version == "TLSv1.3"
            await asyncio.sleep(0.2)
            relay.drop_all()
            await _until(lambda: engine.links["binance"].stats.connects == 2)
            await _until(lambda: all_synced(engine))
    finally:
        await relay.close()
        await sims.close()
    stats = engine.links["binance"].stats
    assert stats.tls_resumed == 1 and stats.last_connect.session_reused


async def test_slow_tls_handshake_is_reported_and_retried():
    server = await FaultyServer(mode="silent").start()
    session = BinanceSession(["BTC-USDT"], Endpoints(server.url.replace("ws:", "wss:"), "http://127.0.0.1:9"))
    link = Link(VenueFeed(session), RestClient(), VenueLatency("binance"),
                LinkOptions(**{**FAST, "handshake_timeout_s": 0.2}))
    task = asyncio.create_task(link.run())
    try:
        await _until(lambda: link.stats.failures >= 2)
    finally:
        await link.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.close()
    assert link.stats.last_failure is not None and link.stats.last_failure.kind == "tls_timeout"


# -- slow consumers ---------------------------------------------------------------------------------------
async def test_a_slow_sink_never_stalls_the_link():
    sims = await start_simulators(venues=("binance", "okx"), symbols=SYMBOLS, seed=14, tick_ms=20)
    engine = _engine(sims)

    async def crawl(item) -> None:
        await asyncio.sleep(0.05)

    sink = BoundedSink("slow", crawl, maxlen=20)
    engine.sinks.append(sink)
    try:
        async with running(engine):
            await _until(lambda: all_synced(engine))
            frames = {v: engine.links[v].stats.frames for v in engine.links}
            await asyncio.sleep(1.0)
            assert all(engine.links[v].stats.frames > frames[v] + 30 for v in engine.links)
            assert all_synced(engine)
    finally:
        await sims.close()
    assert sink.dropped > 0
    assert all(engine.links[v].stats.connects == 1 for v in engine.links)


@pytest.mark.parametrize(("lived_s", "attempt_after"), [(0.5, 1), (0.0, 6)])
async def test_a_healthy_link_resets_the_backoff(lived_s, attempt_after):
    server = await PushServer(b'{"result":null,"id":1}', interval_s=0.02).start()
    session = BinanceSession(["BTC-USDT"], Endpoints(server.url, "http://127.0.0.1:9"))
    link = Link(VenueFeed(session), RestClient(), VenueLatency("binance"),
                LinkOptions(**{**FAST, "healthy_after_s": 0.3, "backoff_base_s": 0.001}))
    task = asyncio.create_task(link.run())
    try:
        await _until(lambda: link.stats.connected)
        link.shards[0].attempt = 5  # as after a run of failures
        await asyncio.sleep(lived_s)
        server.drop_all()
        await _until(lambda: link.stats.connects == 2)
    finally:
        await link.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.close()
    assert link.shards[0].attempt == attempt_after  # reset to 0, then one backoff drawn
