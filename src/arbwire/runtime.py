"""How the engine's process waits for frames and collects garbage.

Both are process-wide settings with a latency cost that no code on the hot path can
win back, so the engine owns them for the time it runs and gives them back on stop.

**Garbage collection.** A full collection walks every tracked object: ~40-60k after
start-up and connecting, 13-24 ms on the reference VM, paid by whichever frame is being
decoded when the collector triggers. The hot path frees its objects by reference
counting, so a short run may see none; what brings them on is anything that keeps
container objects (the opportunity log, reconnects, a strategy keeping a tuple per
frame: a client doing that at 10k msg/s hit one mid-stream, 17 ms, 185 frames queued
behind it). What a full collection walks is mostly start-up and connection state
that lives as long as the engine.
So the engine collects once before it connects and freezes what is left
(``gc.freeze``: never scanned again), and freezes again once every book has synced,
when the links' own long-lived objects exist. Cycles made after that are still
collected, and collections only scan what came after.

**Busy polling** (off by default). An idle loop blocks in ``epoll_wait``; on a VM the
wake-up when a frame arrives costs tens of µs before any code of ours runs (measured at
10k msg/s on loopback TLS: median send -> detector 69 µs blocking, 25 µs polling). With
``busy_poll`` the loop never blocks: a callback re-schedules itself, so the loop polls
the sockets without a timeout. It costs one core at 100%, as kernel busy polling would.
"""

from __future__ import annotations

import asyncio
import gc
import logging

log = logging.getLogger("arbwire.runtime")


class GcFreeze:
    """Collect and freeze at start, freeze again once settled, unfreeze at stop."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.frozen = 0  # objects this engine moved to the permanent generation
        self.settled = False

    def start(self) -> None:
        if not self.enabled:
            return
        gc.collect()
        before = gc.get_freeze_count()
        gc.freeze()
        self.frozen += gc.get_freeze_count() - before

    def settle(self) -> None:
        """Every book synced once: the connections' long-lived objects exist now. Freezing
        is a list splice, no scan, so it may run between frames."""
        if not self.enabled or self.settled:
            return
        self.settled = True
        before = gc.get_freeze_count()
        gc.freeze()
        self.frozen += gc.get_freeze_count() - before
        log.info("gc: %d objects frozen (start-up and connections); collections scan only newer ones",
                 self.frozen)

    def stop(self) -> None:
        """Give the objects back to the collector (another engine in the same process, or a
        test run, must not keep this one's garbage forever)."""
        if self.enabled and self.frozen:
            gc.unfreeze()
            self.frozen = 0
            self.settled = False


class BusyPoll:
    """Keep the event loop polling: one callback that re-schedules itself."""

    def __init__(self) -> None:
        self.spins = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.Handle | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._handle = self._loop.call_soon(self._spin)

    def _spin(self) -> None:
        self.spins += 1
        assert self._loop is not None
        self._handle = self._loop.call_soon(self._spin)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
