"""What every venue adapter is: a sans-I/O session fed frames, returning events and actions.

A session never touches a socket. The network layer hands it each frame's bytes
with the receive time and carries out the actions it returns (send this text,
fetch this snapshot, reconnect). Every protocol edge case is therefore testable
by feeding bytes, with no event loop (the ``websockets``/``h11`` pattern).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from arbwire.model import BadFrame, BookUpdate, Event, VenueError
from arbwire.sync import SequenceRule

log = logging.getLogger("arbwire.venues")


class Send(msgspec.Struct, frozen=True):
    """Send a text frame on the session's link."""

    text: str


class FetchSnapshot(msgspec.Struct, frozen=True):
    """GET ``url`` and hand the body to ``session.parse_snapshot(symbol, ...)``."""

    symbol: str
    url: str


class Reconnect(msgspec.Struct, frozen=True):
    """Drop the link and open it again (planned disconnect, venue request)."""

    reason: str


Action = Send | FetchSnapshot | Reconnect
Output = Event | Action


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where a venue lives; tests and the demo point these at loopback simulators."""

    ws_url: str
    rest_url: str


@dataclass(slots=True)
class FrameStats:
    """Per-session counters the monitor exports."""

    frames: int = 0
    bad_frames: int = 0
    venue_errors: int = 0
    unknown: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)


class FrameErrorLog:
    """Logs bad frames with their venue, at most once per ``interval_s`` per reason."""

    __slots__ = ("venue", "interval_ns", "_last")

    def __init__(self, venue: str, interval_s: float = 5.0) -> None:
        self.venue = venue
        self.interval_ns = int(interval_s * 1e9)
        self._last: dict[str, int] = {}

    def __call__(self, reason: str, excerpt: str, count: int) -> None:
        now = time.monotonic_ns()
        key = reason[:60]
        if now - self._last.get(key, 0) >= self.interval_ns:
            self._last[key] = now
            log.warning("venue=%s bad frame (%d so far): %s | %s", self.venue, count, reason, excerpt)


class VenueSession:
    """Base of every venue adapter. Subclasses fill in the protocol; this holds the bookkeeping.

    ``symbols`` are in arbwire's form (``BTC-USDT``); the adapter maps them to the
    venue's own names both ways.
    """

    name: str = ""

    def __init__(self, symbols: Sequence[str], endpoints: Endpoints) -> None:
        self.symbols = list(symbols)
        self.endpoints = endpoints
        self.stats = FrameStats()
        self._log_bad = FrameErrorLog(self.name)

    # -- link life cycle -------------------------------------------------------
    def url(self) -> str:
        """The WebSocket URL to open."""
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        """Extra HTTP headers for the WebSocket upgrade (an API key where a venue wants one).
        Raises ValueError when a credential it needs is missing."""
        return {}

    def on_open(self, now_ns: int) -> list[Action]:
        """Messages to send once the link is up (subscriptions)."""
        return []

    #: this session's link carries books (a companion link carries only trades/quotes)
    carries_books = True

    def companions(self) -> list[VenueSession]:
        """Sessions for the venue's other connections, when one connection can't carry all
        of what was asked (HTX: incremental books on ``/feed``, trades and BBO on ``/ws``).
        The link opens one connection per companion beside its own, for the same symbols."""
        return []

    def on_frame(self, payload: bytes, recv_ns: int) -> list[Output]:
        """Decode one frame into events and actions. Never raises on bad input."""
        raise NotImplementedError

    def on_timer(self, now_ns: int, last_recv_ns: int) -> list[Output]:
        """Called about twice a second: venue heartbeats (e.g. OKX's text ping), overdue pongs,
        symbols that never sent data. Returns actions to carry out and events to report."""
        return []

    # -- books -----------------------------------------------------------------
    def sequence_rule(self, symbol: str) -> SequenceRule:
        raise NotImplementedError

    def snapshot_request(self, symbol: str) -> list[Action]:
        """What to do when ``symbol``'s book needs a fresh snapshot."""
        raise NotImplementedError

    def parse_snapshot(self, symbol: str, body: bytes, recv_ns: int) -> BookUpdate:
        """Turn a REST snapshot body into a snapshot BookUpdate (raises ValueError if bad)."""
        raise NotImplementedError(f"{self.name} has no REST snapshot")

    # -- venue clock -------------------------------------------------------------
    def time_url(self) -> str | None:
        """The venue's REST server-time endpoint (arbwire.clock measures its offset from
        ours with it), or None when it has none."""
        return None

    def parse_server_time(self, body: bytes) -> tuple[int, int]:
        """(venue time in ns, its resolution in ns) from the ``time_url`` answer; ValueError if bad."""
        raise NotImplementedError(f"{self.name} has no server time")

    # -- shared helpers for subclasses -------------------------------------------
    def bad_frame(self, reason: str, payload: bytes | str, recv_ns: int) -> BadFrame:
        stats = self.stats
        stats.bad_frames += 1
        key = reason.split(":", 1)[0][:60]
        stats.by_reason[key] = stats.by_reason.get(key, 0) + 1
        raw = payload if isinstance(payload, str) else payload[:200].decode("utf-8", "replace")
        excerpt = raw[:200]
        self._log_bad(reason, excerpt, stats.bad_frames)
        return BadFrame(self.name, reason, excerpt, recv_ns)

    def venue_error(self, symbol: str, code: str, message: str, recv_ns: int) -> VenueError:
        self.stats.venue_errors += 1
        log.error("venue=%s symbol=%s rejected: code=%s %s", self.name, symbol or "?", code, message)
        return VenueError(self.name, symbol, code, message, recv_ns)


MS_NS = 1_000_000


def server_time(venue: str, body: bytes, type_: type, pick) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """Decode a server-time answer into ``type_`` and ``pick`` its milliseconds: (ns, 1 ms).
    Errors name the venue and quote the body."""
    try:
        ms = int(pick(msgspec.json.decode(body, type=type_)))
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"{venue} server time: {exc}: {body[:200]!r}") from exc
    if ms <= 0:
        raise ValueError(f"{venue} server time: {ms} is not a time: {body[:200]!r}")
    return ms * MS_NS, MS_NS
