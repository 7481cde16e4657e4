"""Per frame kind, what one frame costs through the live path, in process: the session's
decode, then ``VenueFeed`` with the engine's callbacks, then the ``Link`` frame handler
(counters, the processing-time sample), which is what a picows callback calls.

Quotes and trades, 90% of the frames of a Binance stream: depth diffs, which change a
book and so cannot be replayed in a loop, are timed by ``bench/pipeline.py`` and
``bench/stages.py``. Input: the real hftbacktest Binance ETHUSDT capture. The
engine is built from a config like the compare benchmark's (one venue, one symbol, never
connected); its primary connection object is made by hand so ``Link._frame`` runs
exactly as for a received frame. ns per frame, the minimum over ``--passes`` passes of
each kind's frames (each pass times the whole batch; the machine only ever adds time).
Baseline in the same run: ``json.loads`` of the same frames.

    .venv/bin/python bench/frames.py [--passes N] [--frames N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

from arbwire.book import IMPLEMENTATION
from arbwire.config import ArbConfig, Config, LinkConfig, VenueConfig
from arbwire.engine import Engine
from arbwire.net.link import Role, _Conn
from arbwire.record.importers import Kind, read_hftbacktest
from stages import REAL

CAPTURE = REAL / "hftbacktest/binance_spot_ethusdt_20240808.gz"
KINDS = {"bookTicker": b"@bookTicker", "trade": b"@trade"}
LOOPBACK = "127.0.0.1:9"  # never connected: the engine is not run


def _frames(limit: int) -> dict[str, list[bytes]]:
    by_kind: dict[str, list[bytes]] = {k: [] for k in KINDS}
    for rec in read_hftbacktest(CAPTURE):
        if rec.kind is not Kind.RECV:
            continue
        for kind, marker in KINDS.items():
            if marker in rec.payload[:60] and len(by_kind[kind]) < limit:
                by_kind[kind].append(rec.payload)
    return by_kind


def _best(fn: Callable[[bytes], Any], frames: list[bytes], passes: int) -> float:
    clock = time.perf_counter_ns
    best = float("inf")
    for _ in range(passes):
        t0 = clock()
        for payload in frames:
            fn(payload)
        best = min(best, (clock() - t0) / len(frames))
    return best


async def _run(passes: int, limit: int) -> dict[str, Any]:
    config = Config(
        venues={"binance": VenueConfig(symbols=["ETH-USDT"], ws_url=f"wss://{LOOPBACK}", rest_url=f"https://{LOOPBACK}")},
        arb=ArbConfig(max_age_ms=1e12), link=LinkConfig(dead_after_s=60.0), log_level="WARNING",
        check_instruments=False,
    )
    engine = Engine(config)
    link = engine.links["binance"]
    conn = _Conn(link, link.shards[0], link.feed.session, Role.PRIMARY, f"wss://{LOOPBACK}", 1)
    session, feed, frame = link.feed.session.on_frame, link.feed.on_frame, link._frame
    paths: dict[str, Callable[[bytes], Any]] = {
        "json.loads (baseline)": json.loads,
        "session.on_frame": lambda p: session(p, 0),
        "feed.on_frame": lambda p: feed(p, 0),
        "link frame handler": lambda p: frame(conn, p, 0),
    }
    by_kind = _frames(limit)
    out: dict[str, dict[str, float]] = {}
    for kind, frames in by_kind.items():
        out[kind] = {name: round(_best(fn, frames, passes), 1) for name, fn in paths.items()}
    counters = engine.counters["binance"]
    return {
        "machine": f"CPython {platform.python_version()} on {platform.machine()}",
        "book": IMPLEMENTATION,
        "frames": {k: len(v) for k, v in by_kind.items()},
        "passes": passes,
        "ns_per_frame": out,
        # what the engine counted: every timed frame reached it as a quote or a trade
        "counted": {"quotes": counters.quotes, "trades": counters.trades, "link_frames": link.stats.frames,
                    "bad_frames": link.feed.session.stats.bad_frames},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passes", type=int, default=20)
    ap.add_argument("--frames", type=int, default=5000, help="frames of each kind")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = asyncio.run(_run(args.passes, args.frames))
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"ns per frame, minimum of {result['passes']} passes; {result['machine']}; book: {result['book']}")
    names = list(next(iter(result["ns_per_frame"].values())))
    print(f"{'kind':12} {'frames':>6}  " + "  ".join(f"{n:>22}" for n in names) + "  link / json.loads")
    for kind, row in result["ns_per_frame"].items():
        ratio = row["link frame handler"] / row["json.loads (baseline)"]
        print(f"{kind:12} {result['frames'][kind]:>6}  " + "  ".join(f"{row[n]:>22.1f}" for n in names)
              + f"  {ratio:17.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
