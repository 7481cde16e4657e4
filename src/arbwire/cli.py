"""The ``arbwire`` command: run, demo, sim, record, replay."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from arbwire.config import ConfigError, load_config


def _run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:  # uvloop is a hard dependency; this only guards odd platforms
        return asyncio.run(coro)


def _setup_logging(level: str, quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def cmd_run(args: argparse.Namespace) -> int:
    from arbwire.engine import Engine

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"arbwire: config error: {exc}", file=sys.stderr)
        return 2
    _setup_logging(config.log_level, quiet=False)

    async def main() -> None:
        engine = Engine(config)
        engine.listeners.append(_print_opportunities)
        await engine.run(args.duration)

    with contextlib.suppress(KeyboardInterrupt):
        _run_loop(main())
    return 0


def _print_opportunities(event: Any) -> None:
    from arbwire.model import Opportunity

    if isinstance(event, Opportunity):
        print(
            f"{event.event.value:8} {event.symbol} buy {event.buy_venue}@{event.buy_price} "
            f"sell {event.sell_venue}@{event.sell_price} size {event.size} "
            f"net {event.net_bps:.1f}bps profit {event.profit}",
            flush=True,
        )


def cmd_demo(args: argparse.Namespace) -> int:
    from arbwire.demo import run_demo

    _setup_logging("WARNING", quiet=True)
    with contextlib.suppress(KeyboardInterrupt):
        _run_loop(run_demo(args.duration, as_json=args.json, seed=args.seed))
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from arbwire.sim import runner

    _setup_logging("INFO", quiet=False)
    with contextlib.suppress(KeyboardInterrupt):
        return runner.main(args.sim_args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arbwire", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="connect to the live venues and detect arbitrage")
    run.add_argument("--config", help="TOML config file (default: BTC-USDT, ETH-USDT on Binance and OKX)")
    run.add_argument("--duration", type=float, default=None, help="stop after S seconds")
    run.set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="offline demo against local venue simulators")
    demo.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: Ctrl-C)")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("sim", help="run the local venue simulators (arbwire sim --help for options)")
    from arbwire.record import cli as record_cli  # arbwire record, arbwire replay

    record_cli.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:  # the simulators own their options (see arbwire.sim.runner)
        return cmd_sim(argparse.Namespace(sim_args=argv[1:]))
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
