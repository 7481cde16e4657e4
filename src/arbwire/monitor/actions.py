"""What a trader would do by hand, done through the engine's public surface.

- ``reconnect``: drop the venue's link now; its supervisor reconnects and every book
  resyncs from a fresh snapshot (``Link.reconnect``).
- ``resync``: invalidate one book and ask for a fresh snapshot (``VenueFeed.resync``),
  the other books of the venue untouched.
- ``switch_endpoint``: move the link to its next endpoint (``Link.urls``) and reconnect.
  ``Link`` has no public method for this yet; until it does, this does exactly what
  the link's own failover does after repeated connect failures (advance each shard's
  endpoint index) and then reconnects.

Each returns ``(done, detail)``. The monitor keeps when it last forced a reconnect of a
venue, so its own reconnects are neither counted as a storm nor repeated too often.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arbwire.engine import Engine

log = logging.getLogger("arbwire.monitor")


class Actions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.forced: dict[str, deque[tuple[int, int]]] = {}  # venue -> (ns, reconnects it causes)
        self.counts: dict[tuple[str, str], int] = {}  # (action, venue) -> times done

    def last_forced_ns(self, venue: str) -> int:
        forced = self.forced.get(venue)
        return forced[-1][0] if forced else 0

    def forced_since(self, venue: str, since_ns: int) -> int:
        """Reconnects the monitor itself caused since ``since_ns`` (not a storm)."""
        return sum(n for t, n in self.forced.get(venue, ()) if t >= since_ns)

    def _note(self, action: str, venue: str) -> None:
        key = (action, venue)
        self.counts[key] = self.counts.get(key, 0) + 1

    def _note_forced(self, venue: str, shards: int) -> None:
        forced = self.forced.setdefault(venue, deque(maxlen=64))
        forced.append((time.time_ns(), shards))

    def reconnect(self, venue: str, reason: str) -> tuple[bool, str]:
        link = self.engine.links.get(venue)
        if link is None:
            return False, f"no link for {venue}"
        if not link.stats.connected:
            return False, "link already down; its supervisor is reconnecting"
        link.reconnect(reason)
        self._note_forced(venue, len(link.shards))
        self._note("reconnect", venue)
        return True, f"dropped {len(link.shards)} connection(s); reconnecting to {link.stats.endpoint}"

    def resync(self, venue: str, symbol: str, reason: str) -> tuple[bool, str]:
        link = self.engine.links.get(venue)
        feed = self.engine.feeds.get(venue)
        if link is None or feed is None or symbol not in feed.syncs:
            return False, f"no book {venue} {symbol}"
        if not link.stats.connected:
            return False, "link down; the books resync when it is back"
        actions = feed.resync(symbol, reason, time.time_ns())
        # a resubscribe or a req must go on the connection that carries the symbol's book
        if not link.execute_for(symbol, actions):
            return False, "the book's connection is down; the book resyncs when it is back"
        self._note("resync", venue)
        kinds = ", ".join(sorted({type(a).__name__ for a in actions})) or "nothing to send now: the session asks at its own pace, or the venue pushes full books"
        return True, f"book invalidated; asked for a fresh snapshot ({kinds})"

    def switch_endpoint(self, venue: str, reason: str) -> tuple[bool, str]:
        link = self.engine.links.get(venue)
        if link is None:
            return False, f"no link for {venue}"
        urls = link.urls
        if len(urls) < 2:
            return False, f"{venue} has no other endpoint (set venues.{venue}.backup_ws_urls)"
        connected = link.stats.connected
        switch = getattr(link, "switch_endpoint", None)
        if callable(switch):  # the public method, once Link has one
            switch(reason)
        else:
            for shard in link.shards:  # what Link._after_failure does on repeated failures
                shard.endpoint_i = (shard.endpoint_i + 1) % len(urls)
                shard.failures = 0
            link.stats.failovers += 1
            if connected:
                link.reconnect(reason)
        if connected:
            self._note_forced(venue, len(link.shards))
        self._note("switch_endpoint", venue)
        target = urls[link.shards[0].endpoint_i % len(urls)]
        return True, f"switching {venue} from {link.stats.endpoint} to {target}"
