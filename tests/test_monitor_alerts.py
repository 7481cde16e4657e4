"""Alert rules and automatic actions against the venue simulators: a stalled venue, a
quiet book, a reconnect storm; the monitor fires, acts and resolves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import SimpleNamespace

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from arbwire.config import AlertRuleConfig, Config, MonitorConfig
from arbwire.engine import Engine
from arbwire.latency import VenueLatency
from arbwire.monitor import ActionEvent, AlertEvent, Monitor
from arbwire.monitor.actions import Actions
from arbwire.monitor.panel import alerts_panel
from arbwire.net.link import LinkStats
from arbwire.sim.runner import start_simulators
from helpers.engine import all_synced, fast_link, running, sim_config, until

SYMBOLS = ["BTC-USDT", "ETH-USDT"]


def _config(sims, tmp_path, *, backups: dict[str, list[str]] | None = None, **link) -> Config:
    return sim_config(sims, tmp_path, symbols=SYMBOLS, backups=backups, link=fast_link(**link))


def _monitor_config(actions: bool = True, **rules: AlertRuleConfig) -> MonitorConfig:
    return MonitorConfig(interval_s=0.1, actions=actions, rules=rules)


@contextlib.asynccontextmanager
async def _running(engine: Engine, monitor: Monitor):
    async with running(engine), monitor:
        yield


def _alerts(monitor: Monitor, state: str, alert: str) -> set[tuple[str, str]]:
    return {(e.venue, e.symbol) for e in monitor.events if isinstance(e, AlertEvent) and e.state == state and e.alert == alert}


def _actions(monitor: Monitor) -> list[ActionEvent]:
    return [e for e in monitor.events if isinstance(e, ActionEvent)]


async def test_a_stalled_venue_fires_book_stale_and_the_monitor_reconnects_it(tmp_path, caplog):
    sims = await start_simulators(venues=("binance", "okx"), symbols=SYMBOLS, seed=21, tick_ms=50)
    # the link's own dead-link check (no frame for dead_after_s) is far away: the monitor acts
    engine = Engine(_config(sims, tmp_path, dead_after_s=30))
    monitor = Monitor(engine, _monitor_config(book_stale=AlertRuleConfig(threshold=0.8, cooldown_s=5)), metrics_port=0)
    scraped: dict[tuple[str, str], float] = {}
    try:
        with caplog.at_level(logging.INFO, logger="arbwire.monitor"):
            async with _running(engine, monitor):
                await until(lambda: all_synced(engine))
                await asyncio.sleep(0.3)
                sims.inject("binance", "stall", seconds=2.5)
                link = engine.links["binance"]
                await until(lambda: link.stats.connects >= 2, timeout=2.5)
                assert sims.venue("binance").stalled  # reconnected by the monitor, during the stall
                assert link.stats.dead_links == 0 and link.stats.pongs_overdue == 0
                # the two books' last updates may straddle a monitor tick: the first alert's
                # reconnect can come before the second alert; both fire while the stall lasts
                await until(lambda: "2 firing" in alerts_panel(monitor).plain, timeout=1.5)
                assert sims.venue("binance").stalled
                panel = alerts_panel(monitor).plain  # the demo board's panel
                assert "2 firing" in panel and "book_stale" in panel and "action reconnect binance" in panel
                async with aiohttp.ClientSession() as http, http.get(monitor.metrics_url) as resp:
                    for family in text_string_to_metric_families(await resp.text()):
                        for s in family.samples:
                            if s.name in ("arbwire_alert_firing", "arbwire_book_age_seconds"):
                                scraped[(s.name, s.labels.get("venue", ""), s.labels.get("symbol", ""))] = s.value
                await until(lambda: len(_alerts(monitor, "resolved", "book_stale")) == 2, timeout=6)
                await until(lambda: all_synced(engine))
    finally:
        await sims.close()
    both = {("binance", s) for s in SYMBOLS}
    assert _alerts(monitor, "firing", "book_stale") == both  # okx kept flowing: no alert there
    assert _alerts(monitor, "resolved", "book_stale") == both
    (action,) = _actions(monitor)  # one reconnect for the venue, not one per book
    assert (action.action, action.venue, action.done) == ("reconnect", "binance", True)
    assert engine.links["okx"].stats.connects == 1
    assert monitor.alerts.firing() == []
    for symbol in SYMBOLS:
        assert scraped[("arbwire_alert_firing", "binance", symbol)] == 1
        assert scraped[("arbwire_book_age_seconds", "binance", symbol)] > 0.8
        assert scraped[("arbwire_book_age_seconds", "okx", symbol)] < 0.8
    logs = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("ALERT FIRING book_stale [critical] binance BTC-USDT book: no update") for m in logs)
    assert any(m.startswith("ACTION reconnect binance done (alert book_stale)") for m in logs)
    assert any(m.startswith("ALERT RESOLVED book_stale [critical] binance ETH-USDT") for m in logs)


async def test_one_quiet_book_is_resynced_alone_while_the_others_flow(tmp_path):
    sims = await start_simulators(venues=("binance", "okx"), symbols=SYMBOLS, seed=22, tick_ms=50)
    engine = Engine(_config(sims, tmp_path))
    rule = AlertRuleConfig(threshold=0.8, cooldown_s=0.3, venues=["binance"])
    monitor = Monitor(engine, _monitor_config(book_stale=rule))
    binance = engine.feeds["binance"]
    try:
        async with _running(engine, monitor):
            await until(lambda: all_synced(engine))
            await asyncio.sleep(0.3)
            sims.inject("market", "freeze", symbol="BTC-USDT")  # no more BTC-USDT diffs anywhere
            await until(lambda: any(a.action == "resync" for a in _actions(monitor)), timeout=3)
            await until(lambda: ("binance", "BTC-USDT") in _alerts(monitor, "resolved", "book_stale"))
            await until(lambda: all_synced(engine, "binance"))
            sims.inject("market", "thaw", symbol="BTC-USDT")
            applied = binance.syncs["BTC-USDT"].applied
            await until(lambda: binance.syncs["BTC-USDT"].applied > applied + 3)  # diffs line up again
            resyncs_eth = binance.syncs["ETH-USDT"].resyncs
    finally:
        await sims.close()
    actions = _actions(monitor)
    assert actions and all(
        (a.action, a.venue, a.symbol, a.done) == ("resync", "binance", "BTC-USDT", True) for a in actions
    ), actions
    assert "FetchSnapshot" in actions[0].detail
    assert binance.syncs["BTC-USDT"].resyncs >= 1 and resyncs_eth == 0
    assert engine.links["binance"].stats.connects == 1  # the link itself untouched
    assert _alerts(monitor, "firing", "book_stale") == {("binance", "BTC-USDT")}  # okx excluded by the rule


async def test_an_htx_resync_goes_on_the_connection_that_carries_the_book(tmp_path):
    """HTX keeps two connections (books on /feed, trades and BBO on /ws): the monitor's resync
    sends its req on the one carrying the book, and neither connection is dropped for it."""
    sims = await start_simulators(venues=("htx",), symbols=SYMBOLS, seed=23, tick_ms=50)
    engine = Engine(sim_config(sims, tmp_path, symbols=SYMBOLS, link=fast_link(),
                               options={"htx": {"req_interval_s": 0.12}}))
    actions = Actions(engine)
    htx = engine.feeds["htx"]
    try:
        async with running(engine):
            await until(lambda: all_synced(engine))
            done, detail = actions.resync("htx", "BTC-USDT", "operator")
            assert done, detail  # HTX's snapshot is a req on the socket, paced by the session
            await until(lambda: htx.syncs["BTC-USDT"].resyncs == 1 and all_synced(engine, "htx"))
            applied = htx.syncs["BTC-USDT"].applied
            await until(lambda: htx.syncs["BTC-USDT"].applied > applied + 3)  # increments line up again
    finally:
        await sims.close()
    assert htx.syncs["ETH-USDT"].resyncs == 0
    assert engine.links["htx"].stats.connects == 2  # /feed and /ws, neither dropped


class _Proxy:
    """A second endpoint of the same simulated venue: a TCP relay on another local port."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.accepted = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> _Proxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def test_a_reconnect_storm_switches_the_link_to_the_next_endpoint(tmp_path):
    sims = await start_simulators(venues=("binance",), symbols=SYMBOLS, seed=23, tick_ms=50)
    primary = sims.endpoints["binance"].ws_url
    proxy = await _Proxy(sims.venue("binance").ws_port).start()
    engine = Engine(_config(sims, tmp_path, backups={"binance": [primary, proxy.url]}))
    storm = AlertRuleConfig(window_s=3, threshold=30, cooldown_s=30)  # 2 reconnects within 3 s
    monitor = Monitor(engine, _monitor_config(reconnect_rate=storm))
    link = engine.links["binance"]
    try:
        async with _running(engine, monitor):
            await until(lambda: all_synced(engine))
            for _ in range(6):  # the venue keeps dropping us
                before = link.stats.reconnects
                sims.venue("binance").drop_connections()
                await until(lambda before=before: link.stats.reconnects > before, timeout=1)
                await until(lambda: link.stats.connected, timeout=2)
                await asyncio.sleep(0.15)
                if _actions(monitor):
                    break
            await until(lambda: link.stats.endpoint == proxy.url and link.stats.connected, timeout=3)
            await until(lambda: all_synced(engine))
            await until(lambda: _alerts(monitor, "resolved", "reconnect_rate"), timeout=5)
            endpoint = link.stats.endpoint
    finally:
        await sims.close()
        await proxy.close()
    (action,) = _actions(monitor)
    assert (action.action, action.venue, action.done) == ("switch_endpoint", "binance", True)
    assert proxy.url in action.detail
    assert _alerts(monitor, "firing", "reconnect_rate") == {("binance", "")}
    assert endpoint == proxy.url and proxy.accepted >= 1
    assert link.stats.failovers == 1 and 2 <= link.stats.reconnects <= 7


async def test_alert_only_mode_fires_and_resolves_throughput_and_staleness_without_acting(tmp_path):
    sims = await start_simulators(venues=("binance", "okx"), symbols=SYMBOLS, seed=24, tick_ms=50)
    engine = Engine(_config(sims, tmp_path))
    monitor = Monitor(engine, _monitor_config(
        actions=False,
        book_stale=AlertRuleConfig(threshold=1.0),
        throughput=AlertRuleConfig(threshold=2, for_s=0.5),
    ))
    try:
        async with _running(engine, monitor):
            await until(lambda: all_synced(engine))
            await asyncio.sleep(1.8)  # throughput is judged on links up for 2 s
            sims.inject("okx", "stall", seconds=2.5)
            await until(lambda: ("okx", "") in _alerts(monitor, "firing", "throughput"), timeout=3)
            await until(lambda: len(_alerts(monitor, "firing", "book_stale")) == 2, timeout=2)
            assert {(a.rule.name, a.venue) for a in monitor.alerts.firing()} >= {("throughput", "okx")}
            await until(lambda: ("okx", "") in _alerts(monitor, "resolved", "throughput"), timeout=5)
            await until(lambda: len(_alerts(monitor, "resolved", "book_stale")) == 2, timeout=3)
    finally:
        await sims.close()
    assert _actions(monitor) == []
    assert engine.links["okx"].stats.connects == 1  # nobody reconnected it
    assert _alerts(monitor, "firing", "book_stale") == {("okx", s) for s in SYMBOLS}
    assert {e.venue for e in monitor.events} == {"okx"}


def _fake_engine() -> SimpleNamespace:
    stats = LinkStats(connected=True, connected_since_ns=1)
    return SimpleNamespace(
        config=Config(venues={}), links={"x": SimpleNamespace(stats=stats, shards=[None])},
        feeds={}, counters={}, latency={"x": VenueLatency("x")}, sinks=[], started_ns=1,
    )


def test_latency_p99_over_a_window_and_for_duration():
    engine = _fake_engine()
    rules = {
        "latency_p99": AlertRuleConfig(threshold=10, window_s=1, for_s=0),
        "slow_processing": AlertRuleConfig(metric="latency_p99", latency="processing", threshold=1, window_s=1),
        "rss": AlertRuleConfig(threshold=1, for_s=2, severity="info"),  # 1 MB: always above
    }
    monitor = Monitor(engine, MonitorConfig(rules=rules))  # type: ignore[arg-type]
    s = 1_000_000_000
    monitor.tick(1 * s)  # the windows' baselines; rss goes pending
    latency = engine.latency["x"]
    for _ in range(100):
        latency.event_to_recv.add(50_000)  # 50 ms
        latency.processing.add(20_000)  # 20 µs
    monitor.tick(2 * s)
    firing = {(a.rule.name, a.venue): a for a in monitor.alerts.firing()}
    assert set(firing) == {("latency_p99", "x")}  # processing p99 is 0.02 ms; rss waits for for_s
    assert firing[("latency_p99", "x")].value == pytest.approx(50.0, rel=1e-3)  # HDR: 3 digits
    assert "event_to_recv p99 50.0 ms over the last 1s (100 samples)" in firing[("latency_p99", "x")].message
    monitor.tick(3 * s)  # a window with no samples: nothing to judge, the alert resolves
    assert {(a.rule.name, a.venue) for a in monitor.alerts.firing()} == {("rss", "")}
    states = [(e.alert, e.state) for e in monitor.events]
    assert states == [("latency_p99", "firing"), ("latency_p99", "resolved"), ("rss", "firing")]
