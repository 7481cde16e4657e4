"""Decode cost per frame, Bybit v5 and Gate v4: ``session.on_frame`` (the one-pass typed
union) against ``session._two_step`` (envelope with raw data, then the payload: the
reference and fallback), on the real frames.

Frames: the real Bybit ``orderbook.50`` snapshot and delta (../shared/data/real/fixtures),
every received frame of the real Gate capture (cryptofeed ``GATEIO.ws.1.0``, grouped by
channel and event, read with ``book_channel="order_book_update"`` as recorded), and the
real Gate ``spot.obu`` full book and increment (fixtures; their envelope was stripped by
the source, so they get the real one back: ``channel``, ``result``, ``time_ms``, ``event``).
No real Bybit trade or ticker push and no real Gate ``spot.book_ticker`` push is stored,
so those rows use the frames of ../shared/docs/exchange-protocols.md (marked ``doc``).

Each row is the minimum over ``--repeats`` runs of ``--loops`` passes over the group's
frames, divided by the number of calls: the machine is shared, and the minimum is the
figure preemption cannot inflate. Both paths run in the same process on fresh sessions.

    .venv/bin/python bench/onepass.py [--repeats N] [--loops N] [--json]
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

import msgspec

from arbwire.record.importers import Kind, read_cryptofeed
from arbwire.venues.base import VenueSession
from arbwire.venues.bybit import BybitSession
from arbwire.venues.gateio import GateioSession

REAL = Path(__file__).resolve().parents[2] / "shared/data/real"
BYBIT_BOOK = REAL / "fixtures/bybit/gct_spot_orderbook50_snapshot_delta.jsonl"
GATE_OBU = REAL / "fixtures/gate/gct_spot_obu50_result_full_then_increment.jsonl"
GATE_CAPTURE = REAL / "cryptofeed/GATEIO.ws.1.0"
GATE_PAIRS = [
    "INK-USDT", "HAI-ETH", "BTC-USDC", "NANO-USDT", "QTUM3S-USDT",
    "DIS-USDT", "NEO-BTC", "FAST-USDT", "ZKS-ETH", "OMG-USDT",
]  # fmt: skip

BYBIT_DOC_TRADE = (
    b'{"topic":"publicTrade.BTCUSDT","type":"snapshot","ts":1672304486868,"data":[{"T":1672304486865,'
    b'"s":"BTCUSDT","S":"Buy","v":"0.001","p":"16578.50","L":"PlusTick",'
    b'"i":"20f43950-d8dd-5b31-9112-a178eb6023af","BT":false,"seq":1783284617}]}'
)
BYBIT_DOC_TICKER = (
    b'{"topic":"tickers.BTCUSDT","ts":1673853746003,"type":"snapshot","cs":2588407389,"data":{"symbol":"BTCUSDT",'
    b'"lastPrice":"21109.77","highPrice24h":"21426.99","lowPrice24h":"20575","prevPrice24h":"20704.93",'
    b'"volume24h":"6780.866843","turnover24h":"141946527.22907118","price24hPcnt":"0.0196",'
    b'"usdIndexPrice":"21120.2400136"}}'
)
GATE_DOC_BOOK_TICKER = (
    b'{"time":1606293275,"time_ms":1606293275723,"channel":"spot.book_ticker","event":"update","result":'
    b'{"t":1606293275123,"u":48733182,"s":"BTC_USDT","b":"19177.79","B":"0.0003341504","a":"19179.38","A":"0.09"}}'
)


class Group(msgspec.Struct):
    venue: str
    name: str
    frames: list[bytes]
    make: Callable[[], VenueSession]


def groups() -> list[Group]:
    snapshot, delta = BYBIT_BOOK.read_bytes().splitlines()
    out = [
        Group("bybit", "orderbook.50 snapshot", [snapshot], lambda: BybitSession(["BTC-USDT"])),
        Group("bybit", "orderbook.50 delta", [delta], lambda: BybitSession(["BTC-USDT"])),
        Group("bybit", "publicTrade (doc)", [BYBIT_DOC_TRADE], lambda: BybitSession(["BTC-USDT"])),
        Group("bybit", "tickers spot (doc)", [BYBIT_DOC_TICKER], lambda: BybitSession(["BTC-USDT"])),
    ]
    by_kind: dict[str, list[bytes]] = {}
    for r in read_cryptofeed(GATE_CAPTURE):
        if r.kind is Kind.RECV:
            d = msgspec.json.decode(r.payload)
            by_kind.setdefault(f"{d.get('channel')} {d.get('event')}", []).append(r.payload)
    for name, frames in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
        out.append(Group("gateio", name, frames, lambda: GateioSession(GATE_PAIRS, book_channel="order_book_update")))
    obu = [
        msgspec.json.encode({"channel": "spot.obu", "result": msgspec.json.decode(line), "time_ms": 1, "event": "update"})
        for line in GATE_OBU.read_bytes().splitlines()
    ]
    out += [
        Group("gateio", "spot.obu full", obu[:1], lambda: GateioSession(["BTC-USDT"])),
        Group("gateio", "spot.obu increment", obu[1:], lambda: GateioSession(["BTC-USDT"])),
        Group("gateio", "spot.book_ticker (doc)", [GATE_DOC_BOOK_TICKER], lambda: GateioSession(["BTC-USDT"])),
    ]
    return out


def per_call_ns(fn: Callable[[bytes, int], Any], frames: list[bytes], loops: int, repeats: int) -> float:
    clock = time.perf_counter_ns
    best = math.inf
    for _ in range(repeats):
        t0 = clock()
        for _ in range(loops):
            for frame in frames:
                fn(frame, 1)
        best = min(best, clock() - t0)
    return best / (loops * len(frames))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--loops", type=int, default=0, help="passes per repeat (default: about 200 calls)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    rows = []
    gc.disable()
    try:
        for g in groups():
            loops = args.loops or max(1, 200 // len(g.frames))
            row: dict[str, Any] = {"venue": g.venue, "frames": g.name, "n": len(g.frames)}
            row["on_frame_ns"] = per_call_ns(g.make().on_frame, g.frames, loops, args.repeats)
            reference = getattr(g.make(), "_two_step", None)
            if reference is not None:
                row["two_step_ns"] = per_call_ns(reference, g.frames, loops, args.repeats)
            rows.append(row)
    finally:
        gc.enable()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'venue':7} {'frames':32} {'n':>4} {'on_frame ns':>12} {'two-step ns':>12} {'saving':>7}")
    for r in rows:
        ref = r.get("two_step_ns")
        saving = f"{1 - r['on_frame_ns'] / ref:7.0%}" if ref else ""
        ref_text = f"{ref:12.0f}" if ref else ""
        print(f"{r['venue']:7} {r['frames']:32} {r['n']:4} {r['on_frame_ns']:12.0f} {ref_text:>12} {saving}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
