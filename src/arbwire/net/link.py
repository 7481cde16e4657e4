"""One venue WebSocket link: connect, subscribe, carry out actions, detect death, reconnect.

The frame callback is the hot path: it stamps ``recv_ns`` once, hands the bytes
to the sans-I/O ``VenueFeed`` (session -> book sync -> detector, all inline) and
carries out the few actions that come back. Nothing on it awaits.

Everything slow lives beside it: REST snapshots run as tasks, a once-a-second
timer drives venue heartbeats, dead-link detection and latency folding, and the
supervisor loop reconnects with exponential backoff and full jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

from arbwire.feed import VenueFeed
from arbwire.latency import VenueLatency
from arbwire.net.rest import RestClient, RestError
from arbwire.net.sockopts import TcpOptions, apply_tcp_options
from arbwire.venues.base import Action, FetchSnapshot, Reconnect, Send

log = logging.getLogger("arbwire.net")

Tap = Callable[[str, bytes, int, str], None]
"""Sees raw traffic for recording: (kind, payload, time ns, url) with kind one of
"open", "recv", "sent", "http" (a REST response body; url is the GET's URL)."""


@dataclass(frozen=True, slots=True)
class LinkOptions:
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    healthy_after_s: float = 30.0  # a link that lived this long resets the backoff
    dead_after_s: float = 15.0  # no frame for this long: the link is dead, not quiet
    rtt_ping_s: float = 5.0  # WebSocket ping frames for round-trip time (RFC 6455 pongs)
    timer_s: float = 0.5
    handshake_timeout_s: float = 10.0
    snapshot_retry_s: float = 1.0
    tcp: TcpOptions = field(default_factory=TcpOptions)


@dataclass(slots=True)
class LinkStats:
    connects: int = 0
    reconnects: int = 0
    frames: int = 0
    last_error: str = ""
    connected: bool = False
    connected_since_ns: int = 0
    snapshot_requests: int = 0
    snapshot_failures: int = 0


class _Listener(WSListener):
    """picows callbacks; thin on purpose: all logic sits in ``Link``."""

    def __init__(self, link: Link) -> None:
        self.link = link

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.link._connected(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        recv_ns = time.time_ns()
        msg_type = frame.msg_type
        if msg_type is WSMsgType.TEXT or msg_type is WSMsgType.BINARY:
            self.link.on_frame(frame.get_payload_as_bytes(), recv_ns)
        elif msg_type is WSMsgType.PONG:
            self.link._pong(frame.get_payload_as_bytes())
        elif msg_type is WSMsgType.CLOSE:
            self.link.stats.last_error = f"closed by venue: {frame.get_close_code()} {frame.get_close_message()!r}"
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.link._disconnected()


class Link:
    """Keeps one venue's feed connected for as long as the engine runs."""

    def __init__(
        self,
        feed: VenueFeed,
        rest: RestClient,
        latency: VenueLatency,
        options: LinkOptions | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
        on_status: Callable[[str, str], None] | None = None,
    ) -> None:
        self.feed = feed
        self.session = feed.session
        self.venue = feed.venue
        self.rest = rest
        self.latency = latency
        self.options = options or LinkOptions()
        self.ssl_context = ssl_context
        self.on_status = on_status
        self.tap: Tap | None = None
        self.stats = LinkStats()
        self.transport: WSTransport | None = None
        self._rng = random.Random()
        self._attempt = 0
        self._stopping = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._ping_sent_ns = 0
        self._last_ping_ns = 0
        self._processing = latency.processing.add
        self._perf = time.perf_counter_ns

    # -- hot path ----------------------------------------------------------------
    def on_frame(self, payload: bytes, recv_ns: int) -> None:
        t0 = self._perf()
        self.stats.frames += 1
        if self.tap is not None:
            self.tap("recv", payload, recv_ns, "")
        actions = self.feed.on_frame(payload, recv_ns)
        if actions:
            self.execute(actions)
        self._processing(self._perf() - t0)

    def execute(self, actions: list[Action]) -> None:
        for action in actions:
            if type(action) is Send:
                if self.transport is not None:
                    data = action.text.encode()
                    self.transport.send(WSMsgType.TEXT, data)
                    if self.tap is not None:
                        self.tap("sent", data, time.time_ns(), "")
            elif type(action) is FetchSnapshot:
                self._spawn(self._fetch_snapshot(action))
            elif type(action) is Reconnect:
                self.reconnect(action.reason)

    # -- link events ---------------------------------------------------------------
    def _connected(self, transport: WSTransport) -> None:
        self.transport = transport
        sock = transport.underlying_transport.get_extra_info("socket")
        if sock is not None:
            apply_tcp_options(sock, self.options.tcp)
        now = time.time_ns()
        self.stats.connects += 1
        self.stats.connected = True
        self.stats.connected_since_ns = now
        self.feed.last_recv_ns = now
        self._ping_sent_ns = 0
        if self.tap is not None:
            self.tap("open", b"", now, self.session.url())
        self._status("connected", self.session.url()[:120])
        self.execute(list(self.session.on_open(now)))

    def _disconnected(self) -> None:
        self.transport = None
        self.stats.connected = False
        self.feed.link_lost("link lost", time.time_ns())

    def _pong(self, payload: bytes) -> None:
        if len(payload) == 8 and self._ping_sent_ns:
            (sent,) = struct.unpack("<q", payload)
            if sent == self._ping_sent_ns:
                self.latency.rtt.add((time.perf_counter_ns() - sent) // 1000)
                self._ping_sent_ns = 0

    def reconnect(self, reason: str) -> None:
        """Drop the link now; the supervisor opens a new one."""
        self.stats.last_error = reason
        self._status("reconnect", reason)
        if self.transport is not None:
            self.transport.disconnect(graceful=False)

    def _status(self, what: str, detail: str) -> None:
        log.info("venue=%s %s: %s", self.venue, what, detail)
        if self.on_status is not None:
            self.on_status(what, detail)

    # -- supervisor ----------------------------------------------------------------
    def backoff_s(self) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        o = self.options
        ceiling = min(o.backoff_cap_s, o.backoff_base_s * (2**self._attempt))
        self._attempt = min(self._attempt + 1, 30)
        return self._rng.uniform(0, ceiling)

    async def run(self) -> None:
        timer = asyncio.get_running_loop().create_task(self._timer())
        try:
            while not self._stopping:
                url = self.session.url()
                try:
                    transport, _ = await ws_connect(
                        lambda: _Listener(self),
                        url,
                        ssl_context=self.ssl_context,
                        websocket_handshake_timeout=self.options.handshake_timeout_s,
                        enable_auto_pong=True,
                        max_frame_size=64 * 1024 * 1024,
                    )
                except Exception as exc:  # every failure to connect is retried, and logged once
                    self.stats.last_error = f"{type(exc).__name__}: {exc}"
                    self._status("connect failed", f"{url[:120]}: {self.stats.last_error}")
                else:
                    await transport.wait_disconnected()
                    lived = (time.time_ns() - self.stats.connected_since_ns) / 1e9
                    if lived >= self.options.healthy_after_s:
                        self._attempt = 0
                    self._status("disconnected", f"after {lived:.1f}s: {self.stats.last_error or 'closed'}")
                if self._stopping:
                    break
                self.stats.reconnects += 1
                await asyncio.sleep(self.backoff_s())
        finally:
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer

    async def stop(self) -> None:
        self._stopping = True
        if self.transport is not None:
            self.transport.disconnect()
        for task in list(self._tasks):
            task.cancel()

    # -- beside the hot path ---------------------------------------------------------
    async def _timer(self) -> None:
        o = self.options
        while True:
            await asyncio.sleep(o.timer_s)
            self.latency.fold()
            transport = self.transport
            if transport is None:
                continue
            now = time.time_ns()
            last = self.feed.last_recv_ns
            if now - last > o.dead_after_s * 1e9:
                self.reconnect(f"no frame for {(now - last) / 1e9:.1f}s (dead link)")
                continue
            for item in self.session.on_timer(now, last):
                if isinstance(item, (Send, FetchSnapshot, Reconnect)):
                    self.execute([item])
                else:
                    self.feed.on_event(item)
            if o.rtt_ping_s and now - self._last_ping_ns >= o.rtt_ping_s * 1e9:
                self._last_ping_ns = now
                self._ping_sent_ns = time.perf_counter_ns()
                transport.send_ping(struct.pack("<q", self._ping_sent_ns))

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch_snapshot(self, action: FetchSnapshot) -> None:
        self.stats.snapshot_requests += 1
        sync = self.feed.sync_for(action.symbol)
        try:
            body, recv_ns = await self.rest.get(self.venue, action.url)
            if self.tap is not None:
                self.tap("http", body, recv_ns, action.url)
            actions = self.feed.on_snapshot(action.symbol, body, recv_ns)
        except (RestError, ValueError) as exc:
            self.stats.snapshot_failures += 1
            self._status("snapshot failed", f"{action.symbol}: {exc}")
            await asyncio.sleep(self.options.snapshot_retry_s)
            sync.snapshot_failed()
            return
        if actions:
            self.execute(actions)
