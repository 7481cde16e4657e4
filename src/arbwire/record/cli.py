"""``arbwire record`` and ``arbwire replay``: argument parsing and the two commands.

``arbwire.cli`` adds these subcommands with ``add_parsers(sub)``; everything heavy
is imported inside the commands so ``arbwire --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any


def add_parsers(sub: Any) -> None:
    rec = sub.add_parser(
        "record",
        help="record raw venue traffic (zstd) and normalized events (Parquet)",
        description="Connect as `arbwire run` does and record: raw frames with their receive "
        "time (and frames sent, REST responses) per venue, zstd, rotated by size and time; "
        "trades, book updates, quotes and opportunities to hive-partitioned Parquet.",
    )
    rec.add_argument("--config", help="TOML config file (as for `arbwire run`)")
    rec.add_argument("--out", help="output folder (default: recordings/<UTC start time>)")
    rec.add_argument("--duration", type=float, default=None, help="stop after S seconds (default: Ctrl-C)")
    rec.add_argument("--rotate-mb", type=float, default=256.0, help="start a new raw file after this many MB")
    rec.add_argument("--rotate-s", type=float, default=3600.0, help="start a new raw file after this many seconds")
    rec.add_argument("--no-parquet", action="store_true", help="raw frames only")
    rec.set_defaults(func=cmd_record)

    rep = sub.add_parser(
        "replay",
        help="replay recordings through the live code (books, sync, detector)",
        description="Feed recorded frames through the same venue sessions, VenueFeed and "
        "ArbDetector as live trading. Files of one venue continue one stream; several "
        "venues are merged by receive time (a backtest). A folder means every arbwire "
        "recording in it.",
    )
    rep.add_argument("files", nargs="+", metavar="FILE", help="recordings or captures, in order")
    rep.add_argument("--format", choices=("auto", "arbwire", "hftbacktest", "cryptofeed"), default="auto")
    rep.add_argument("--venue", help="venue of captures that don't name one (hftbacktest: binance); "
                     "for arbwire recordings: replay only this venue")
    pace = rep.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=None, help="replay at X times recorded speed")
    pace.add_argument("--max", action="store_true", help="as fast as possible (the default)")
    rep.add_argument("--emit", default="", help="comma list of tops,trades,quotes,opportunities,fills (paper trades)")
    rep.add_argument("--out", help="write emitted lines to FILE.jsonl (default stdout) or FILE.parquet")
    rep.add_argument("--json", action="store_true", help="print the summary as JSON (last line of stdout)")
    rep.add_argument("--paper-latency-us", type=float, default=None, metavar="US",
                     help="paper trading: each opened opportunity is taken this long after detection, "
                          "on the books as recorded then (default: [paper] latency_us, 1000; 0: as detected)")
    rep.add_argument("--no-paper", action="store_true", help="no paper trading")
    rep.set_defaults(func=cmd_replay)


# -- record -------------------------------------------------------------------------------------
def cmd_record(args: argparse.Namespace) -> int:
    from arbwire.config import ConfigError, load_config
    from arbwire.engine import Engine
    from arbwire.record.recorder import RecorderOptions, attach_recorder

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"arbwire: config error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    out = Path(args.out or Path("recordings") / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()))
    options = RecorderOptions(
        rotate_bytes=int(args.rotate_mb * (1 << 20)), rotate_s=args.rotate_s, parquet=not args.no_parquet
    )
    holder: dict[str, Any] = {}

    async def main() -> None:
        engine = Engine(config)
        holder["recorder"] = attach_recorder(engine, out, options)
        await engine.run(args.duration)

    with contextlib.suppress(KeyboardInterrupt):
        _run_loop(main())
    recorder = holder.get("recorder")
    if recorder is None:
        return 1
    stats = recorder.stats()
    print(json.dumps(stats, indent=2))
    if stats["dropped"]:
        print(f"arbwire record: {stats['dropped']} items dropped (recorder queues full)", file=sys.stderr)
    if stats["errors"]:
        print(f"arbwire record: write errors: {stats['errors'][:3]}", file=sys.stderr)
        return 1
    return 0


def _run_loop(coro: Any) -> Any:
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


# -- replay -------------------------------------------------------------------------------------
def expand_paths(items: list[str]) -> list[Path]:
    """Files as given; a folder becomes the arbwire recordings in it (venue, then time order)."""
    from arbwire.record.rawfile import list_recordings

    out: list[Path] = []
    for item in items:
        p = Path(item)
        out.extend(list_recordings(p) if p.is_dir() else [p])
    return out


def cmd_replay(args: argparse.Namespace) -> int:
    from arbwire.config import PaperConfig
    from arbwire.record.replay import EMITS, Emitter, Replayer

    emit = [e.strip() for e in args.emit.split(",") if e.strip()]
    bad = [e for e in emit if e not in EMITS]
    if bad:
        print(f"arbwire replay: unknown --emit {bad}; choose from {', '.join(EMITS)}", file=sys.stderr)
        return 2
    paths = expand_paths(args.files)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing or not paths:
        print(f"arbwire replay: no such file: {', '.join(missing) or ' '.join(args.files)}", file=sys.stderr)
        return 2
    out = args.out
    emitter = Emitter(out)
    try:
        if args.paper_latency_us is not None and args.paper_latency_us < 0:
            raise ValueError("--paper-latency-us must be >= 0")
        paper = PaperConfig(enabled=not args.no_paper)
        if args.paper_latency_us is not None:
            paper.latency_us = args.paper_latency_us
        replayer = Replayer(emit=emit, out=emitter, speed=None if args.max else args.speed, paper=paper)
        replayer.add_paths(paths, None if args.format == "auto" else args.format, args.venue)
    except ValueError as exc:
        emitter.close()
        print(f"arbwire replay: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        replayer.run()
    summary = replayer.summary()
    for skipped in summary["skipped"]:
        print(f"arbwire replay: skipped {', '.join(skipped['files'])}: {skipped['reason']}", file=sys.stderr)
    if args.json:
        sys.stdout.flush()
        sys.stdout.write(json.dumps(summary, default=str) + "\n")
    else:
        _print_summary(summary)
    sys.stdout.flush()
    for error in summary["errors"]:
        print(f"arbwire replay: error: {error}; replayed everything before it", file=sys.stderr)
    if summary["errors"]:
        return 1
    if not replayer.streams:
        print("arbwire replay: nothing to replay", file=sys.stderr)
        return 2
    return 0


def _print_summary(summary: dict[str, Any]) -> None:
    w = sys.stderr.write
    w(f"replayed {summary['records']} records ({summary['frames']} frames, "
      f"{summary['recorded_s']} s recorded)\n")
    for venue, v in summary["venues"].items():
        w(f"  {venue}: {v['frames']} frames, {v['book_updates']} book updates, {v['trades']} trades, "
          f"{v['quotes']} quotes, {v['bad_frames']} bad frames, snapshots {v['snapshots_served']} served\n")
        for symbol, b in v["books"].items():
            w(f"    {symbol:16} {b['state']:10} gaps {b['gaps']} resyncs {b['resyncs']} "
              f"checksums {b['checksums_ok']}/{b['checksums_failed']} crossed {b['crossed']} "
              f"bid {b['bid']} ask {b['ask']} ({b['reason']})\n")
    o = summary["opportunities"]
    w(f"  opportunities: {o['opened']} opened, {o['closed']} closed, {o['open_at_end']} open at end, "
      f"best {o['best_net_bps']} bps, expected profit {o['expected_profit']}\n")
    p = summary.get("paper")
    if p is not None:
        pnl = ", ".join(f"{q} {v} (expected {p['expected_pnl'].get(q, '0')}, fees {p['fees'][q]})"
                        for q, v in p["pnl"].items()) or "none"
        w(f"  paper ({p['latency_us']:g} µs): {p['trades']} trades ({p['filled']} filled, {p['partial']} partial, "
          f"{p['missed']} missed), pnl {pnl}\n")
