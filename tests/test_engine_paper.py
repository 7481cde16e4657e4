"""Paper trading in the live engine: every opened opportunity taken after the configured
latency on the books as they are then, against the simulators over loopback."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from arbwire.config import PaperConfig
from arbwire.engine import Engine
from arbwire.sim.market import MarketConfig
from arbwire.sim.runner import start_simulators
from helpers.engine import running, sim_config, until

EPISODES = MarketConfig(episode_first_s=0.3, episode_every_s=0.4, episode_duration_s=0.3, episode_pairs="cycle")


async def test_each_opened_opportunity_is_executed_after_the_latency_on_the_live_books(tmp_path: Path) -> None:
    async with await start_simulators(("binance", "okx"), ("BTC-USDT",), seed=3, market=EPISODES) as sims:
        engine = Engine(sim_config(sims, tmp_path, symbols=["BTC-USDT"], paper=PaperConfig(latency_us=20_000)))
        assert engine.paper is not None
        async with running(engine):
            await until(lambda: len(engine.paper.fills) >= 2, timeout=10, what="two paper trades")
        paper = engine.paper
        opened = [o for o in engine.opportunities if o.event.value == "opened"]
        assert len(paper.fills) + len(paper.pending) == len(opened)
        for fill in paper.fills:
            assert fill.latency_ns >= 20_000_000  # never before the latency has passed
            if fill.status != "missed":
                assert Decimal(fill.size) > 0 and fill.buy_venue != fill.sell_venue
        # on time, not left for the quarter-second housekeeping
        assert min(f.latency_ns for f in paper.fills) < 60_000_000
        summary = engine.snapshot()["paper"]
        assert summary["trades"] + summary["missed"] == len(paper.fills)
        assert summary["latency_us"] == 20_000
        # the same ledger on /metrics
        from prometheus_client import CollectorRegistry, generate_latest

        from arbwire.monitor.metrics import EngineCollector

        registry = CollectorRegistry()
        registry.register(EngineCollector(engine))
        text = generate_latest(registry).decode()
        for quote, pnl in summary["pnl"].items():
            assert f'arbwire_paper_pnl{{quote="{quote}"}} {float(pnl)!r}' in text
        assert f'arbwire_paper_trades_total{{status="filled"}} {float(paper.filled)!r}' in text


def test_paper_trading_can_be_turned_off(tmp_path: Path) -> None:
    from arbwire.config import Config

    engine = Engine(Config(venues={}, paper=PaperConfig(enabled=False), instrument_cache_dir=str(tmp_path)))
    assert engine.paper is None and engine.snapshot()["paper"] is None
