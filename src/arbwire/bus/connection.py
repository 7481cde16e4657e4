"""The NATS end that ``BusPublisher`` and ``BusDetector`` share.

Both connect the same way: once, after which nats-py reconnects forever, every
``reconnect_wait_s`` (subscriptions come back with it). Both count connects and
disconnects (stats, tests) and rate-limit the log of NATS errors, which repeat for
as long as a server is down. Only what a drop or a return means differs (the
publisher republishes its snapshots, the detector unsyncs its books and asks for
snapshots), so subclasses override ``_disconnected`` and ``_reconnected``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Any

from nats.aio.client import Client

log = logging.getLogger("arbwire.bus")

DEFAULT_URL = "nats://127.0.0.1:4222"


class RateLog:
    """At most one log line per key every ``every_s`` seconds, with the count skipped."""

    def __init__(self, logger: logging.Logger, every_s: float = 5.0) -> None:
        self._log = logger
        self._every = every_s
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def __call__(self, level: int, key: str, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e9) < self._every:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return
        self._last[key] = now
        skipped = self._skipped.pop(key, 0)
        if skipped:
            msg += f" (+{skipped} like it)"
        self._log.log(level, msg, *args)


def servers_of(url: str | Sequence[str]) -> list[str]:
    """``"nats://a:4222,nats://b:4222"`` or a list -> the server list for nats-py."""
    if isinstance(url, str):
        return [u.strip() for u in url.split(",") if u.strip()]
    return list(url)


class BusPeer:
    """A NATS client that stays connected (see the module doc); ``nc`` once connected."""

    def __init__(self, url: str | Sequence[str], *, name: str, reconnect_wait_s: float) -> None:
        self.servers = servers_of(url)
        self.client_name = name
        self.reconnect_wait_s = reconnect_wait_s
        self.nc: Client | None = None
        self.connects = 0
        self.disconnects = 0
        self._closing = False  # set by the owner's close: the drop that follows is not news
        self._ratelog = RateLog(log)

    async def _connect(self) -> Client:
        nc = Client()
        await nc.connect(
            self.servers,
            name=self.client_name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=self.reconnect_wait_s,  # type: ignore[arg-type]
            connect_timeout=2,
            error_cb=self._on_error,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
        )
        self.nc = nc
        self.connects += 1
        return nc

    @property
    def connected(self) -> bool:
        nc = self.nc
        return bool(nc is not None and nc.is_connected)

    @property
    def server_name(self) -> str:
        """``host:port`` of the server connected to (``?`` when none)."""
        nc = self.nc
        return nc.connected_url.netloc if nc is not None and nc.connected_url else "?"

    async def _close_nats(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):  # never connected, or already closed
                await self.nc.close()

    async def _on_error(self, exc: Exception) -> None:
        self._ratelog(logging.WARNING, "nats", "bus: NATS %s: %r", self.servers, exc)

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        self.disconnects += 1
        self._disconnected()

    async def _on_reconnected(self) -> None:
        self.connects += 1
        self._reconnected()

    def _disconnected(self) -> None:
        """The connection dropped (not by closing); nats-py is reconnecting."""

    def _reconnected(self) -> None:
        """Connected again, subscriptions included; what was sent meanwhile is lost."""
