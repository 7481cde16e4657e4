"""The /metrics endpoint scraped over real HTTP from an engine on the venue simulators."""

from __future__ import annotations

import asyncio
import io
import random

import aiohttp
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from arbwire.config import (
    AlertRuleConfig,
    Config,
    ConfigError,
    MonitorConfig,
    load_config,
)
from arbwire.demo import run_demo
from arbwire.engine import Engine
from arbwire.latency import VenueLatency
from arbwire.monitor import Monitor, build_rules
from arbwire.monitor.quantiles import Window, recorder_stats
from arbwire.sim.runner import start_simulators
from arbwire.sinks import BoundedSink
from helpers.engine import fast_link, running, sim_config, until

SYMBOLS = ["BTC-USDT", "ETH-USDT"]


def _config(sims, tmp_path) -> Config:
    return sim_config(sims, tmp_path, symbols=SYMBOLS, link=fast_link())


def _samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


def _value(samples: dict[str, list], name: str, **labels: str) -> float:
    found = [s.value for s in samples.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


async def test_metrics_endpoint_serves_engine_state_with_venue_and_symbol_labels(tmp_path):
    sims = await start_simulators(venues=("binance", "okx"), symbols=SYMBOLS, seed=4, tick_ms=50)
    engine = Engine(_config(sims, tmp_path))
    sink: BoundedSink = BoundedSink("slow", lambda item: None, maxlen=1)
    engine.sinks.append(sink)
    monitor = Monitor(engine, MonitorConfig(metrics_port=0, interval_s=0.2, rules={"latency_p99": AlertRuleConfig(window_s=0.5)}))
    try:
        async with running(engine), monitor:
            assert monitor.metrics_url is not None and monitor.metrics_url.startswith("http://127.0.0.1:")
            await until(lambda: all(s.synced for f in engine.feeds.values() for s in f.syncs.values()))
            await asyncio.sleep(1.5)  # rates, latency windows and a few RTT pings
            for _ in range(5):  # more than the sink holds before its consumer runs: drops
                sink.put(object())
            async with aiohttp.ClientSession() as http, http.get(monitor.metrics_url) as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain")
                text = await resp.text()
            async with aiohttp.ClientSession() as http, http.get(monitor.server.url + "/alerts") as resp:
                alerts = await resp.json()
    finally:
        await sims.close()
    assert monitor.server is None  # closed with the monitor
    m = _samples(text)
    for venue in ("binance", "okx"):
        link = engine.links[venue]
        assert _value(m, "arbwire_link_connected", venue=venue) == 1
        assert _value(m, "arbwire_link_endpoint_info", venue=venue, endpoint=sims.endpoints[venue].ws_url) == 1
        assert _value(m, "arbwire_link_reconnects_total", venue=venue) == 0
        assert 20 < _value(m, "arbwire_frames_total", venue=venue) <= link.stats.frames
        assert _value(m, "arbwire_frames_per_second", venue=venue) > 5  # a tick every 50 ms
        assert _value(m, "arbwire_book_updates_total", venue=venue) > 10
        assert _value(m, "arbwire_bad_frames_total", venue=venue) == 0
        for symbol in SYMBOLS:
            assert _value(m, "arbwire_book_synced", venue=venue, symbol=symbol) == 1
            assert _value(m, "arbwire_book_state", venue=venue, symbol=symbol, state="SYNCED") == 1
            assert _value(m, "arbwire_book_state", venue=venue, symbol=symbol, state="RESYNCING") == 0
            assert 0 <= _value(m, "arbwire_book_age_seconds", venue=venue, symbol=symbol) < 1.0
            assert _value(m, "arbwire_book_gaps_total", venue=venue, symbol=symbol) == 0
        # latency summaries: quantiles in seconds, ordered, with count and sum
        for name in ("arbwire_event_to_receive_seconds", "arbwire_processing_seconds"):
            p50 = _value(m, name, venue=venue, quantile="0.5")
            p99 = _value(m, name, venue=venue, quantile="0.99")
            assert 0 < p50 <= p99 < 1.0, (name, p50, p99)
            assert _value(m, f"{name}_count", venue=venue) > 10
            assert _value(m, f"{name}_sum", venue=venue) > 0
        assert _value(m, "arbwire_rtt_seconds_count", venue=venue) >= 0
        assert 0 < _value(m, "arbwire_latency_recent_p99_seconds", venue=venue, kind="processing") < 1.0
    assert _value(m, "arbwire_opportunities_opened_total") >= 0
    assert "arbwire_opportunity_best_net_bps" in m and "arbwire_opportunities_open" in m
    assert engine.paper is not None  # the paper ledger: trades by outcome, never more than taken
    for status in ("filled", "partial", "missed"):
        assert 0 <= _value(m, "arbwire_paper_trades_total", status=status) <= getattr(engine.paper, status)
    assert _value(m, "arbwire_paper_pending") >= 0
    assert _value(m, "arbwire_sink_dropped_total", sink="slow") >= 4
    assert _value(m, "arbwire_process_rss_bytes") > 10 * 2**20
    assert _value(m, "process_resident_memory_bytes") > 10 * 2**20  # the standard process collector
    assert _value(m, "arbwire_alerts_fired_total", alert="book_stale") == 0
    assert m.get("arbwire_alert_firing", []) == []
    assert alerts["firing"] == [] and alerts["events"] == []
    # our own registry, never the process-wide default one
    assert REGISTRY.get_sample_value("arbwire_process_rss_bytes") is None


async def test_the_demo_runs_the_monitor_quietly_and_serves_metrics():
    out = io.StringIO()
    summary = await run_demo(2.5, as_json=True, venues=("binance", "okx"), metrics_port=0, console=Console(file=out))
    assert "metrics: http://127.0.0.1:" in out.getvalue()
    assert summary["monitor"]["firing"] == [] and summary["monitor"]["events"] == []  # healthy: no alert
    assert all(b["state"] == "SYNCED" for v in summary["venues"].values() for b in v["books"].values())


async def test_metrics_are_off_unless_a_port_is_given(tmp_path):
    engine = Engine(Config(venues={}, instrument_cache_dir=str(tmp_path)))
    async with Monitor(engine) as monitor:
        assert monitor.server is None and monitor.metrics_url is None
    async with Monitor(engine, metrics_port=0) as monitor:
        assert monitor.metrics_url is not None


def test_fast_quantiles_match_hdrh_and_windows_see_only_new_samples():
    rng = random.Random(1)
    latency = VenueLatency("x")
    for _ in range(20_000):
        latency.event_to_recv.add(int(rng.lognormvariate(7, 1)))
        latency.processing.add(int(rng.lognormvariate(10, 1)))
    for recorder in (latency.event_to_recv, latency.processing):
        fast = recorder_stats(recorder, (0.5, 0.95, 0.99))
        slow = recorder.summary()
        assert fast.count == slow.count
        assert (fast.quantiles_us[0.5], fast.quantiles_us[0.95], fast.quantiles_us[0.99]) == (slow.p50, slow.p95, slow.p99)
        assert fast.mean_us == pytest.approx(slow.avg, rel=1e-3)
    window = Window(latency.processing, window_s=1.0)
    assert window.roll(0) is None  # the first roll only sets the baseline
    for _ in range(500):
        latency.processing.add(7_000)  # 7 µs, recorded in ns
    assert window.roll(500_000_000) is None  # not due yet
    last = window.roll(1_000_000_000)
    assert last is not None and last.count == 500
    assert last.quantiles_us[0.99] == pytest.approx(7.0, rel=1e-3)


def test_monitor_section_of_the_config_file(tmp_path):
    path = tmp_path / "arbwire.toml"
    path.write_text(
        "[monitor]\nmetrics_port = 9464\n"
        "[monitor.rules.book_stale]\nthreshold = 5\n"
        "[monitor.rules.rss]\nenabled = false\n"
        "[monitor.rules.rtt_high]\nmetric = 'latency_p99'\nlatency = 'rtt'\nthreshold = 250\nseverity = 'critical'\n"
    )
    config = load_config(path)
    assert config.monitor.metrics_port == 9464
    rules = {r.name: r for r in build_rules(config.monitor.rules)}
    assert rules["book_stale"].threshold == 5 and rules["book_stale"].action == "auto"  # the rest: defaults
    assert "rss" not in rules
    assert rules["rtt_high"].latency == "rtt" and rules["rtt_high"].window_s == 10 and rules["rtt_high"].for_s == 30
    assert rules["reconnect_rate"].action == "switch_endpoint"
    assert load_config(None).monitor.metrics_port is None  # off by default
    for text, key in (
        ("[monitor.rules.book_stale]\naction = 'resync_everything'\n", "monitor.rules.book_stale.action"),
        ("[monitor.rules.fast]\nthreshold = 1\n", "monitor.rules.fast.(name)"),
        ("[monitor.rules.x]\nmetric = 'rss'\nseverity = 'loud'\n", "monitor.rules.x.severity"),
        ("[monitor]\nmetrics_prot = 1\n", "monitor.metrics_prot"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError, match=f"{path}: {key.replace('(', '[(]').replace(')', '[)]')}"):
            load_config(path)
