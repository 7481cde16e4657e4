"""``arbwire demo``: local simulators of the venues, the real client code, live opportunities.

The simulators speak each venue's real wire protocol on loopback; the engine
connects to them exactly as ``arbwire run`` connects to the venues, only the
endpoints differ.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import tempfile
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live

from arbwire.config import Config, VenueConfig
from arbwire.console import board, opportunity_table, venue_table
from arbwire.engine import Engine
from arbwire.monitor import Monitor
from arbwire.monitor.panel import alerts_panel
from arbwire.sim.market import MarketConfig
from arbwire.sim.runner import start_simulators

# An episode every ~1.5 s, cycling through the venue pairs: a minute shows all ten pairs.
DEMO_MARKET = MarketConfig(episode_first_s=1.0, episode_every_s=1.5, episode_duration_s=1.0, episode_pairs="cycle")

DEMO_VENUES = ("binance", "okx", "bybit", "gateio", "htx")
DEMO_SYMBOLS = ("BTC-USDT", "ETH-USDT")


def demo_config(
    endpoints: dict[str, Any], symbols: tuple[str, ...] = DEMO_SYMBOLS, cache_dir: str | None = None
) -> Config:
    venues = {
        name: VenueConfig(symbols=list(symbols), ws_url=ep.ws_url, rest_url=ep.rest_url)
        for name, ep in endpoints.items()
    }
    return Config(venues=venues, instrument_cache_dir=cache_dir)


async def run_demo(
    duration_s: float | None,
    *,
    as_json: bool = False,
    seed: int = 7,
    venues: tuple[str, ...] = DEMO_VENUES,
    console: Console | None = None,
    market: MarketConfig | None = None,
    metrics_port: int | None = None,
) -> dict[str, Any]:
    console = console or Console(stderr=as_json)
    sims = await start_simulators(venues=venues, symbols=DEMO_SYMBOLS, seed=seed, market=market or DEMO_MARKET)
    cache = tempfile.TemporaryDirectory(prefix="arbwire-demo-")  # simulator lists stay out of the real cache
    engine = Engine(demo_config(sims.endpoints, cache_dir=cache.name))
    monitor = Monitor(engine, metrics_port=metrics_port)  # alerts and actions; /metrics if a port is given
    started = time.monotonic()
    task = asyncio.create_task(engine.run())
    stop = asyncio.Event()  # Ctrl-C ends the run and still prints the summary
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await monitor.start()
        if monitor.metrics_url:
            console.print(f"metrics: {monitor.metrics_url}")
        end = None if duration_s is None else started + duration_s
        live = None
        if not as_json and console.is_terminal:
            live = Live(console=console, refresh_per_second=4, transient=False)
            live.start()
        try:
            while (end is None or time.monotonic() < end) and not stop.is_set() and not task.done():
                if live is not None:
                    live.update(Group(
                        board(engine.snapshot(), list(engine.opportunities), time.monotonic() - started),
                        alerts_panel(monitor),
                    ))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.25)
        finally:
            if live is not None:
                live.stop()
        if task.done() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        summary = engine.snapshot()  # as the run ends, before the links are shut
        summary["monitor"] = monitor.summary()
    finally:
        await monitor.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await sims.close()
        cache.cleanup()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    summary["duration_s"] = round(time.monotonic() - started, 2)
    summary["opportunity_events"] = [
        {f: getattr(o, f) for f in o.__struct_fields__} for o in list(engine.opportunities)[-50:]
    ]
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str, indent=2) + "\n")
    else:
        console.print(venue_table(summary, title=f"summary after {summary['duration_s']}s"))
        console.print(opportunity_table(list(engine.opportunities)[-20:], title="last opportunity events"))
    return summary

