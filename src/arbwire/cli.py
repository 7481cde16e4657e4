"""The ``arbwire`` command: run, demo, sim, record, replay, publish, detect."""

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
    """Plain lines on stderr (``arbwire.watch`` sends them above the live board while it is up)."""
    logging.basicConfig(
        level=logging.WARNING if quiet else getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    # arbwire.net logs every connect and disconnect with its venue, shard and timings
    logging.getLogger("picows").setLevel(logging.WARNING)


def cmd_run(args: argparse.Namespace) -> int:
    from arbwire.engine import Engine
    from arbwire.watch import make_console, watch

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"arbwire: config error: {exc}", file=sys.stderr)
        return 2
    console = make_console(args.json)
    _setup_logging(config.log_level, quiet=False)

    async def main() -> None:
        await watch(
            Engine(config), args.duration, as_json=args.json, console=console,
            metrics_port=args.metrics_port, opportunity_lines=True,
        )

    with contextlib.suppress(KeyboardInterrupt):
        _run_loop(main())
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from arbwire.demo import run_demo

    _setup_logging("WARNING", quiet=True)
    with contextlib.suppress(KeyboardInterrupt):
        _run_loop(run_demo(args.duration, as_json=args.json, seed=args.seed, metrics_port=args.metrics_port))
    return 0


def cmd_sim(args: argparse.Namespace) -> int:
    from arbwire.sim import runner

    _setup_logging("INFO", quiet=False)
    with contextlib.suppress(KeyboardInterrupt):
        return runner.main(args.sim_args)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    if args.what in BENCH_SCRIPTS:
        return cmd_bench_script(args.what, args.bench_args)
    from arbwire.net import benchmark  # arbwire bench connect: connection costs on loopback

    _setup_logging("WARNING", quiet=True)
    return benchmark.main(args.bench_args)


#: ``arbwire bench NAME``: the scripts in a source checkout's bench/ (each owns its options)
BENCH_SCRIPTS = {
    "pipeline": "pipeline.py",  # per-update stages on the Binance ETHUSDT capture, vs a baseline
    "stages": "stages.py",  # decode / apply / detector per venue on the real captures
    "compare": "compare.py",  # arbwire vs cryptofeed vs a bare picows loop on one replayed stream
    "latency": "latency.py",  # server send -> detector done at 10k msg/s and at the maximum rate
    "memory": "memory.py",  # RSS before and after 10 M messages
    "sbe": "sbe.py",  # Binance JSON vs SBE decode on the same real events
    "board": "board.py",  # what drawing the live board costs the event loop, in and out of process
    "htx-mbp": "htx_mbp.py",  # HTX's default incremental books, derived from the real full books
    "frames": "frames.py",  # one frame of each kind through session, feed and link handler, in process
}


def cmd_bench_script(name: str, argv: list[str]) -> int:
    import importlib.util
    from pathlib import Path

    bench_dir = Path(__file__).resolve().parents[2] / "bench"
    path = bench_dir / BENCH_SCRIPTS[name]
    if not path.is_file():
        print(f"arbwire bench {name}: {path} not found; the benchmarks live in bench/ of a source "
              "checkout", file=sys.stderr)
        return 2
    if str(bench_dir) not in sys.path:
        sys.path.insert(0, str(bench_dir))  # the scripts import their neighbours by name
    spec = importlib.util.spec_from_file_location(f"arbwire_bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return int(module.main(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arbwire", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="connect to the live venues and detect arbitrage")
    run.add_argument("--config", help="TOML config file (default: BTC-USDT, ETH-USDT on Binance and OKX)")
    run.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: Ctrl-C)")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                     help="serve Prometheus /metrics and /alerts on 127.0.0.1:PORT (default: monitor.metrics_port)")
    run.set_defaults(func=cmd_run)
    demo = sub.add_parser("demo", help="offline demo against local venue simulators")
    demo.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: Ctrl-C)")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                      help="serve Prometheus /metrics and /alerts on 127.0.0.1:PORT (0: any free port)")
    demo.set_defaults(func=cmd_demo)
    sub.add_parser("sim", help="run the local venue simulators (arbwire sim --help for options)")
    bench = sub.add_parser(
        "bench",
        help="benchmarks: arbwire bench connect|pipeline|stages|compare|latency|memory|sbe|htx-mbp|board|frames [--json] "
        "(arbwire bench NAME --help for options)",
    )
    bench.add_argument("what", choices=["connect", *BENCH_SCRIPTS])
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)
    from arbwire.record import cli as record_cli  # arbwire record, arbwire replay

    record_cli.add_parsers(sub)
    from arbwire.bus import cli as bus_cli  # arbwire publish, arbwire detect

    bus_cli.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["sim"]:  # the simulators own their options (see arbwire.sim.runner)
        return cmd_sim(argparse.Namespace(sim_args=argv[1:]))
    if argv[:2] == ["bench", "connect"]:  # the benchmark owns its options (arbwire.net.benchmark)
        return cmd_bench(argparse.Namespace(what="connect", bench_args=argv[2:]))
    if argv[:1] == ["bench"] and argv[1:2] and argv[1] in BENCH_SCRIPTS:  # bench/*.py own theirs
        return cmd_bench_script(argv[1], argv[2:])
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
