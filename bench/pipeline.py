"""Per depth update: decode, book apply, and frame -> opportunity check, against a baseline.

Input is real traffic: the hftbacktest Binance ETHUSDT capture (../shared/data/real),
replayed from its REST snapshot through every depth diff. Each stage is timed per
update with ``perf_counter_ns`` over several passes; the baseline (``json.loads`` and a
plain dict book that finds its best level with ``max``/``min``) runs in the same
process on the same frames, so the ratios hold whatever the machine. The book stages
run twice: with the default ``L2Book`` (C sides when ``arbwire._book`` is built) and with
``PyL2Book`` (the pure-Python sides, the reference), rows ``... (pure Python)``;
``L2Book.apply`` rows time the book alone, ``apply`` adds the sync state machine.

    .venv/bin/python bench/pipeline.py [--passes N] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import statistics
import sys
import time
from pathlib import Path

from arbwire.arb.detector import ArbDetector
from arbwire.book import IMPLEMENTATION, L2Book, PyL2Book
from arbwire.feed import VenueFeed
from arbwire.model import BookUpdate
from arbwire.record.importers import Kind, read_hftbacktest
from arbwire.sync import BookSync, SequenceRule
from arbwire.venues.binance import BinanceSession

CAPTURE = Path(__file__).resolve().parents[2] / "shared/data/real/hftbacktest/binance_spot_ethusdt_20240808.gz"


def load() -> tuple[bytes, list[bytes]]:
    snapshot = b""
    frames: list[bytes] = []
    for r in read_hftbacktest(CAPTURE):
        if r.kind is Kind.HTTP:
            snapshot = r.payload
        elif snapshot and b"@depth" in r.payload:
            frames.append(r.payload)
    return snapshot, frames


def stats(samples: list[int]) -> dict[str, float]:
    samples.sort()
    n = len(samples)
    return {
        "median_us": samples[n // 2] / 1000,
        "p99_us": samples[min(n - 1, int(n * 0.99))] / 1000,
        "mean_us": statistics.fmean(samples) / 1000,
    }


def timed(fn, items) -> list[int]:  # type: ignore[no-untyped-def]
    clock = time.perf_counter_ns
    out = []
    append = out.append
    for item in items:
        t0 = clock()
        fn(item)
        append(clock() - t0)
    return out


# -- baseline: what a straightforward implementation does ---------------------------------
def baseline_decode(frame: bytes) -> object:
    return json.loads(frame)


class DictBook:
    def __init__(self, snap: dict) -> None:
        self.bids = {float(p): float(q) for p, q in snap["bids"]}
        self.asks = {float(p): float(q) for p, q in snap["asks"]}

    def apply(self, data: dict) -> tuple[float, float]:
        for side, levels in ((self.bids, data["b"]), (self.asks, data["a"])):
            for p, q in levels:
                q = float(q)
                if q == 0.0:
                    side.pop(float(p), None)
                else:
                    side[float(p)] = q
        return max(self.bids), min(self.asks)


# -- arbwire stages ---------------------------------------------------------------------------
def run(passes: int) -> dict:
    snapshot, frames = load()
    snap_json = json.loads(snapshot)
    decoded_base = [json.loads(f)["data"] for f in frames]
    session = BinanceSession(["ETH-USDT"])
    updates: list[BookUpdate] = [session.on_frame(f, 1)[0] for f in frames]  # type: ignore[misc]
    stages = ("decode", "book", "book_py", "apply", "apply_py", "frame_to_opportunity", "frame_to_opportunity_py", "base_decode", "base_apply", "base_total")
    results: dict[str, list[int]] = {k: [] for k in stages}
    books: tuple[tuple[str, type[L2Book]], ...] = (("", L2Book), ("_py", PyL2Book))
    for _ in range(passes):
        gc.collect()
        # decode
        s = BinanceSession(["ETH-USDT"])
        results["decode"] += timed(lambda f, s=s: s.on_frame(f, 1), frames)
        results["base_decode"] += timed(baseline_decode, frames)
        snap_upd = s.parse_snapshot("ETH-USDT", snapshot, 1)
        for suffix, book_cls in books:
            # the level loop alone: L2Book.apply
            l2 = book_cls()
            l2.apply_snapshot(snap_upd.bids, snap_upd.asks)
            results["book" + suffix] += timed(lambda u, b=l2: b.apply(u.bids, u.asks), updates)
        # book apply (sequence rule + levels + crossed check), default and pure-Python loop
        for suffix, book_cls in books:
            sync = BookSync("binance", "ETH-USDT", SequenceRule())
            sync.book = book_cls(sync.book.max_depth)
            sync.on_update(s.parse_snapshot("ETH-USDT", snapshot, 1))
            results["apply" + suffix] += timed(sync.on_update, updates)
        book = DictBook(snap_json)
        results["base_apply"] += timed(book.apply, decoded_base)
        book = DictBook(snap_json)
        results["base_total"] += timed(lambda f, b=book: b.apply(json.loads(f)["data"]), frames)
        # whole hot path: frame -> session -> sync -> detector against a second venue's book
        for suffix, book_cls in books:
            detector = ArbDetector(max_age_ms=1e12)
            other = BookSync("okx", "ETH-USDT", SequenceRule())
            other.on_update(BookUpdate("okx", "ETH-USDT", [tuple(x) for x in snap_json["bids"]], [tuple(x) for x in snap_json["asks"]], 0, 0, -1, True, None, 0, time.time_ns()))
            detector.register(other)
            found = []

            def on_book(
                sync: BookSync, upd: BookUpdate, detector: ArbDetector = detector, found: list = found
            ) -> None:
                found.extend(detector.check(sync, upd.recv_ns))

            feed = VenueFeed(BinanceSession(["ETH-USDT"]), on_book=on_book)
            ours = feed.syncs["ETH-USDT"]
            ours.book = book_cls(ours.book.max_depth)  # before register: the detector keeps its lists
            detector.register(ours)
            feed.on_snapshot("ETH-USDT", snapshot, time.time_ns())
            now = time.time_ns()
            results["frame_to_opportunity" + suffix] += timed(lambda f, feed=feed, now=now: feed.on_frame(f, now), frames)
    out = {k: stats(v) for k, v in results.items()}
    levels = sum(len(u.bids) + len(u.asks) for u in updates) / len(updates)
    return {
        "machine": f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}, {platform.processor() or 'cpu'}",
        "frames": len(frames),
        "passes": passes,
        "levels_per_update": round(levels, 1),
        "book_loop": IMPLEMENTATION,
        "stages": out,
        "ratios": {
            "decode": out["base_decode"]["median_us"] / out["decode"]["median_us"],
            "apply": out["base_apply"]["median_us"] / out["apply"]["median_us"],
            "total": out["base_total"]["median_us"] / out["frame_to_opportunity"]["median_us"],
            "apply_py": out["base_apply"]["median_us"] / out["apply_py"]["median_us"],
            "book": out["base_apply"]["median_us"] / out["book"]["median_us"],
            "book_py": out["base_apply"]["median_us"] / out["book_py"]["median_us"],
            "total_py": out["base_total"]["median_us"] / out["frame_to_opportunity_py"]["median_us"],
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--passes", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.passes)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['frames']} real ETHUSDT depth updates x {result['passes']} passes, {result['levels_per_update']} levels/update; {result['machine']}")
    print(f"book sides: {result['book_loop']}")
    print(f"{'stage':28} {'median µs':>10} {'p99 µs':>10}   {'baseline':28} {'median µs':>10} {'p99 µs':>10}  {'speed-up':>8}")
    rows = [
        ("decode", "base_decode", "decode"),
        ("book", "base_apply", "book"),
        ("book_py", "base_apply", "book_py"),
        ("apply", "base_apply", "apply"),
        ("apply_py", "base_apply", "apply_py"),
        ("frame_to_opportunity", "base_total", "total"),
        ("frame_to_opportunity_py", "base_total", "total_py"),
    ]
    st = result["stages"]
    labels = {"base_decode": "json.loads", "base_apply": "dict book + max/min", "base_total": "json.loads + dict book"}
    names = {
        "book": "L2Book.apply",
        "book_py": "L2Book.apply (pure Python)",
        "apply_py": "apply (pure Python)",
        "frame_to_opportunity_py": "frame_to_opp. (pure Python)",
    }
    for ours, base, ratio in rows:
        print(
            f"{names.get(ours, ours):28} {st[ours]['median_us']:10.2f} {st[ours]['p99_us']:10.2f}   {labels[base]:28} "
            f"{st[base]['median_us']:10.2f} {st[base]['p99_us']:10.2f}  {result['ratios'][ratio]:7.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
