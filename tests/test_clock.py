"""Venue clock offsets: the estimator's arithmetic, every venue's server-time answer, and
the engine measuring skewed simulator clocks and putting venue-stamped latency back on
one clock."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from arbwire.clock import VenueClock
from arbwire.config import AlertRuleConfig, ClockConfig, Config, LinkConfig, VenueConfig
from arbwire.engine import Engine
from arbwire.latency import Recorder
from arbwire.monitor.alerts import AlertManager, build_rules
from arbwire.venues.registry import make_session

MS = 1_000_000


# -- the estimator --------------------------------------------------------------------------
def test_a_symmetric_round_trip_gives_the_offset_and_half_the_round_trip_as_the_error():
    clock = VenueClock()
    # venue 250 ms ahead; 4 ms each way; the venue stamps whole ms (truncated)
    sent = 1_000_000_000_000
    true_venue_at_middle = sent + 4 * MS + 250 * MS
    venue_ms = true_venue_at_middle // MS * MS
    sample = clock.add(sent, venue_ms, sent + 8 * MS, resolution_ns=MS)
    assert abs(sample.offset_ns - 250 * MS) <= sample.uncertainty_ns
    assert sample.uncertainty_ns == 4 * MS + MS // 2 and sample.rtt_ns == 8 * MS
    assert clock.offset_ns == sample.offset_ns


def test_the_shortest_recent_round_trip_wins_and_old_ones_age_out():
    clock = VenueClock(window=3)
    t = 10**12
    clock.add(t, t + 100 * MS + 1 * MS, t + 2 * MS, resolution_ns=1)  # rtt 2 ms -> +100 ms
    clock.add(t, t + 130 * MS, t + 40 * MS, resolution_ns=1)  # rtt 40 ms, asymmetric: +110
    assert clock.offset_ns == 100 * MS
    clock.add(t, t + 5 * MS, t + 10 * MS, resolution_ns=1)
    clock.add(t, t + 5 * MS, t + 10 * MS, resolution_ns=1)
    assert clock.best().rtt_ns == 10 * MS  # the 2 ms sample left the window of 3
    assert clock.offset_ns == 0 and clock.count == 4


def test_no_estimate_means_no_correction_and_a_backwards_answer_is_refused():
    clock = VenueClock()
    assert clock.offset_ns == 0 and clock.best() is None
    assert clock.as_dict() == {"offset_ms": None, "uncertainty_ms": None, "rtt_ms": None, "samples": 0, "failures": 0}
    with pytest.raises(ValueError, match="answer before request"):
        clock.add(10, 5, 9)
    with pytest.raises(ValueError):
        VenueClock(window=0)


@pytest.mark.parametrize("fold", ["c", "python"])
def test_the_offset_is_added_to_every_sample_when_folded(fold):
    rec = Recorder()
    rec.offset = 250_000  # µs: the venue runs 250 ms ahead, so raw samples read 250 ms short
    for sample in (-249_000, -240_000, -200_000):
        rec.add(sample)
    if fold == "c":
        rec.fold()
    else:
        rec._fold_py()
    summary = rec.summary()
    assert summary.count == 3 and rec.negative == 0
    assert 990 <= summary.p50 <= 10_010 and summary.max >= 49_000


# -- each venue's server time -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("venue", "body", "ns", "resolution"),
    [
        ("binance", b'{"serverTime":1499827319559}', 1499827319559 * MS, MS),
        ("okx", b'{"code":"0","msg":"","data":[{"ts":"1597026383085"}]}', 1597026383085 * MS, MS),
        ("bybit", b'{"retCode":0,"retMsg":"OK","result":{"timeSecond":"1688639403",'
                  b'"timeNano":"1688639403423213947"},"retExtInfo":{},"time":1688639403423}',
         1688639403423213947, 1_000),
        ("gateio", b'{"server_time":1597026383085}', 1597026383085 * MS, MS),
        ("htx", b'{"status":"ok","data":1629715504949}', 1629715504949 * MS, MS),
    ],
)
def test_every_venue_reads_its_server_time(venue, body, ns, resolution):
    session = make_session(venue, ["BTC-USDT"])
    assert session.time_url().startswith(session.endpoints.rest_url + "/")
    assert session.parse_server_time(body) == (ns, resolution)


@pytest.mark.parametrize(
    ("venue", "body", "needle"),
    [
        ("binance", b'{"code":-1003,"msg":"Too many requests"}', "serverTime"),
        ("okx", b'{"code":"50011","msg":"Rate limit reached","data":[]}', "50011"),
        ("bybit", b'{"retCode":10006,"retMsg":"Too many visits!","result":{"timeNano":"0"}}', "10006"),
        ("gateio", b"<html>", "gateio server time"),
        ("htx", b'{"status":"error","err-msg":"x"}', "status 'error'"),
        ("htx", b'{"status":"ok","data":0}', "is not a time"),
    ],
)
def test_a_bad_answer_is_a_clear_error_naming_the_venue(venue, body, needle):
    with pytest.raises(ValueError) as info:
        make_session(venue, ["BTC-USDT"]).parse_server_time(body)
    assert needle in str(info.value) and venue in str(info.value)


# -- end to end: skewed venue clocks -------------------------------------------------------------
async def _run_skewed(correct: bool) -> tuple[Engine, dict]:
    from arbwire.sim.runner import start_simulators

    sims = await start_simulators(venues=("binance", "okx"), symbols=("BTC-USDT",), seed=41, tick_ms=20)
    sims.venue("binance").skew_clock(300)  # 300 ms ahead: raw latencies would all be negative
    sims.venue("okx").skew_clock(-200)  # 200 ms behind: raw latencies would read 200 ms long
    try:
        config = Config(
            venues={v: VenueConfig(symbols=["BTC-USDT"], ws_url=ep.ws_url, rest_url=ep.rest_url)
                    for v, ep in sims.endpoints.items()},
            link=LinkConfig(backoff_base_s=0.05, backoff_cap_s=0.2),
            clock=ClockConfig(correct_latency=correct),
            check_instruments=False,
        )  # fmt: skip
        engine = Engine(config)
        task = asyncio.create_task(engine.run())
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 6
            while not all(lat.clock.count >= 4 and lat.event_to_recv.summary().count + lat.event_to_recv.negative > 50
                          for lat in engine.latency.values()):  # fmt: skip
                assert loop.time() < deadline, {v: lat.as_dict() for v, lat in engine.latency.items()}
                await asyncio.sleep(0.1)
            summary = {v: (lat.event_to_recv.summary(), lat.event_to_recv.negative) for v, lat in engine.latency.items()}
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    finally:
        await sims.close()
    return engine, summary


async def test_skewed_venue_clocks_are_measured_and_latency_is_put_back_on_our_clock():
    engine, summary = await _run_skewed(correct=True)
    for venue, skew in (("binance", 300), ("okx", -200)):
        best = engine.latency[venue].clock.best()
        assert best is not None
        assert abs(best.offset_ns / MS - skew) <= best.uncertainty_ns / MS + 2, (venue, best)
        stats, negative = summary[venue]
        assert 0 < stats.p50 < 50_000, (venue, stats)  # µs: loopback, not ±250 ms
        assert negative <= stats.count // 10, (venue, negative, stats.count)
    assert engine.snapshot()["venues"]["binance"]["latency"]["clock"]["samples"] >= 4
    rules = [r for r in build_rules({"clock_offset": AlertRuleConfig(threshold=100.0)}) if r.metric == "clock_offset"]
    events: list = []
    alerts = AlertManager(engine, rules, actions=None, emit=events.append)
    alerts.evaluate()
    firing = alerts.firing()
    assert {a.venue for a in firing} == {"binance", "okx"}
    assert all("synchronised (NTP)" in a.message for a in firing)


async def test_without_correction_the_skew_shows_in_the_raw_latency():
    _, summary = await _run_skewed(correct=False)
    binance, negative = summary["binance"]
    assert negative > 0 and binance.count <= negative // 10  # ahead: almost every sample < 0
    okx, _ = summary["okx"]
    assert okx.p50 > 150_000  # behind: every sample reads ~200 ms long
