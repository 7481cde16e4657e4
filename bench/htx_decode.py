"""Where an HTX ``depth.step0`` frame's decode goes, µs per frame, on the real capture.

The 292 book frames of ../shared/data/real/cryptofeed/HUOBI.ws.44.0 (10 small-price
symbols, ~200 levels a frame, 37 % of the numbers exponent literals such as
``9.121E-7``), each step alone: gunzip, the envelope and tick decode that cut the
level arrays out as ``msgspec.Raw``, the level arrays through ``_levels`` and through
``_levels_careful`` (its reference), with warm tables and from empty ones, and the
whole ``HtxSession.on_frame``; gunzip by zlib and by libdeflate, the level arrays in C
(``arbwire._levels.htx_levels``) and by the Python fast path. Every figure is the minimum over ``--repeats`` runs
through all frames: other work on the machine only ever adds time.

    .venv/bin/python bench/htx_decode.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import msgspec

from arbwire.record.importers import Kind, read_cryptofeed
from arbwire.venues import htx

CAPTURE = Path(__file__).resolve().parents[2] / "shared/data/real/cryptofeed/HUOBI.ws.44.0"
SYMBOLS = ["TRIO-ETH", "BOR-USDT", "OMG-BTC", "XVG-ETH", "YFI-HUSD", "ZEN-ETH", "DOGE-ETH",
           "FIL3S-USDT", "PROPY-ETH", "NEST-ETH"]  # fmt: skip


def _frames() -> list[bytes]:
    out = []
    for r in read_cryptofeed(CAPTURE):
        if r.kind is Kind.RECV:
            text = zlib.decompress(r.payload, 31)
            if b".depth." in text and b'"tick"' in text:
                out.append(r.payload)
    return out


def _best(run: Callable[[], object], repeats: int, per: int) -> float:
    clock = time.perf_counter_ns
    best = None
    for _ in range(repeats):
        t0 = clock()
        run()
        elapsed = clock() - t0
        best = elapsed if best is None else min(best, elapsed)
    return round((best or 0) / per / 1000, 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=25)
    args = ap.parse_args(argv)
    frames = _frames()
    texts = [zlib.decompress(f, 31) for f in frames]
    envelope = msgspec.json.Decoder(htx._Envelope)
    depth = msgspec.json.Decoder(htx._DepthTick)
    ticks = [depth.decode(envelope.decode(t).tick) for t in texts]
    arrays = [a for t in ticks for a in (t.bids, t.asks)]
    if any(htx._levels(a) != htx._levels_careful(a) for a in arrays):
        raise SystemExit("fast and careful level decode differ")
    session = htx.HtxSession(SYMBOLS, book_channel="depth")

    def gunzip() -> None:
        for f in frames:
            zlib.decompressobj(31).decompress(f)

    def gunzip_libdeflate() -> None:
        limit = session.max_frame_bytes
        for f in frames:
            htx._gunzip_fast(f, limit)

    def envelope_and_tick() -> None:
        for t in texts:
            depth.decode(envelope.decode(t).tick)

    def levels(fn: Callable[[msgspec.Raw], object], cold: bool, c: bool = True) -> Callable[[], None]:
        def run() -> None:
            if cold:
                htx._TEXTS.clear()
                htx._NORMALIZED.clear()
            saved = htx._c_htx_levels
            if not c:
                htx._c_htx_levels = None
            try:
                for a in arrays:
                    fn(a)
            finally:
                htx._c_htx_levels = saved
        return run

    def on_frame() -> None:
        session._depth_seen.clear()
        for f in frames:
            session.on_frame(f, 1)

    n, r = len(frames), args.repeats
    result = {
        "frames": n,
        "gunzip zlib": _best(gunzip, r, n),
        "gunzip libdeflate": _best(gunzip_libdeflate, r, n) if htx._LIBDEFLATE else None,
        "envelope+tick": _best(envelope_and_tick, r, n),
        "levels C, warm": _best(levels(htx._levels, False), r, n) if htx._c_htx_levels else None,
        "levels fast Python, warm": _best(levels(htx._levels, False, c=False), r, n),
        "levels careful, warm": _best(levels(htx._levels_careful, False), r, n),
        "levels C, from empty tables": _best(levels(htx._levels, True), r, n) if htx._c_htx_levels else None,
        "levels fast Python, from empty tables": _best(levels(htx._levels, True, c=False), r, n),
        "levels careful, from empty tables": _best(levels(htx._levels_careful, True), r, n),
        "on_frame": _best(on_frame, r, n),
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
