"""Bounded hand-off from the hot path to slow consumers (console, files, NATS, metrics).

The hot path only appends to a ``deque(maxlen=N)``: when a consumer falls behind,
the oldest item is dropped and counted, and the link never stalls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("arbwire.sinks")


class BoundedSink(Generic[T]):
    """A drop-oldest queue drained by one async consumer."""

    def __init__(self, name: str, consume: Callable[[T], Awaitable[None] | None], maxlen: int = 10_000) -> None:
        self.name = name
        self._consume = consume
        self._queue: deque[T] = deque(maxlen=maxlen)
        self._wake = asyncio.Event()
        self.dropped = 0
        self.delivered = 0
        self._task: asyncio.Task[None] | None = None

    def put(self, item: T) -> None:
        """Never blocks: a full queue drops its oldest item."""
        queue = self._queue
        if len(queue) == queue.maxlen:
            self.dropped += 1
        queue.append(item)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        queue = self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            while queue:
                item = queue.popleft()
                try:
                    result = self._consume(item)
                    if result is not None:
                        await result
                except Exception:  # a broken consumer must not take the engine down
                    log.exception("sink %s failed on an item", self.name)
                self.delivered += 1

    async def close(self) -> None:
        """Deliver what is queued, then stop."""
        if self._task is None:
            return
        while self._queue:
            self._wake.set()
            await asyncio.sleep(0)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
