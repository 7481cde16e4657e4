"""Per venue, per stage: decode, book apply, detector check and frame -> opportunity, µs per
book message, against a baseline, on the real captures.

``bench/pipeline.py``'s method applied to every venue arbwire speaks, on the real
recordings in ../shared/data/real: the hftbacktest Binance spot ETHUSDT capture, and
cryptofeed's Binance USD-M, OKX v5, Gate.io v4 and HTX captures. Each venue's session
comes from ``arbwire.venues.registry.make_session`` with the options the capture needs
(``arbwire.record.importers``/``replay.open_source``), and recorded REST snapshots are
handed over at the time they were received, exactly as ``arbwire replay`` does.

Only frames that carry a book message are timed, one by one with ``perf_counter_ns``,
over ``--passes`` passes of the capture:

* decode: ``session.on_frame`` (bytes -> typed ``BookUpdate``; HTX includes gunzip);
* apply: ``BookSync.on_update`` for updates that were applied (sequence rule, exact
  levels, best level, crossed check, checksum where the venue sends one);
* detector: ``ArbDetector.check`` right after each applied update, against a second
  venue's book for the same symbol (a static copy of that symbol's first snapshot);
* frame -> opportunity: ``VenueFeed.on_frame`` with the detector in ``on_book``: the
  whole hot path.

Baselines, same process, same frames: ``json.loads`` (after gunzip for HTX) for decode,
and a dict book of floats that finds its best level with ``max``/``min`` for apply.

    .venv/bin/python bench/stages.py [--passes N] [--venues binance,okx,...] [--json]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import platform
import sys
import time
import zlib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from arbwire import book
from arbwire.arb.detector import ArbDetector
from arbwire.feed import VenueFeed
from arbwire.model import BookUpdate
from arbwire.record.importers import Kind, Record
from arbwire.record.replay import SourceFile, merge, open_source, snapshot_matcher
from arbwire.sync import BookSync, Outcome, SequenceRule
from arbwire.venues.base import VenueSession
from arbwire.venues.registry import make_session

REAL = Path(__file__).resolve().parents[2] / "shared/data/real"
CAPTURES: dict[str, list[str]] = {
    "binance": ["hftbacktest/binance_spot_ethusdt_20240808.gz"],
    "binance-usdm": ["cryptofeed/BINANCE_FUTURES.ws.1.0", "cryptofeed/BINANCE_FUTURES.http.0.0"],
    "okx": ["cryptofeed/OKX.ws.1.0"],
    "gateio": ["cryptofeed/GATEIO.ws.1.0", "cryptofeed/GATEIO.http.0.0"],
    "htx": ["cryptofeed/HUOBI.ws.44.0"],
}
OTHER = "bybit"  # the second venue: none of the captures is Bybit
STAGES = ("decode", "apply", "detector", "frame_to_opportunity", "base_decode", "base_apply")


class VenueInput:
    """One venue's capture, read once: records in order, and how to build a fresh session."""

    def __init__(self, venue: str, paths: list[Path], max_records: int | None = None) -> None:
        self.venue = venue
        files: list[SourceFile] = [open_source(p) for p in paths]
        self.registry = next(f.registry for f in files if f.registry)
        self.options: dict[str, Any] = {}
        self.symbols: list[str] = []
        for f in files:
            for k, v in f.options.items():
                self.options.setdefault(k, v)
            for s in f.symbols:
                if s not in self.symbols:
                    self.symbols.append(s)
        by_channel: dict[str, list[SourceFile]] = {}
        for f in files:
            by_channel.setdefault(f.channel, []).append(f)
        streams = [[r for f in fs for r in f.read()] for fs in by_channel.values()]
        records = list(merge(*streams)) if len(streams) > 1 else streams[0]
        self.records: list[Record] = [r for r in records if r.kind in (Kind.RECV, Kind.HTTP)][:max_records]
        errors = [f.error for f in files if f.error]
        if errors:
            raise ValueError("; ".join(errors))

    def session(self) -> VenueSession:
        return make_session(self.registry, self.symbols, None, self.options)


def _timed_replay(
    inp: VenueInput,
    on_frame: Callable[[bytes, int], Any],
    on_snapshot: Callable[[str, bytes, int], Any],
    match: Callable[[Record], str | None],
    book_frames: set[int],
    out: list[int],
) -> None:
    clock = time.perf_counter_ns
    append = out.append
    for i, rec in enumerate(inp.records):
        if rec.kind is Kind.RECV:
            if i in book_frames:
                t0 = clock()
                on_frame(rec.payload, rec.recv_ns)
                append(clock() - t0)
            else:
                on_frame(rec.payload, rec.recv_ns)
        else:
            symbol = match(rec)
            if symbol is not None:
                with contextlib.suppress(ValueError):
                    on_snapshot(symbol, rec.payload, rec.recv_ns)


def _decoded(inp: VenueInput) -> tuple[set[int], list[tuple[int, BookUpdate]]]:
    """Which records carry a book message, and every BookUpdate (stream and REST) in order."""
    session = inp.session()
    match = snapshot_matcher(session)
    book_frames: set[int] = set()
    updates: list[tuple[int, BookUpdate]] = []
    for i, rec in enumerate(inp.records):
        if rec.kind is Kind.RECV:
            for item in session.on_frame(rec.payload, rec.recv_ns):
                if type(item) is BookUpdate:
                    book_frames.add(i)
                    updates.append((i, item))
        else:
            symbol = match(rec)
            if symbol is not None:
                with contextlib.suppress(ValueError):
                    updates.append((-1, session.parse_snapshot(symbol, rec.payload, rec.recv_ns)))
    return book_frames, updates


def _other_books(updates: Iterable[tuple[int, BookUpdate]]) -> dict[str, BookSync]:
    """Per symbol, a second venue's book: a static copy of the symbol's first snapshot."""
    out: dict[str, BookSync] = {}
    for _, upd in updates:
        if upd.is_snapshot and upd.symbol not in out and upd.bids and upd.asks:
            other = BookSync(OTHER, upd.symbol, SequenceRule())
            other.on_update(BookUpdate(OTHER, upd.symbol, list(upd.bids), list(upd.asks), 0, 0, -1, True,
                                       None, 0, upd.recv_ns))
            out[upd.symbol] = other
    return out


def _detector(others: dict[str, BookSync]) -> ArbDetector:
    detector = ArbDetector(max_age_ms=1e15)
    for other in others.values():
        detector.register(other)
    return detector


# -- baseline: what a straightforward implementation does ---------------------------------------
def _base_decoder(venue: str) -> Callable[[bytes], object]:
    if venue == "htx":
        def decode(frame: bytes) -> object:
            return json.loads(zlib.decompress(frame, 31))
        return decode
    return json.loads


class DictBook:
    """A dict of floats per side; best level by max/min on every update."""

    def __init__(self) -> None:
        self.bids: dict[float, float] = {}
        self.asks: dict[float, float] = {}

    def apply(self, upd: BookUpdate) -> tuple[float | None, float | None]:
        if upd.is_snapshot:
            self.bids = {float(p): float(q) for p, q, *_ in upd.bids}
            self.asks = {float(p): float(q) for p, q, *_ in upd.asks}
        else:
            for side, levels in ((self.bids, upd.bids), (self.asks, upd.asks)):
                for p, q, *_ in levels:
                    qty = float(q)
                    if qty == 0.0:
                        side.pop(float(p), None)
                    else:
                        side[float(p)] = qty
        return (max(self.bids) if self.bids else None), (min(self.asks) if self.asks else None)


# -- one venue ----------------------------------------------------------------------------------
def run_venue(inp: VenueInput, passes: int) -> dict[str, Any]:
    book_frames, updates = _decoded(inp)
    others = _other_books(updates)
    samples: dict[str, list[int]] = {k: [] for k in STAGES}
    clock = time.perf_counter_ns
    base_decode = _base_decoder(inp.venue)
    applied = opportunities = 0
    levels = 0
    for _ in range(passes):
        gc.collect()
        # decode
        session = inp.session()
        _timed_replay(inp, session.on_frame, lambda s, b, t: None, lambda r: None, book_frames,
                      samples["decode"])
        # baseline decode
        out = samples["base_decode"]
        for i in sorted(book_frames):
            payload = inp.records[i].payload
            t0 = clock()
            base_decode(payload)
            out.append(clock() - t0)
        # apply + detector, per applied update
        syncs = {s: BookSync(inp.venue, s, session.sequence_rule(s)) for s in inp.symbols}
        detector = _detector(others)
        for sync in syncs.values():
            detector.register(sync)
        a_out, d_out = samples["apply"], samples["detector"]
        for i, upd in updates:
            sync = syncs.get(upd.symbol)
            if sync is None:
                sync = syncs[upd.symbol] = BookSync(inp.venue, upd.symbol, session.sequence_rule(upd.symbol))
                detector.register(sync)
            t0 = clock()
            outcome = sync.on_update(upd)
            t1 = clock()
            if outcome is Outcome.APPLIED:
                found = detector.check(sync, upd.recv_ns)
                t2 = clock()
                if i >= 0:  # a stream message, not a REST snapshot
                    a_out.append(t1 - t0)
                    d_out.append(t2 - t1)
                    applied += 1
                    levels += len(upd.bids) + len(upd.asks)
                opportunities += len(found)
        # baseline apply on the same updates (no sequence checks)
        books: dict[str, DictBook] = {}
        out = samples["base_apply"]
        for i, upd in updates:
            book = books.get(upd.symbol)
            if book is None:
                book = books[upd.symbol] = DictBook()
            t0 = clock()
            book.apply(upd)
            if i >= 0:
                out.append(clock() - t0)
        # the whole hot path
        detector = _detector(others)

        def on_book(sync: BookSync, upd: BookUpdate, check: Callable[..., Any] = detector.check) -> None:
            check(sync, upd.recv_ns)

        feed = VenueFeed(inp.session(), on_book=on_book)
        detector.register_all(feed.syncs.values())
        _timed_replay(inp, feed.on_frame, feed.on_snapshot, snapshot_matcher(feed.session), book_frames,
                      samples["frame_to_opportunity"])
    stages = {k: _stats(v) for k, v in samples.items()}
    return {
        "venue": inp.venue,
        "capture": [str(p) for p in CAPTURES.get(inp.venue, [])],
        "symbols": len(inp.symbols),
        "book_frames": len(book_frames),
        "applied_per_pass": applied // max(1, passes),
        "levels_per_update": round(levels / applied, 1) if applied else 0.0,
        "opportunities_per_pass": opportunities // max(1, passes),
        "stages": stages,
        "ratios": {
            "decode": _ratio(stages["base_decode"], stages["decode"]),
            "apply": _ratio(stages["base_apply"], stages["apply"]),
        },
    }


def _stats(samples: list[int]) -> dict[str, float]:
    if not samples:
        return {"n": 0, "median_us": 0.0, "p99_us": 0.0, "mean_us": 0.0}
    s = sorted(samples)
    n = len(s)
    return {
        "n": n,
        "median_us": round(s[n // 2] / 1000, 2),
        "p99_us": round(s[min(n - 1, int(n * 0.99))] / 1000, 2),
        "mean_us": round(sum(s) / n / 1000, 2),
    }


def _ratio(base: dict[str, float], ours: dict[str, float]) -> float:
    return round(base["median_us"] / ours["median_us"], 2) if ours.get("median_us") else 0.0


def run(passes: int, venues: list[str], max_records: int | None = None) -> dict[str, Any]:
    results = []
    for venue in venues:
        inp = VenueInput(venue, [REAL / p for p in CAPTURES[venue]], max_records)
        results.append(run_venue(inp, passes))
    return {
        "machine": f"{platform.python_implementation()} {platform.python_version()} on {platform.machine()}",
        "book_loop": str(getattr(book, "IMPLEMENTATION", "python")),
        "passes": passes,
        "venues": results,
    }


def report(result: dict[str, Any]) -> str:
    lines = [f"µs per book message, median / p99, {result['passes']} passes; {result['machine']}; "
             f"book loop: {result['book_loop']}",
             f"{'venue':13} {'msgs':>6} {'lvls':>6}  {'decode':>13} {'apply':>13} {'detector':>13} "
             f"{'frame->opp':>13}  {'json.loads':>13} {'dict book':>13}  {'decode x':>8} {'apply x':>8}"]
    for v in result["venues"]:
        st = v["stages"]

        def cell(k: str, st: dict[str, Any] = st) -> str:
            return f"{st[k]['median_us']:6.2f}/{st[k]['p99_us']:6.1f}"

        lines.append(
            f"{v['venue']:13} {v['applied_per_pass']:6} {v['levels_per_update']:6}  {cell('decode'):>13} "
            f"{cell('apply'):>13} {cell('detector'):>13} {cell('frame_to_opportunity'):>13}  "
            f"{cell('base_decode'):>13} {cell('base_apply'):>13}  {v['ratios']['decode']:7.2f}x "
            f"{v['ratios']['apply']:7.2f}x"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passes", type=int, default=10)
    ap.add_argument("--venues", default=",".join(CAPTURES), help=f"comma list of {','.join(CAPTURES)}")
    ap.add_argument("--max-records", type=int, default=None, help="only the first N records per capture (smoke)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    venues = [v.strip() for v in args.venues.split(",") if v.strip()]
    unknown = set(venues) - set(CAPTURES)
    if unknown:
        ap.error(f"unknown venues {sorted(unknown)} (known: {', '.join(CAPTURES)})")
    result = run(args.passes, venues, args.max_records)
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
