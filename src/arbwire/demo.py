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
from types import SimpleNamespace
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


class SimProcess:
    """``arbwire sim`` in a child process; its endpoints read from the JSON lines it prints."""

    def __init__(self, proc: asyncio.subprocess.Process, endpoints: dict[str, Any]) -> None:
        self.proc = proc
        self.endpoints = endpoints

    @classmethod
    async def start(
        cls, venues: tuple[str, ...], symbols: tuple[str, ...], seed: int, market: MarketConfig
    ) -> SimProcess:
        argv = [
            sys.executable, "-m", "arbwire.cli", "sim",
            "--venues", ",".join(venues), "--symbols", ",".join(symbols), "--seed", str(seed),
            "--episode-first", str(market.episode_first_s), "--episode-every", str(market.episode_every_s),
            "--episode-duration", str(market.episode_duration_s), "--episode-pairs", market.episode_pairs,
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
        )
        endpoints: dict[str, Any] = {}
        assert proc.stdout is not None
        while True:
            line = await asyncio.wait_for(proc.stdout.readline(), 30)
            if not line:
                raise RuntimeError(f"simulators exited before they were ready (status {await proc.wait()})")
            event = json.loads(line)
            if event["event"] == "endpoint":
                endpoints[event["venue"]] = SimpleNamespace(ws_url=event["ws_url"], rest_url=event["rest_url"])
            elif event["event"] == "ready":
                break
        sim = cls(proc, endpoints)
        sim._drain = asyncio.create_task(sim._read_rest())
        return sim

    async def _read_rest(self) -> None:
        assert self.proc.stdout is not None
        while await self.proc.stdout.readline():  # episode lines: keep the pipe from filling
            pass

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._drain.cancel()


async def run_demo(
    duration_s: float | None,
    *,
    as_json: bool = False,
    seed: int = 7,
    venues: tuple[str, ...] = DEMO_VENUES,
    console: Console | None = None,
    market: MarketConfig | None = None,
    metrics_port: int | None = None,
    in_process: bool = False,
) -> dict[str, Any]:
    """The demo. The simulators run in a child process by default, as the venues would be
    elsewhere: sharing the client's event loop, their own work would show up as the
    client's latency."""
    if console is None:
        console = Console(stderr=as_json)
        if not console.is_terminal:  # piped to a file or CI log: no terminal to fit, print whole tables
            console.width = 220
    sims = await (
        start_simulators(venues=venues, symbols=DEMO_SYMBOLS, seed=seed, market=market or DEMO_MARKET)
        if in_process
        else SimProcess.start(venues, DEMO_SYMBOLS, seed, market or DEMO_MARKET)
    )
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

