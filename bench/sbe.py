"""Decode cost per message, Binance spot JSON against Binance SBE, on the same real events.

Frames: every frame of the real hftbacktest ETHUSDT capture
(../shared/data/real/hftbacktest/binance_spot_ethusdt_20240808.gz), and the same events
re-encoded as the SBE messages Binance's binary endpoint sends for them (bestBidAsk,
trade, depth diff; 8-decimal exponents, as the JSON texts have), with the simulator's
encoder. Rows:

* ``json``: ``BinanceSession.on_frame`` (the one-pass typed msgspec decode): the baseline;
* ``sbe``: ``BinanceSbeSession.on_frame`` with the C decoder ``arbwire._sbe``;
* ``sbe python``: the same session with the pure-Python reference decoder (``struct``).

All three produce identical events (tests/test_binance_sbe_session.py). Each figure is the
minimum over ``--repeats`` runs of a pass over the group's frames, divided by the number
of frames, with the collector off: the minimum is what preemption cannot inflate.

    .venv/bin/python bench/sbe.py [--repeats N] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from arbwire.record.importers import Kind, read_hftbacktest
from arbwire.sim import binance_sbe as wire
from arbwire.venues.binance import BinanceSession
from arbwire.venues.binance_sbe import IMPLEMENTATION, BinanceSbeSession

CAPTURE = Path(__file__).resolve().parents[2] / "shared/data/real/hftbacktest/binance_spot_ethusdt_20240808.gz"
KINDS = ("bookTicker", "trade", "depth")


def frames() -> dict[str, list[tuple[bytes, bytes]]]:
    """(JSON frame, SBE message) pairs by stream kind."""
    out: dict[str, list[tuple[bytes, bytes]]] = {k: [] for k in KINDS}
    for rec in read_hftbacktest(CAPTURE):
        if rec.kind is not Kind.RECV:
            continue
        frame = json.loads(rec.payload)
        stream, data = frame["stream"], frame["data"]
        if stream.endswith("@bookTicker"):
            out["bookTicker"].append((rec.payload, wire.best_bid_ask_from_json(data, 0)))
        elif stream.endswith("@trade"):
            out["trade"].append((rec.payload, wire.trades_from_json([data], data["T"] * 1000)[0]))
        else:
            out["depth"].append((rec.payload, wire.depth_diff_from_json(data, data["E"] * 1000)))
    return out


def per_frame_ns(fn: Callable[[bytes, int], Any], payloads: list[bytes], repeats: int) -> float:
    clock = time.perf_counter_ns
    best = math.inf
    for _ in range(repeats):
        t0 = clock()
        for p in payloads:
            fn(p, 1)
        best = min(best, clock() - t0)
    return best / len(payloads)


def run(repeats: int) -> list[dict[str, Any]]:
    rows = []
    gc.disable()
    try:
        for kind, pairs in frames().items():
            as_json = [j for j, _ in pairs]
            as_sbe = [s for _, s in pairs]
            slow = BinanceSbeSession(["ETH-USDT"], api_key="k")
            slow._events = slow._events_py
            row = {
                "kind": kind,
                "frames": len(pairs),
                "json_bytes": sum(map(len, as_json)) / len(pairs),
                "sbe_bytes": sum(map(len, as_sbe)) / len(pairs),
                "json_ns": per_frame_ns(BinanceSession(["ETH-USDT"]).on_frame, as_json, repeats),
                "sbe_ns": per_frame_ns(BinanceSbeSession(["ETH-USDT"], api_key="k").on_frame, as_sbe, repeats),
                "sbe_python_ns": per_frame_ns(slow.on_frame, as_sbe, max(1, repeats // 4)),
            }
            rows.append(row)
    finally:
        gc.enable()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=40)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = run(args.repeats)
    if args.json:
        print(json.dumps({"sbe_decoder": IMPLEMENTATION, "rows": rows}, indent=1))
        return 0
    print(f"SBE decoder of the session: {IMPLEMENTATION}; minimum of {args.repeats} passes, ns per frame")
    print(f"{'stream':11} {'frames':>6} {'JSON B':>7} {'SBE B':>6} {'json':>8} {'sbe':>8} {'sbe py':>8} {'json/sbe':>9}")
    for r in rows:
        print(
            f"{r['kind']:11} {r['frames']:6} {r['json_bytes']:7.0f} {r['sbe_bytes']:6.0f} {r['json_ns']:8.0f} "
            f"{r['sbe_ns']:8.0f} {r['sbe_python_ns']:8.0f} {r['json_ns'] / r['sbe_ns']:8.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
