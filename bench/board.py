"""What showing the live board costs the event loop: none, drawn in this process, drawn by a
child process (``arbwire.board``, what ``arbwire run``/``demo`` do).

The five venue simulators run in their own process (as in ``arbwire demo``); the real
``Engine`` and ``Monitor`` run here for ``--seconds`` per mode. Each mode is measured the
same way: a probe task sleeps 1 ms in a loop and records how late it wakes (the loop's
lag: what every frame arriving at that moment waits), and the engine's own venue ->
receive p99 is read at the end. "thread" is rich's ``Live`` refreshing 4 times a second
from its own thread, as the board was drawn before; "child" sends the same data to a
``BoardProcess``. Both draw into a file (a 200-column terminal), so nothing shows.
Also timed: one engine snapshot and one layout of the board, the work behind each refresh.

    .venv/bin/python bench/board.py [--seconds S] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live

from arbwire.board import BoardProcess
from arbwire.console import board
from arbwire.demo import DEMO_MARKET, DEMO_SYMBOLS, DEMO_VENUES, SimProcess, demo_config
from arbwire.engine import Engine
from arbwire.monitor import Monitor
from arbwire.monitor.panel import alerts_panel


def _board_data(engine: Engine, monitor: Monitor, started: float) -> tuple[Any, ...]:
    paper = engine.paper
    return (engine.snapshot(), list(engine.opportunities)[-12:], time.monotonic() - started,
            list(paper.fills)[-6:] if paper is not None else None, alerts_panel(monitor))


async def _mode(mode: str, seconds: float, seed: int) -> dict[str, Any]:
    sims = await SimProcess.start(DEMO_VENUES, DEMO_SYMBOLS, seed, DEMO_MARKET)
    cache = tempfile.TemporaryDirectory(prefix="arbwire-bench-")
    engine = Engine(demo_config(sims.endpoints, cache_dir=cache.name))
    monitor = Monitor(engine)
    task = asyncio.create_task(engine.run())
    await monitor.start()
    lags: list[float] = []
    snapshot_ms: list[float] = []
    out = tempfile.NamedTemporaryFile(prefix="arbwire-board-", suffix=".txt", delete=False)  # noqa: SIM115
    out.close()
    live = child = None
    try:
        await asyncio.sleep(2.0)  # connect, sync, settle
        started = time.monotonic()
        if mode == "thread":
            live = Live(console=Console(file=open(out.name, "w"), force_terminal=True, width=200),  # noqa: SIM115
                        refresh_per_second=4)
            live.start()
        elif mode == "child":
            child = BoardProcess(path=out.name)
            child.start()
        next_show = started
        end = started + seconds
        while time.monotonic() < end:
            now = time.monotonic()
            if mode != "none" and now >= next_show:
                t0 = time.perf_counter()
                data = _board_data(engine, monitor, started)
                snapshot_ms.append((time.perf_counter() - t0) * 1e3)
                if live is not None:
                    live.update(Group(board(*data[:4]), data[4]))
                elif child is not None:
                    child.show(*data)
                next_show = now + 0.25
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            lags.append((time.perf_counter() - t - 0.001) * 1e3)
        e2r = [v["latency"]["event_to_recv_us"]["p99"] for v in engine.snapshot()["venues"].values()]
    finally:
        if live is not None:
            live.stop()
        if child is not None:
            child.stop()
        await monitor.stop()
        task.cancel()
        with contextlib.suppress(BaseException):  # cancelled
            await task
        await sims.close()
        cache.cleanup()
        os.unlink(out.name)
    lags.sort()
    return {
        "mode": mode,
        "loop_lag_ms": {"p50": round(lags[len(lags) // 2], 3), "p99": round(lags[int(len(lags) * 0.99)], 3),
                        "max": round(lags[-1], 2)},
        "stalls_over_5ms": sum(1 for v in lags if v > 5),
        "e2r_p99_us_median_venue": statistics.median(e2r),
        "snapshot_ms": round(statistics.median(snapshot_ms), 3) if snapshot_ms else None,
    }


async def _layout_ms(seed: int) -> float:
    """One layout of the board with five venues' data, the median of 20."""
    sims = await SimProcess.start(DEMO_VENUES, DEMO_SYMBOLS, seed, DEMO_MARKET)
    cache = tempfile.TemporaryDirectory(prefix="arbwire-bench-")
    engine = Engine(demo_config(sims.endpoints, cache_dir=cache.name))
    monitor = Monitor(engine)
    task = asyncio.create_task(engine.run())
    try:
        await asyncio.sleep(3.0)
        data = _board_data(engine, monitor, time.monotonic())
        times = []
        for _ in range(20):
            console = Console(file=io.StringIO(), force_terminal=True, width=200)
            t0 = time.perf_counter()
            console.print(Group(board(*data[:4]), data[4]))
            times.append((time.perf_counter() - t0) * 1e3)
        return round(statistics.median(times), 2)
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):  # cancelled
            await task
        await sims.close()
        cache.cleanup()


async def run(seconds: float, seed: int) -> dict[str, Any]:
    modes = [await _mode(m, seconds, seed) for m in ("none", "thread", "child")]
    return {"seconds": seconds, "board_layout_ms": await _layout_ms(seed), "modes": modes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import uvloop

    result = uvloop.run(run(args.seconds, args.seed))
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"five simulated venues, {args.seconds:g} s per mode; one board layout {result['board_layout_ms']} ms")
    print(f"{'board':8} {'lag p50 ms':>10} {'p99 ms':>8} {'max ms':>8} {'>5 ms':>6} {'e→r p99 µs':>11} {'snapshot ms':>12}")
    for m in result["modes"]:
        lag = m["loop_lag_ms"]
        print(f"{m['mode']:8} {lag['p50']:10.3f} {lag['p99']:8.3f} {lag['max']:8.2f} {m['stalls_over_5ms']:6} "
              f"{m['e2r_p99_us_median_venue']:11.0f} {m['snapshot_ms'] if m['snapshot_ms'] is not None else '-':>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
