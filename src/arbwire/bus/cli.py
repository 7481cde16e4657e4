"""``arbwire publish`` (an engine that publishes on NATS) and ``arbwire detect`` (a detector
that subscribes); ``arbwire.cli`` adds these parsers."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from arbwire.config import Config, ConfigError, VenueConfig, load_config

log = logging.getLogger("arbwire.bus")


def add_parsers(sub: Any) -> None:
    pub = _add_command(
        sub, "publish", cmd_publish,
        help="connect to the venues (or --sim) and publish normalized data on NATS",
        description="Run an engine and publish its trades, quotes, book states and book updates "
        "(snapshot + sequenced deltas) on NATS subjects <prefix>.<kind>.<venue>.<symbol>.",
        config_help="TOML config file ([venues.*], [bus])",
        venues_help="only these configured venues, e.g. binance,okx",
    )
    pub.add_argument("--sim", action="store_true", help="run the venues' local simulators and publish them")
    pub.add_argument("--seed", type=int, default=7, help="simulator seed (with --sim)")
    pub.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: Ctrl-C)")
    det = _add_command(
        sub, "detect", cmd_detect,
        help="subscribe to published books on NATS and detect arbitrage across them",
        description="Rebuild the published books (snapshot + sequenced deltas, snapshot on request "
        "after a gap) and run the arbitrage detector on them; prints opportunities.",
        config_help="TOML config file ([arb], fees in [venues.*], [bus])",
        venues_help="only these venues, e.g. binance,okx (default: all published)",
    )
    det.add_argument("--symbols", help="only these symbols, e.g. BTC-USDT (default: all published)")
    det.add_argument("--json", action="store_true", help="one JSON object per opportunity event")
    det.add_argument("--no-request", action="store_true",
                     help="never ask for snapshots: wait for the publisher's periodic ones")
    det.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: Ctrl-C)")


def _add_command(
    sub: Any, name: str, func: Callable[[argparse.Namespace], int], *,
    help: str, description: str, config_help: str, venues_help: str,
) -> argparse.ArgumentParser:
    """A bus command with the options both commands share (first in its ``--help``)."""
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help, description=description)
    parser.add_argument("--config", help=config_help)
    parser.add_argument("--nats", help="NATS server URL(s), comma-separated (default: bus.url, nats://127.0.0.1:4222)")
    parser.add_argument("--venues", help=venues_help)
    parser.set_defaults(func=func)
    return parser


def _csv(text: str | None) -> list[str] | None:
    return [p.strip() for p in text.split(",") if p.strip()] if text else None


def _load(path: str | None) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"arbwire: config error: {exc}", file=sys.stderr)
        return None


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def _run_loop(factory: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``factory(stop)`` on uvloop; SIGINT/SIGTERM set ``stop``."""

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await factory(stop)

    try:
        import uvloop

        runner: Callable[[Any], Any] = uvloop.run
    except ImportError:
        runner = asyncio.run
    with contextlib.suppress(KeyboardInterrupt):
        runner(main())


async def _wait(task: asyncio.Task[Any], stop: asyncio.Event, duration: float | None) -> None:
    """Until ``task`` ends, ``stop`` is set or ``duration`` passes; then cancel ``task``."""
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, waiter}, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def cmd_publish(args: argparse.Namespace) -> int:
    from arbwire.bus.publisher import attach_publisher
    from arbwire.engine import Engine

    config = _load(args.config)
    if config is None:
        return 2
    only = _csv(args.venues)
    if only:
        config.venues = {v: config.venues.get(v) or VenueConfig() for v in only}
    _setup_logging(config.log_level)
    bus = config.bus
    url = args.nats or bus.url

    async def main(stop: asyncio.Event) -> None:
        sims = None
        cache = None
        if args.sim:
            from arbwire.demo import DEMO_MARKET
            from arbwire.sim.runner import start_simulators

            enabled = [v for v, c in config.venues.items() if c.enabled]
            symbols = sorted({s for v in enabled for s in config.venues[v].symbols})
            sims = await start_simulators(venues=enabled, symbols=symbols, seed=args.seed, market=DEMO_MARKET)
            for name, ep in sims.endpoints.items():
                config.venues[name].ws_url = ep.ws_url
                config.venues[name].rest_url = ep.rest_url
            cache = tempfile.TemporaryDirectory(prefix="arbwire-publish-")
            config.instrument_cache_dir = cache.name
            log.info("simulators: %s", {n: ep.ws_url for n, ep in sims.endpoints.items()})
        engine = Engine(config)
        publisher = attach_publisher(
            engine, url, prefix=bus.prefix, maxlen=bus.queue, snapshot_every_s=bus.snapshot_every_s,
            reconnect_wait_s=bus.reconnect_wait_s, trades=bus.trades, quotes=bus.quotes,
        )  # fmt: skip

        async def report() -> None:
            while True:
                await asyncio.sleep(10)
                s = publisher.stats()
                log.info("bus: published %d, queued %d, dropped %d, errors %d, snapshot requests %d",
                         s["published"], s["queued"], s["dropped"], s["publish_errors"], s["snapshot_requests"])

        reporter = asyncio.create_task(report())
        try:
            await _wait(asyncio.create_task(engine.run()), stop, args.duration)
        finally:
            reporter.cancel()
            if sims is not None:
                await sims.close()
            if cache is not None:
                cache.cleanup()
            print(json.dumps({"bus": publisher.stats(), **engine.snapshot()}, default=str), file=sys.stderr)

    _run_loop(main)
    return 0


def format_opportunity(opp: Any) -> str:
    return (
        f"{opp.event.value:8} {opp.symbol} buy {opp.buy_venue}@{opp.buy_price} "
        f"sell {opp.sell_venue}@{opp.sell_price} size {opp.size} "
        f"net {opp.net_bps:.1f}bps profit {opp.profit}"
    )


def cmd_detect(args: argparse.Namespace) -> int:
    from arbwire.bus.subscriber import BusDetector
    from arbwire.model import Opportunity

    config = _load(args.config)
    if config is None:
        return 2
    _setup_logging(config.log_level)
    bus = config.bus
    detector = BusDetector(
        args.nats or bus.url,
        config=config,
        prefix=bus.prefix,
        venues=_csv(args.venues),
        symbols=_csv(args.symbols),
        request_snapshots=bus.request_snapshots and not args.no_request,
        request_timeout_s=bus.request_timeout_s,
        reconnect_wait_s=bus.reconnect_wait_s,
    )
    encode = msgspec.json.encode

    def show(event: Any) -> None:
        if isinstance(event, Opportunity):
            if args.json:
                sys.stdout.buffer.write(encode(event) + b"\n")
                sys.stdout.flush()
            else:
                print(format_opportunity(event), flush=True)

    detector.listeners.append(show)

    async def main(stop: asyncio.Event) -> None:
        try:
            await _wait(asyncio.create_task(detector.run()), stop, args.duration)
        finally:
            print(json.dumps(detector.snapshot(), default=str), file=sys.stderr)

    _run_loop(main)
    return 0
