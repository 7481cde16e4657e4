"""The live board, drawn by a child process so drawing it never touches the hot path.

rich takes ~20 ms to lay out the board (three tables, ~40 rows). Drawn from a thread of
the engine's process, that is 20 ms of GIL four times a second taken from the event
loop: every frame arriving meanwhile waits, and the venue -> receive latency the board
shows would include the board's own drawing. So the engine only sends the board's data
(the snapshot dict, the latest opportunities and paper trades, the alerts text: ~4 KB,
~0.05 ms to pickle) through a bounded queue, and a child process on the other core
builds and draws it. Log lines go the same way, to print above the board.

A full queue (the child fell behind) drops the update rather than block the loop; the
next one carries the whole state anyway.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import queue
import signal
import sys
from typing import Any

from rich.console import Console, Group
from rich.live import Live

from arbwire.console import board

_STOP = ("stop",)


def _draw(updates: Any, path: str | None = None) -> None:
    """The child: draw every board update, print every log line above the board (on the
    terminal, or into ``path`` as a terminal 200 columns wide)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops us
    if path is None:
        console = Console()
    else:
        console = Console(file=open(path, "w"), force_terminal=True, width=200)  # noqa: SIM115 - lives as long as the child
    with Live(console=console, refresh_per_second=4, transient=False) as live:
        while True:
            message = updates.get()
            kind = message[0]
            if kind == "stop":
                return
            if kind == "log":
                console.print(message[1], markup=False, highlight=False)
            elif kind == "board":
                snapshot, opps, elapsed_s, fills, alerts = message[1:]
                live.update(Group(board(snapshot, opps, elapsed_s, fills), alerts))


class BoardProcess:
    """The board's child process and the queue to it."""

    def __init__(self, max_pending: int = 64, path: str | None = None) -> None:
        ctx = multiprocessing.get_context("spawn")  # no fork of a process running uvloop and threads
        self._updates = ctx.Queue(max_pending)
        self._process = ctx.Process(target=_draw, args=(self._updates, path), name="arbwire-board", daemon=True)
        self.dropped = 0

    def start(self) -> None:
        self._process.start()

    @property
    def alive(self) -> bool:
        """False once the child is gone (its terminal closed, or it failed)."""
        return self._process.is_alive()

    def _put(self, message: tuple[Any, ...]) -> None:
        try:
            self._updates.put_nowait(message)
        except queue.Full:
            self.dropped += 1

    def show(self, snapshot: dict[str, Any], opps: list[Any], elapsed_s: float, fills: list[Any] | None,
             alerts: Any) -> None:
        self._put(("board", snapshot, opps, elapsed_s, fills, alerts))

    def log(self, line: str) -> None:
        self._put(("log", line))

    def stop(self, timeout_s: float = 5.0) -> None:
        """Let the child draw what it has, then end it (the board stays on the terminal)."""
        if not self._process.is_alive():
            return
        with contextlib.suppress(queue.Full):
            self._updates.put(_STOP, timeout=timeout_s)
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout_s)
        self._updates.close()


class BoardLogHandler(logging.Handler):
    """Log records as lines above the board, through its process."""

    def __init__(self, board_process: BoardProcess) -> None:
        super().__init__()
        self.board = board_process
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
            if self.board.alive:
                self.board.log(line)
            else:  # no board to print above: the line still goes out
                sys.stderr.write(line + "\n")
        except Exception:  # noqa: BLE001 - logging must never raise into the engine
            self.handleError(record)
