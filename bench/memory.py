"""Memory: RSS before and after 10 M messages through arbwire's hot path, in process.

The recorded Binance ETHUSDT stream (33,617 frames: depth diffs, bookTicker, trades)
is fed again and again through the feed an ``Engine`` builds (session, book sync,
detector against a second venue's book, the engine's counters, latency recorders and
opportunity log), exactly the objects a live link drives. Fees and the minimum edge are
set to zero so that opportunities keep opening, changing and closing against the
second (static) book. Each pass starts like a
reconnect: the book is invalidated and re-seeded from the capture's REST snapshot, so
resync paths run once per pass too. RSS is read from /proc/self/statm before the first
message, after the first pass (warm caches, full book) and every ``--every`` messages.

    .venv/bin/python bench/memory.py [--messages 10000000] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from arbwire import book  # noqa: E402
from arbwire.config import ArbConfig, Config, VenueConfig  # noqa: E402
from arbwire.engine import Engine  # noqa: E402
from arbwire.model import BookUpdate  # noqa: E402
from arbwire.sync import BookSync, SequenceRule  # noqa: E402
from replay_server import load_capture  # noqa: E402

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * _PAGE / (1 << 20)


def run(messages: int, every: int) -> dict[str, Any]:
    capture = load_capture()
    frames = capture.frames
    symbol = capture.symbol
    # no fees and no minimum edge, so the moving book against the static one opens, changes
    # and closes opportunities all the time: their objects and the bounded log are exercised too
    config = Config(
        venues={"binance": VenueConfig(symbols=[symbol], taker_fee_bps=0.0),
                "okx": VenueConfig(symbols=[symbol], taker_fee_bps=0.0, enabled=False)},
        arb=ArbConfig(max_age_ms=1e12, min_net_bps=0.0),
        check_instruments=False,
    )
    engine = Engine(config)
    feed = engine.feeds["binance"]
    snap = json.loads(capture.snapshot)
    other = BookSync("okx", symbol, SequenceRule())
    other.on_update(BookUpdate("okx", symbol, [tuple(x) for x in snap["bids"]], [tuple(x) for x in snap["asks"]],
                               0, 0, -1, True, None, 0, time.time_ns()))
    engine.detector.register(other)
    gc.collect()
    before = rss_mb()
    samples: list[tuple[int, float]] = [(0, round(before, 2))]
    sent = 0
    passes = 0
    after_first = before
    on_frame = feed.on_frame
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    next_sample = every
    while sent < messages:
        now = time.time_ns()
        if passes:
            feed.resync(symbol, "bench pass", now)  # as after a reconnect
        feed.on_snapshot(symbol, capture.snapshot, now)
        n = min(len(frames), messages - sent)
        for i in range(n):
            on_frame(frames[i], now + i)
        sent += n
        passes += 1
        for link in engine.links.values():
            link.latency.fold()  # the link's timer does this twice a second
        if engine._paper is not None:
            engine._paper.run_due()  # the engine's housekeeping does this 4 times a second
        if passes == 1:
            after_first = rss_mb()
        if sent >= next_sample:
            samples.append((sent, round(rss_mb(), 2)))
            next_sample += every
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    gc.collect()
    after = rss_mb()
    sync = feed.syncs[symbol]
    return {
        "machine": f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}",
        "book_loop": str(getattr(book, "IMPLEMENTATION", "python")),
        "messages": sent,
        "passes": passes,
        "frames_per_pass": len(frames),
        "rss_before_mb": round(before, 2),
        "rss_after_first_pass_mb": round(after_first, 2),
        "rss_after_mb": round(after, 2),
        "growth_mb": round(after - before, 2),
        "growth_after_first_pass_mb": round(after - after_first, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 2),
        "samples": samples,
        "wall_s": round(wall, 2),
        "cpu_us_per_msg": round(cpu * 1e6 / max(1, sent), 3),
        "book": {"state": sync.state.name, "applied": sync.applied, "resyncs": sync.resyncs,
                 "bid_levels": len(sync.book.bids), "ask_levels": len(sync.book.asks)},
        "opportunities_kept": len(engine.opportunities),
        "opportunities_opened": engine.opened,
        "opportunities_closed": engine.closed,
    }


def report(r: dict[str, Any]) -> str:
    trend = ", ".join(f"{n / 1e6:.1f}M: {mb}" for n, mb in r["samples"])
    return "\n".join([
        f"{r['messages']} messages ({r['passes']} passes x {r['frames_per_pass']} frames) in {r['wall_s']} s, "
        f"{r['cpu_us_per_msg']} CPU µs/msg; {r['machine']}; book loop: {r['book_loop']}",
        f"RSS before: {r['rss_before_mb']} MB, after the first pass: {r['rss_after_first_pass_mb']} MB, "
        f"after: {r['rss_after_mb']} MB, peak {r['peak_rss_mb']} MB",
        f"growth: {r['growth_mb']} MB from before the first message, "
        f"{r['growth_after_first_pass_mb']} MB after the first pass",
        f"RSS MB by messages: {trend}",
        f"book: {r['book']}; opportunities opened {r['opportunities_opened']}, closed "
        f"{r['opportunities_closed']}, {r['opportunities_kept']} events kept (bounded log)",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=10_000_000)
    ap.add_argument("--every", type=int, default=1_000_000, help="sample RSS every N messages")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.messages, max(1, args.every))
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
