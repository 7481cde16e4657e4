"""Start the market model and the venue servers on free local ports, and tick them.

``start_simulators`` is what tests and ``arbwire demo`` use in-process;
``main(argv)`` is the ``arbwire sim`` command: it prints one JSON line per endpoint
(then a ``ready`` line, then one line per episode opened/closed) so a parent process
can find the ports and score its detector against the episodes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import IO, Any

from arbwire.sim.binance import BinanceServer
from arbwire.sim.bybit import BybitServer
from arbwire.sim.faults import MARKET, FaultAt, parse_fault, run_fault_plan
from arbwire.sim.gateio import GateioServer
from arbwire.sim.htx import HtxServer
from arbwire.sim.market import Episode, MarketConfig, MarketModel
from arbwire.sim.okx import OkxServer
from arbwire.sim.server import FaultError, VenueServer

log = logging.getLogger("arbwire.sim")

SERVERS: Mapping[str, type[VenueServer]] = MappingProxyType(
    {"binance": BinanceServer, "okx": OkxServer, "htx": HtxServer,
     "bybit": BybitServer, "gateio": GateioServer}
)
"""Venue name -> simulator class. Later venues (bybit, gateio, htx) register here."""

EpisodeHook = Callable[[str, Episode], None]  # ("opened" | "closed", episode)


@dataclass(frozen=True, slots=True)
class VenueEndpoint:
    """Where a simulated venue listens. Clients append the venue's own paths:
    ``/stream?streams=..`` or ``/ws`` (Binance), ``/ws/v5/public`` (OKX)."""

    venue: str
    ws_url: str  # ws://127.0.0.1:PORT
    rest_url: str  # http://127.0.0.1:PORT


class Simulators:
    """Running simulators: one model ticking, one server per venue."""

    def __init__(
        self,
        model: MarketModel,
        servers: Mapping[str, VenueServer],
        *,
        tick_ms: int,
        on_episode: EpisodeHook | None = None,
    ) -> None:
        self.model = model
        self._servers = dict(servers)
        self.tick_ms = tick_ms
        self.endpoints: dict[str, VenueEndpoint] = {
            name: VenueEndpoint(name, s.ws_url, s.rest_url) for name, s in self._servers.items()
        }
        self._on_episode = on_episode
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False

    def venue(self, name: str) -> VenueServer:
        """The venue's server, for faults: ``sims.venue("okx").skip_sequence("BTC-USDT")``."""
        try:
            return self._servers[name]
        except KeyError:
            raise KeyError(f"no simulated venue {name!r}; running: {sorted(self._servers)}") from None

    def inject(self, venue: str, fault: str, **kwargs: Any) -> Any:
        """Apply a fault by name; ``venue="market"`` takes ``freeze``/``thaw`` (symbol=..)."""
        if venue == MARKET:
            if fault not in ("freeze", "thaw"):
                raise FaultError(f"market: no fault {fault!r}; known: ['freeze', 'thaw']")
            return self.model.freeze(kwargs["symbol"], fault == "freeze")
        return self.venue(venue).inject(fault, **kwargs)

    def schedule(self, plan: Sequence[FaultAt]) -> None:
        """Fire planned faults relative to now."""
        if plan:
            self._tasks.append(asyncio.create_task(
                run_fault_plan(plan, lambda v, f, a: self.inject(v, f, **a))
            ))

    def tick(self) -> None:
        """One model step, published by every venue. Episodes are stamped with the wall
        clock just before their frames are written; each venue stamps its own events when
        it publishes them, as a venue's gateway does: one time for all of them would count
        the venues published before it (their encoding and writes) as the later venues'
        venue -> receive latency."""
        step = self.model.step()
        self.model.mark_sent(step, time.time_ns())
        for server in self._servers.values():
            try:
                server.publish(step, time.time_ns() + server.clock_skew_ns)
            except Exception:
                log.exception("%s: publish failed at step %d", server.venue, step.index)
        if self._on_episode is not None:
            for ep in step.opened:
                self._on_episode("opened", ep)
            for ep in step.closed:
                self._on_episode("closed", ep)

    def _start_ticking(self) -> None:
        self._tasks.append(asyncio.create_task(self._tick_loop()))

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.tick_ms / 1000
        due = loop.time()
        while True:
            due += period
            delay = due - loop.time()
            if delay < -5 * period:  # fell far behind (debugger, overload): don't burst
                due = loop.time()
                delay = 0
            await asyncio.sleep(max(0.0, delay))
            self.tick()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for server in self._servers.values():
            await server.close()

    async def __aenter__(self) -> Simulators:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def start_simulators(
    venues: Sequence[str] = ("binance", "okx"),
    symbols: Sequence[str] = ("BTC-USDT", "ETH-USDT"),
    seed: int = 1,
    tick_ms: int = 100,
    host: str = "127.0.0.1",
    *,
    market: MarketConfig | None = None,
    venue_options: Mapping[str, Mapping[str, Any]] | None = None,
    faults: Sequence[FaultAt] = (),
    on_episode: EpisodeHook | None = None,
    ports: Mapping[str, tuple[int, int]] | None = None,
    autostart: bool = True,
) -> Simulators:
    """Start the model and one server per venue (ports 0 = free ports unless ``ports``
    gives ``(ws_port, rest_port)``). ``venue_options`` are keyword arguments of the
    venue's options class, e.g. ``{"okx": {"ws_snapshot": False, "checksum": False}}``.
    With ``autostart=False`` nothing ticks until ``Simulators.tick()`` is called."""
    unknown = [v for v in venues if v not in SERVERS]
    if unknown:
        raise ValueError(f"no simulator for {unknown}; available: {sorted(SERVERS)}")
    model = MarketModel(venues, symbols, seed=seed, tick_ms=tick_ms, config=market)
    options = venue_options or {}
    servers: dict[str, VenueServer] = {}
    try:
        for name in venues:
            cls = SERVERS[name]
            opts = cls.options_type(**options.get(name, {}))
            server = cls(model, host=host, seed=seed, options=opts)
            servers[name] = server
            ws_port, rest_port = (ports or {}).get(name, (0, 0))
            await server.start(ws_port, rest_port)
    except BaseException:
        for server in servers.values():
            await server.close()
        raise
    sims = Simulators(model, servers, tick_ms=tick_ms, on_episode=on_episode)
    if autostart:
        sims._start_ticking()
    sims.schedule(faults)
    return sims


def _episode_line(kind: str, ep: Episode, books: bool) -> str:
    body = ep.to_dict()
    if not books:
        body.pop("buy_book")
        body.pop("sell_book")
    return json.dumps({"event": f"episode_{kind}", **body})


async def serve_forever(
    venues: Sequence[str] = ("binance", "okx"),
    symbols: Sequence[str] = ("BTC-USDT", "ETH-USDT"),
    seed: int = 1,
    tick_ms: int = 100,
    host: str = "127.0.0.1",
    *,
    duration_s: float | None = None,
    episode_books: bool = False,
    out: IO[str] | None = None,
    **kwargs: Any,
) -> None:
    """Run until SIGINT/SIGTERM (or ``duration_s``), printing JSON lines to ``out``."""
    stream = out or sys.stdout

    def emit(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    def on_episode(kind: str, ep: Episode) -> None:
        emit(_episode_line(kind, ep, episode_books))

    sims = await start_simulators(
        venues, symbols, seed, tick_ms, host, on_episode=on_episode, **kwargs
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        for ep in sims.endpoints.values():
            emit(json.dumps({"event": "endpoint", "venue": ep.venue, "ws_url": ep.ws_url,
                             "rest_url": ep.rest_url}))
        emit(json.dumps({"event": "ready", "seed": seed, "tick_ms": tick_ms,
                         "symbols": list(symbols), "venues": list(venues)}))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), duration_s)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        await sims.close()


def _parse_options(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["okx.ws_snapshot=false", "binance.ping_interval_s=5"]`` -> nested dict."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        venue, dot, name = key.partition(".")
        if not sep or not dot:
            raise ValueError(f"option {item!r}: expected VENUE.NAME=VALUE")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        out.setdefault(venue, {})[name] = parsed
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="arbwire sim", description="Run local exchange simulators.")
    p.add_argument("--venues", default="binance,okx", help="comma list (default binance,okx)")
    p.add_argument("--symbols", default="BTC-USDT,ETH-USDT", help="comma list, BASE-QUOTE form")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tick-ms", type=int, default=100)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--duration", type=float, default=None, help="seconds, then exit")
    p.add_argument("--episode-every", type=float, default=None, help="mean seconds between episodes")
    p.add_argument("--episode-duration", type=float, default=None, help="seconds an episode lasts")
    p.add_argument("--episode-first", type=float, default=None, help="seconds before the first episode")
    p.add_argument("--episode-pairs", choices=("random", "cycle"), default=None,
                   help="venue pairs of the episodes: random, or every pair in turn")
    p.add_argument("--episode-books", action="store_true", help="include full books in episode lines")
    p.add_argument("--set", dest="options", action="append", default=[],
                   metavar="VENUE.NAME=VALUE", help="venue option, e.g. okx.ws_snapshot=false")
    p.add_argument("--fault", dest="faults", action="append", default=[],
                   metavar="AT_S:VENUE:FAULT[:k=v,..]", help="e.g. 3:okx:skip_sequence:symbol=BTC-USDT")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``arbwire sim``; returns the exit status."""
    args = build_parser().parse_args(argv)
    market_kwargs: dict[str, Any] = {}
    if args.episode_every is not None:
        market_kwargs["episode_every_s"] = args.episode_every
    if args.episode_duration is not None:
        market_kwargs["episode_duration_s"] = args.episode_duration
    if args.episode_first is not None:
        market_kwargs["episode_first_s"] = args.episode_first
    if args.episode_pairs is not None:
        market_kwargs["episode_pairs"] = args.episode_pairs
    coro = serve_forever(
        [v for v in args.venues.split(",") if v],
        [s for s in args.symbols.split(",") if s],
        args.seed,
        args.tick_ms,
        args.host,
        duration_s=args.duration,
        episode_books=args.episode_books,
        market=MarketConfig(**market_kwargs),
        venue_options=_parse_options(args.options),
        faults=[parse_fault(f) for f in args.faults],
    )
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
