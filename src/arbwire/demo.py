"""``arbwire demo``: local simulators of the venues, the real client code, live opportunities.

The simulators speak each venue's real wire protocol on loopback; the engine
connects to them exactly as ``arbwire run`` connects to the venues, only the
endpoints differ.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from types import SimpleNamespace
from typing import Any

from rich.console import Console

from arbwire.config import Config, VenueConfig
from arbwire.engine import Engine
from arbwire.sim.market import MarketConfig
from arbwire.sim.runner import start_simulators
from arbwire.watch import make_console, watch

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
        console = make_console(as_json)
    sims = await (
        start_simulators(venues=venues, symbols=DEMO_SYMBOLS, seed=seed, market=market or DEMO_MARKET)
        if in_process
        else SimProcess.start(venues, DEMO_SYMBOLS, seed, market or DEMO_MARKET)
    )
    cache = tempfile.TemporaryDirectory(prefix="arbwire-demo-")  # simulator lists stay out of the real cache
    try:
        engine = Engine(demo_config(sims.endpoints, cache_dir=cache.name))
        return await watch(engine, duration_s, as_json=as_json, console=console, metrics_port=metrics_port)
    finally:
        await sims.close()
        cache.cleanup()
