"""HTX's default book channel, ``mbp.150`` increments, µs per update: decode, apply and the
whole frame -> opportunity path, against the same baselines as ``bench/stages.py``.

No capture of a whole ``mbp`` stream exists (``../shared/data/real`` holds five real
increments, timed here too), so the stream is derived from real books: the 292 real
``depth.step0`` frames of the HTX capture (cryptofeed ``HUOBI.ws.44.0``, 150 levels a
side, about one a second per symbol) give, per symbol, the changes from one book to the
next, which is exactly what an ``mbp.150`` increment carries; they are written as HTX
writes them (gzip, JSON numbers, ``seqNum``/``prevSeqNum`` chained), with the
simulator's number formatting. The ``req`` the feed sends for each symbol is answered
with that symbol's book as of the last increment delivered (untimed), as HTX does.
A second's worth of changes is larger than the 100 ms increments HTX pushes (the five
real ones carry 5-19 levels), so these updates are on the heavy side.

    .venv/bin/python bench/htx_mbp.py [--passes N] [--json]
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import re
import sys
import time
import zlib
from decimal import Decimal
from typing import Any

from arbwire.feed import VenueFeed
from arbwire.model import BookUpdate
from arbwire.record.importers import Kind, read_cryptofeed
from arbwire.sim.htx import htx_num
from arbwire.sim.levels import delta
from arbwire.sync import BookSync, Outcome
from arbwire.venues.base import Send
from arbwire.venues.htx import HtxSession
from stages import REAL, DictBook, _base_decoder, _detector, _other_books, _stats

CAPTURE = REAL / "cryptofeed/HUOBI.ws.44.0"
FIXTURE = REAL / "fixtures/htx/tardis_spot_mbp150_incremental_and_req_2020.jsonl"
STEP = 37  # seqNum is not contiguous on HTX (real increments step by 22-76)
_REQ = re.compile(r'"req":"market\.([a-z0-9]+)\.mbp\.150","id":"([^"]+)"')

Book = dict[Decimal, Decimal]


def _levels(pairs: list[tuple[Decimal, Decimal]]) -> str:
    return "[" + ",".join(f"[{htx_num(p, bare_ints=True)},{htx_num(s, bare_ints=True)}]" for p, s in pairs) + "]"


def _gz(obj: str) -> bytes:
    return gzip.compress(obj.encode(), compresslevel=6, mtime=0)


class Stream:
    """Per symbol: increments (frame, recv_ns, seqNum) and, per increment, the rep of the
    book as of it."""

    def __init__(self) -> None:
        books: dict[str, list[tuple[int, int, Book, Book]]] = {}
        for rec in read_cryptofeed(CAPTURE):
            if rec.kind is not Kind.RECV:
                continue
            msg = json.loads(zlib.decompress(rec.payload, 31), parse_float=Decimal, parse_int=Decimal)
            ch = msg.get("ch", "")
            if not ch.endswith(".depth.step0"):
                continue
            tick = msg["tick"]
            bids = {Decimal(p): Decimal(s) for p, s in tick["bids"][:150]}
            asks = {Decimal(p): Decimal(s) for p, s in tick["asks"][:150]}
            books.setdefault(ch.split(".")[1], []).append((rec.recv_ns, int(msg["ts"]), bids, asks))
        self.names = sorted(books)
        self.increments: list[tuple[str, bytes, int, int]] = []  # name, frame, recv_ns, seqNum
        self.reps: dict[tuple[str, int], str] = {}  # (name, seqNum) -> rep body without the id
        for n, name in enumerate(self.names):
            seq = 100_000 * (n + 1)
            _, ts, bids, asks = books[name][0]
            self.reps[(name, seq)] = self._rep(name, seq, ts, bids, asks)
            for recv_ns, ts, new_bids, new_asks in books[name][1:]:
                db, da = delta(bids, new_bids), delta(asks, new_asks)
                tick = (f'{{"seqNum":{seq + STEP},"prevSeqNum":{seq},'
                        f'"asks":{_levels(sorted(da.items()))},"bids":{_levels(sorted(db.items(), reverse=True))}}}')
                frame = _gz(f'{{"ch":"market.{name}.mbp.150","ts":{ts},"tick":{tick}}}')
                seq += STEP
                bids, asks = new_bids, new_asks
                self.increments.append((name, frame, recv_ns, seq))
                self.reps[(name, seq)] = self._rep(name, seq, ts, bids, asks)
        self.increments.sort(key=lambda inc: inc[2])

    @staticmethod
    def _rep(name: str, seq: int, ts: int, bids: Book, asks: Book) -> str:
        data = (f'{{"seqNum":{seq},"bids":{_levels(sorted(bids.items(), reverse=True))},'
                f'"asks":{_levels(sorted(asks.items()))}}}')
        return f'"rep":"market.{name}.mbp.150","status":"ok","ts":{ts},"data":{data}'

    def symbols(self) -> list[str]:
        return [HtxSession([]).names.to_common(name) for name in self.names]


def _answer(stream: Stream, actions: list[Any], name_seq: dict[str, int]) -> list[bytes]:
    """The reps HTX sends for the ``req``s among ``actions``."""
    out = []
    for action in actions:
        if type(action) is Send:
            m = _REQ.search(action.text)
            if m is not None:
                name, rid = m[1], m[2]
                out.append(_gz(f'{{"id":"{rid}",{stream.reps[(name, name_seq[name])]}}}'))
    return out


def run(passes: int) -> dict[str, Any]:
    stream = Stream()
    symbols = stream.symbols()
    samples: dict[str, list[int]] = {k: [] for k in ("decode", "apply", "frame_to_opportunity",
                                                      "base_decode", "base_apply", "fixture_decode")}
    clock = time.perf_counter_ns
    base_decode = _base_decoder("htx")
    fixture = [_gz(line) for line in FIXTURE.read_text().splitlines() if '"ch"' in line]
    levels = applied = 0
    for _ in range(passes):
        gc.collect()
        # decode: the session alone, every increment
        session = HtxSession(symbols)
        updates: list[BookUpdate] = []
        for _, frame, recv_ns, _ in stream.increments:
            t0 = clock()
            out = session.on_frame(frame, recv_ns)
            samples["decode"].append(clock() - t0)
            updates += [u for u in out if type(u) is BookUpdate]
            t0 = clock()
            base_decode(frame)
            samples["base_decode"].append(clock() - t0)
        real = HtxSession(["BTC-USDT"])
        for frame in fixture:
            t0 = clock()
            real.on_frame(frame, 1)
            samples["fixture_decode"].append(clock() - t0)
        # the whole path: the feed asks for each book, HTX answers, then every increment applies
        first: dict[str, BookUpdate] = {}
        name_seq: dict[str, int] = {}
        syncs: dict[str, BookSync] = {}

        def on_book(sync: BookSync, upd: BookUpdate, first: dict[str, BookUpdate] = first) -> None:
            if upd.is_snapshot:
                first.setdefault(sync.symbol, upd)

        feed = VenueFeed(HtxSession(symbols), on_book=on_book)
        detector = None
        for (name, frame, recv_ns, seq), upd in zip(stream.increments, updates, strict=True):
            name_seq[name] = seq
            synced = all(s.synced for s in feed.syncs.values()) and len(feed.syncs) == len(symbols)
            if synced and detector is None:
                detector = _detector(_other_books((-1, u) for u in first.values()))
                detector.register_all(feed.syncs.values())
                feed.on_book = lambda sync, u, check=detector.check: check(sync, u.recv_ns)
                syncs = {s: BookSync("htx", s, feed.session.sequence_rule(s)) for s in symbols}
                for s, sync in syncs.items():
                    sync.on_update(feed.syncs[s].as_snapshot())
            t0 = clock()
            actions = feed.on_frame(frame, recv_ns)
            elapsed = clock() - t0
            for rep in _answer(stream, actions, name_seq):
                feed.on_frame(rep, recv_ns)
            if detector is not None:
                samples["frame_to_opportunity"].append(elapsed)
                sync = syncs[upd.symbol]
                t0 = clock()
                outcome = sync.on_update(upd)
                samples["apply"].append(clock() - t0)
                if outcome is Outcome.APPLIED:
                    applied += 1
                    levels += len(upd.bids) + len(upd.asks)
        assert detector is not None and all(s.synced for s in feed.syncs.values()), "books never synced"
        book = DictBook()
        for upd in updates:
            t0 = clock()
            book.apply(upd)
            samples["base_apply"].append(clock() - t0)
    stats = {k: _stats(v) for k, v in samples.items()}
    return {
        "symbols": len(symbols),
        "increments_per_pass": len(stream.increments),
        "levels_per_update": round(levels / applied, 1) if applied else 0.0,
        "applied_per_pass": applied // passes,
        "fixture_increments": len(fixture),
        "passes": passes,
        "stages": stats,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--passes", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.passes)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    st = result["stages"]
    print(f"HTX mbp.150 increments derived from real books: {result['increments_per_pass']} per pass, "
          f"{result['symbols']} symbols, {result['levels_per_update']} levels per update; µs median / p99")
    for key in ("decode", "apply", "frame_to_opportunity", "base_decode", "base_apply", "fixture_decode"):
        print(f"  {key:22} {st[key]['median_us']:8.2f} / {st[key]['p99_us']:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
