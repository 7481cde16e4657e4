"""An engine run in front of a trader: the live board, alerts, Ctrl-C, and the summary at the end.

``arbwire run`` (the venues) and ``arbwire demo`` (the simulators) both end here, so
what a trader sees does not depend on where the frames come from. On a terminal the
board (per-venue figures, books, latency, opportunities, paper trades, alerts) redraws
four times a second, drawn by a child process (``arbwire.board``), and log lines print
above it; piped to a file, each opportunity event and each paper trade is one line on
stdout instead. ``--json`` keeps stdout for the summary alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import msgspec
from rich.console import Console

from arbwire.arb.paper import Fill
from arbwire.board import BoardLogHandler, BoardProcess
from arbwire.console import fills_table, opportunity_table, paper_line, venue_table
from arbwire.engine import Engine
from arbwire.model import Opportunity
from arbwire.monitor import Monitor
from arbwire.monitor.panel import alerts_panel

PIPED_WIDTH = 220  # no terminal to fit: print whole tables
log = logging.getLogger("arbwire.watch")


def make_console(as_json: bool) -> Console:
    """The console the board and the summary go to: stderr when stdout carries JSON."""
    console = Console(stderr=as_json)
    if not console.is_terminal:
        console.width = PIPED_WIDTH
    return console


def opportunity_line(event: Opportunity) -> str:
    return (
        f"{event.event.value:8} {event.symbol} buy {event.buy_venue}@{event.buy_price} "
        f"sell {event.sell_venue}@{event.sell_price} size {event.size} "
        f"net {event.net_bps:.1f}bps profit {event.profit}"
    )


def fill_line(fill: Fill) -> str:
    return (
        f"paper    {fill.status} {fill.symbol} buy {fill.buy_venue}@{fill.buy_price} "
        f"sell {fill.sell_venue}@{fill.sell_price} size {fill.size} of {fill.wanted} "
        f"pnl {fill.pnl} expected {fill.expected} after {fill.latency_ns / 1e6:.1f} ms"
        + (f" ({fill.reason})" if fill.reason else "")
    )


def _print_opportunity(event: Any) -> None:
    if isinstance(event, Opportunity):
        print(opportunity_line(event), flush=True)


def _print_fill(fill: Fill) -> None:
    print(fill_line(fill), flush=True)


@contextlib.contextmanager
def _logs_to(handler: logging.Handler) -> Iterator[None]:
    """Root log output through ``handler`` for a while (the board's, above the board)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers[:] = [handler]
    try:
        yield
    finally:
        root.handlers[:] = saved


async def watch(
    engine: Engine,
    duration_s: float | None,
    *,
    as_json: bool = False,
    console: Console | None = None,
    metrics_port: int | None = None,
    opportunity_lines: bool = False,
) -> dict[str, Any]:
    """Run ``engine`` with its monitor until ``duration_s`` passes, SIGINT/SIGTERM, or the
    engine fails (its exception is raised), then print and return the summary.

    ``opportunity_lines``: print each opportunity event and each paper trade as a line on
    stdout when there is no board to show them (not a terminal, not ``as_json``).
    """
    if console is None:
        console = make_console(as_json)
    show_board = not as_json and console.is_terminal
    if opportunity_lines and not show_board and not as_json:
        engine.listeners.append(_print_opportunity)
        if engine.paper is not None and engine.paper.on_fill is None:
            engine.paper.on_fill = _print_fill
    monitor = Monitor(engine, metrics_port=metrics_port)  # alerts and actions; /metrics if a port is given
    started = time.monotonic()
    task = asyncio.create_task(engine.run())
    stop = asyncio.Event()  # Ctrl-C ends the run and still prints the summary
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await monitor.start()
        if monitor.metrics_url:
            console.print(f"metrics: {monitor.metrics_url}")
        end = None if duration_s is None else started + duration_s
        screen = BoardProcess() if show_board else None
        with contextlib.ExitStack() as shown:
            if screen is not None:
                screen.start()
                shown.callback(screen.stop)
                shown.enter_context(_logs_to(BoardLogHandler(screen)))
            while (end is None or time.monotonic() < end) and not stop.is_set() and not task.done():
                if screen is not None and not screen.alive:
                    log.warning("the live board's process ended; carrying on without the board")
                    screen = None
                if screen is not None:
                    paper = engine.paper
                    screen.show(
                        engine.snapshot(), list(engine.opportunities)[-12:], time.monotonic() - started,
                        list(paper.fills)[-6:] if paper is not None else None, alerts_panel(monitor),
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.25)
        if task.done() and not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
        summary = engine.snapshot()  # as the run ends, before the links are shut
        summary["monitor"] = monitor.summary()
    finally:
        await monitor.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    summary["duration_s"] = round(time.monotonic() - started, 2)
    summary["opportunity_events"] = [msgspec.structs.asdict(o) for o in list(engine.opportunities)[-50:]]
    if as_json:
        sys.stdout.write(json.dumps(summary, default=str, indent=2) + "\n")
    else:
        console.print(venue_table(summary, title=f"summary after {summary['duration_s']}s"))
        console.print(opportunity_table(list(engine.opportunities)[-20:], title="last opportunity events"))
        if engine.paper is not None and engine.paper.fills:
            console.print(fills_table(list(engine.paper.fills)[-20:], title="last paper trades"))
        console.print(paper_line(summary.get("paper")))
    return summary
