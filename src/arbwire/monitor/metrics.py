"""Prometheus metrics of a running engine, read at scrape time.

Nothing is recorded on the hot path: ``EngineCollector`` reads the engine's public
state (link stats, counters, books, latency histograms, detector, sinks) when
``/metrics`` is scraped, on the event loop thread, so it never races the frame
callbacks. It lives in its own ``CollectorRegistry`` (never the global default),
served by a small aiohttp app on 127.0.0.1.

Latency quantiles come from ``arbwire.monitor.quantiles`` (bucket copies and
bisect), not from ``HdrHistogram.get_value_at_percentile``, which walks every bucket
in Python and would hold the loop for tens of milliseconds per scrape.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from arbwire.model import SyncState
from arbwire.monitor.process import rss_bytes
from arbwire.monitor.quantiles import recorder_stats

if TYPE_CHECKING:
    from arbwire.engine import Engine
    from arbwire.monitor.service import Monitor

log = logging.getLogger("arbwire.monitor")

QUANTILES = (0.5, 0.95, 0.99)
_LATENCY = (
    ("event_to_recv", "arbwire_event_to_receive_seconds", "Venue event time to local receive time, since start"),
    ("rtt", "arbwire_rtt_seconds", "WebSocket ping round-trip time, since start"),
    ("processing", "arbwire_processing_seconds", "Our processing time per frame (decode, book, detector), since start"),
)
_STATES = [s.name for s in SyncState]


def _counter(name: str, doc: str, labels: list[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=labels)


def _gauge(name: str, doc: str, labels: list[str]) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class EngineCollector(Collector):
    """Every figure of the engine (and of its monitor) as Prometheus metric families."""

    def __init__(self, engine: Engine, monitor: Monitor | None = None) -> None:
        self.engine = engine
        self.monitor = monitor

    def describe(self) -> list[Metric]:
        return []  # families depend on the venues configured; nothing to check at register time

    def collect(self) -> Iterator[Metric]:
        yield from self._venues()
        yield from self._books()
        yield from self._latency()
        yield from self._opportunities()
        yield from self._sinks()
        yield from self._process()
        if self.monitor is not None:
            yield from self._monitor(self.monitor)

    # -- per venue ---------------------------------------------------------------------------
    def _venues(self) -> Iterator[Metric]:
        engine = self.engine
        v = ["venue"]
        connected = _gauge("arbwire_link_connected", "1 when every connection of the venue link is up", v)
        up = _gauge("arbwire_link_up_seconds", "Seconds since the venue link (re)connected; 0 while down", v)
        endpoint = _gauge("arbwire_link_endpoint_info", "The endpoint the venue link uses now", ["venue", "endpoint"])
        counters = {
            "connects": _counter("arbwire_link_connects", "Connections opened", v),
            "reconnects": _counter("arbwire_link_reconnects", "Connections lost or failed, each followed by a reconnect", v),
            "failovers": _counter("arbwire_link_failovers", "Switches to the next endpoint", v),
            "switchovers": _counter("arbwire_link_switchovers", "Planned make-before-break replacements", v),
            "dead_links": _counter("arbwire_link_dead", "Connections dropped for silence (no frame for dead_after_s)", v),
            "pongs_overdue": _counter("arbwire_link_pongs_overdue", "Connections dropped for an unanswered ping", v),
            "snapshot_requests": _counter("arbwire_snapshot_requests", "REST snapshots requested", v),
            "snapshot_failures": _counter("arbwire_snapshot_failures", "REST snapshots that failed", v),
        }
        frames = _counter("arbwire_frames", "WebSocket data frames received", v)
        rate = _gauge("arbwire_frames_per_second", "Frames per second over the last second", v)
        books = _counter("arbwire_book_updates", "Book updates applied (all symbols)", v)
        trades = _counter("arbwire_trades", "Trades received", v)
        quotes = _counter("arbwire_quotes", "Best bid/offer quotes received", v)
        bad = _counter("arbwire_bad_frames", "Frames that failed typed decoding", v)
        now = time.time_ns()
        for venue, link in list(engine.links.items()):
            s = link.stats
            connected.add_metric([venue], 1.0 if s.connected else 0.0)
            up.add_metric([venue], (now - s.connected_since_ns) / 1e9 if s.connected and s.connected_since_ns else 0.0)
            endpoint.add_metric([venue, s.endpoint], 1.0)
            for attr, family in counters.items():
                family.add_metric([venue], getattr(s, attr))
            frames.add_metric([venue], s.frames)
            c = engine.counters.get(venue)
            if c is not None:
                rate.add_metric([venue], c.rate)
                books.add_metric([venue], c.book_updates)
                trades.add_metric([venue], c.trades)
                quotes.add_metric([venue], c.quotes)
            feed = engine.feeds.get(venue)
            if feed is not None:
                bad.add_metric([venue], feed.session.stats.bad_frames)
        yield from (connected, up, endpoint, *counters.values(), frames, rate, books, trades, quotes, bad)

    def _books(self) -> Iterator[Metric]:
        engine = self.engine
        vs = ["venue", "symbol"]
        synced = _gauge("arbwire_book_synced", "1 when the book is SYNCED (usable by the detector)", vs)
        state = _gauge("arbwire_book_state", "1 for the book's current sync state", ["venue", "symbol", "state"])
        age = _gauge("arbwire_book_age_seconds", "Seconds since the book's last applied update (staleness)", vs)
        gaps = _counter("arbwire_book_gaps", "Sequence gaps detected", vs)
        resyncs = _counter("arbwire_book_resyncs", "Times the book went to RESYNCING", vs)
        ck_failed = _counter("arbwire_book_checksum_failures", "Venue checksum mismatches", vs)
        now = time.time_ns()
        start = engine.started_ns or now
        if self.monitor is not None:
            start = min(start, self.monitor.alerts.started_ns)
        for venue, feed in list(engine.feeds.items()):
            for symbol, sync in feed.syncs.items():
                labels = [venue, symbol]
                synced.add_metric(labels, 1.0 if sync.synced else 0.0)
                for name in _STATES:
                    state.add_metric([venue, symbol, name], 1.0 if sync.state.name == name else 0.0)
                age.add_metric(labels, (now - max(sync.last_recv_ns, start)) / 1e9)
                gaps.add_metric(labels, sync.gaps)
                resyncs.add_metric(labels, sync.resyncs)
                ck_failed.add_metric(labels, sync.checksums_failed)
        yield from (synced, state, age, gaps, resyncs, ck_failed)

    def _latency(self) -> Iterator[Metric]:
        engine = self.engine
        monitor = self.monitor
        recent = _gauge(
            "arbwire_latency_recent_p99_seconds",
            "p99 over the monitor's last complete window (see arbwire_latency_window_seconds)",
            ["venue", "kind"],
        )
        for kind, name, doc in _LATENCY:
            family = Metric(name, doc, "summary")
            for venue, latency in list(engine.latency.items()):
                st = recorder_stats(getattr(latency, kind), QUANTILES)
                for q in QUANTILES:
                    family.add_sample(name, {"venue": venue, "quantile": str(q)}, st.quantiles_us[q] / 1e6)
                family.add_sample(f"{name}_count", {"venue": venue}, st.count)
                family.add_sample(f"{name}_sum", {"venue": venue}, st.mean_us * st.count / 1e6)
                if monitor is not None:
                    window = monitor.windows.latest(venue, kind, monitor.latency_window_s)
                    if window is not None:
                        recent.add_metric([venue, kind], window.quantiles_us[0.99] / 1e6)
            yield family
        yield recent
        if monitor is not None:
            yield GaugeMetricFamily("arbwire_latency_window_seconds", "Window of the recent latency figures",
                                    value=monitor.latency_window_s)
        offset = _gauge("arbwire_clock_offset_seconds",
                        "The venue clock's offset from ours (positive: ahead), from REST server time", ["venue"])
        within = _gauge("arbwire_clock_uncertainty_seconds", "How far off the clock offset can be", ["venue"])
        for venue, latency in list(engine.latency.items()):
            best = latency.clock.best()
            if best is not None:
                offset.add_metric([venue], best.offset_ns / 1e9)
                within.add_metric([venue], best.uncertainty_ns / 1e9)
        yield from (offset, within)

    # -- engine-wide ---------------------------------------------------------------------------
    def _opportunities(self) -> Iterator[Metric]:
        engine = self.engine
        yield CounterMetricFamily("arbwire_opportunities_opened", "Opportunities opened", value=engine.opened)
        yield CounterMetricFamily("arbwire_opportunities_closed", "Opportunities closed", value=engine.closed)
        yield GaugeMetricFamily("arbwire_opportunities_open", "Opportunities open now", value=len(engine.detector.active()))
        yield GaugeMetricFamily("arbwire_opportunity_best_net_bps", "Best net edge seen, bps", value=engine.best_net_bps)
        paper = engine.paper
        if paper is not None:
            trades = _counter("arbwire_paper_trades", "Paper trades of opened opportunities by outcome", ["status"])
            for status, n in (("filled", paper.filled), ("partial", paper.partial), ("missed", paper.missed)):
                trades.add_metric([status], n)
            yield trades
            yield GaugeMetricFamily("arbwire_paper_pending", "Paper trades waiting for their latency", value=len(paper.pending))
            summary = paper.summary()
            for name, doc, key in (
                ("arbwire_paper_pnl", "Paper PnL net of fees, quote currency", "pnl"),
                ("arbwire_paper_expected_pnl", "Profit the detector promised for the paper trades, quote currency", "expected_pnl"),
                ("arbwire_paper_fees", "Taker fees of the paper trades, quote currency", "fees"),
            ):
                family = _gauge(name, doc, ["quote"])
                for quote, value in summary[key].items():
                    family.add_metric([quote], float(value))
                yield family

    def _sinks(self) -> Iterator[Metric]:
        dropped = _counter("arbwire_sink_dropped", "Items a slow sink dropped (drop-oldest queue)", ["sink"])
        delivered = _counter("arbwire_sink_delivered", "Items a sink consumed", ["sink"])
        for sink in list(self.engine.sinks):
            dropped.add_metric([sink.name], sink.dropped)
            delivered.add_metric([sink.name], sink.delivered)
        yield from (dropped, delivered)

    def _process(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("arbwire_process_rss_bytes", "Resident memory of the process", value=rss_bytes())
        started = self.engine.started_ns
        yield GaugeMetricFamily(
            "arbwire_uptime_seconds", "Seconds since the engine started",
            value=(time.time_ns() - started) / 1e9 if started else 0.0,
        )

    def _monitor(self, monitor: Monitor) -> Iterator[Metric]:
        firing = _gauge("arbwire_alert_firing", "1 per firing alert", ["alert", "severity", "venue", "symbol"])
        for alert in monitor.alerts.firing():
            firing.add_metric([alert.rule.name, alert.rule.severity, alert.venue, alert.symbol], 1.0)
        fired = _counter("arbwire_alerts_fired", "Times an alert fired", ["alert"])
        for rule in monitor.alerts.rules:
            fired.add_metric([rule.name], monitor.alerts.fired.get(rule.name, 0))
        actions = _counter("arbwire_monitor_actions", "Automatic actions taken", ["action", "venue"])
        for (action, venue), n in sorted(monitor.actions.counts.items()):
            actions.add_metric([action, venue], n)
        yield from (firing, fired, actions)


class MetricsServer:
    """``GET /metrics`` (Prometheus text) and ``GET /alerts`` (JSON) on host:port."""

    def __init__(self, registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 0,
                 alerts: Any = None) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self._alerts = alerts  # a callable returning JSON-able data, or None
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        if self._alerts is not None:
            app.router.add_get("/alerts", self._alerts_json)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("metrics on %s/metrics", self.url)

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _alerts_json(self, request: web.Request) -> web.Response:
        return web.json_response(self._alerts())

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
