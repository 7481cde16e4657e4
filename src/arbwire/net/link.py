"""One venue's WebSocket links: connect, subscribe, carry out actions, detect death, reconnect.

The frame callback is the hot path: it stamps ``recv_ns`` once, hands the bytes
to the sans-I/O ``VenueFeed`` (session -> book sync -> detector, all inline) and
carries out the few actions that come back. Nothing on it awaits.

Everything slow lives beside it: REST snapshots run as tasks, a timer drives venue
heartbeats, RTT pings, dead-link and pong-overdue detection, queued sends and
latency folding, and one supervisor per shard reconnects with exponential backoff
and full jitter, rotating to a backup endpoint after repeated failures.

Connections. A ``Link`` keeps one *primary* connection per shard of symbols (one
shard unless the venue caps streams per connection, e.g. Binance's 1024). Each
connection has its own ``VenueSession`` (sessions hold per-connection state: pings,
request ids, subscriptions); all of them feed the one ``VenueFeed`` and its books.

Planned disconnects (Binance ``serverShutdown``, OKX 64008, Gate ``upgrade``, our own
switch before Binance's 24 h cut) are make-before-break: a *candidate* connection is
opened and subscribed while the primary keeps feeding the books. Two links then feed
one book safely because of one rule: only the primary drives a book's state machine;
a candidate's diff reaches a book only when the book is SYNCED and the venue's own
sequence rule says the diff is the next one (APPLY). Diffs the book already has
(STALE) are duplicates and dropped; diffs ahead of it (GAP) are dropped too, since
the primary will deliver the missing ids. A candidate's snapshots, trades and
quotes are dropped. Once the candidate has shown, for every synced book, a diff that
lines up (STALE or APPLY), it is promoted: it becomes the primary, the old one
drains for ``drain_s`` under the same rule and is closed. Trades seen during the
overlap are deduplicated by id for ``dedup_window_s`` after the switch. If the old
link dies first, the candidate is promoted at once; the books never leave SYNCED.

Warm standby (``warm_standby``, off by default). Each shard also keeps a *standby*
connection open and subscribed at all times. It is fed under the same rule as a
candidate (its diffs reach a book only as STALE/APPLY continuations of a SYNCED book;
its trades, quotes and snapshots are dropped) but it is never promoted on its own.
When the primary drops unexpectedly (abrupt close, dead link, pong overdue, a venue
close) the standby is promoted at once: no backoff, no resync, the books stay SYNCED,
and trades are deduplicated by id (the primary's trade ids are remembered for as
long as a standby exists). A new standby is then opened in the background with the
usual backoff; a standby that drops is reopened the same way, never touching the
primary. With the option off nothing of this runs and the hot path is unchanged.

Connections that finish connecting after the roles changed: a standby or candidate
whose primary dropped meanwhile becomes the primary at once (its stream starts after
the loss, so the books resync, but without the supervisor's backoff); a primary that
connects after a standby or candidate took over becomes the standby if the shard has
none, and is otherwise closed before it subscribes, as is a second standby. A shard
never has two primaries driving its books.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import enum
import logging
import random
import ssl
import struct
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from picows import WSFrame, WSListener, WSMsgType, WSTransport

from arbwire.feed import VenueFeed
from arbwire.latency import VenueLatency
from arbwire.model import BadFrame, BookUpdate, Quote, SyncState, Trade, VenueError
from arbwire.net.connect import ConnectError, ConnectTiming, Resolver, open_ws, reapply_tcp_options
from arbwire.net.rest import RestClient, RestError
from arbwire.net.sockopts import TcpOptions
from arbwire.net.tls import ResumingContext, client_context
from arbwire.net.venue_limits import backup_urls, is_planned, limits_for
from arbwire.sync import Verdict
from arbwire.venues.base import Action, FetchSnapshot, Reconnect, Send, VenueSession

log = logging.getLogger("arbwire.net")

Tap = Callable[[str, bytes, int, str], None]
"""Sees raw traffic for recording: (kind, payload, time ns, url) with kind one of
"open", "recv", "sent", "http" (a REST response body; url is the GET's URL).
Only the primary connection of each shard is tapped."""


@dataclass(frozen=True, slots=True)
class LinkOptions:
    backoff_base_s: float = 1.0
    backoff_cap_s: float = 60.0
    healthy_after_s: float = 30.0  # a link that lived this long resets the backoff
    dead_after_s: float = 15.0  # no frame for this long: the link is dead, not quiet
    rtt_ping_s: float = 5.0  # WebSocket ping frames for round-trip time (RFC 6455 pongs)
    pong_timeout_s: float = 10.0  # an RTT ping unanswered this long: the link is dead (0: off)
    timer_s: float = 0.5
    connect_timeout_s: float = 10.0  # DNS and TCP connect, each
    handshake_timeout_s: float = 10.0  # TLS handshake and HTTP upgrade, each
    snapshot_retry_s: float = 1.0
    tcp: TcpOptions = field(default_factory=TcpOptions)
    # TLS: verification is always on with the default context (see net/tls.py)
    tls_session_reuse: bool = False  # measured: docs/benchmarks.md "Connections"
    tls_cafile: str | None = None  # a private CA (tests, TLS-intercepting proxies)
    use_aiofastnet: bool | None = None  # None: picows' default (aiofastnet when installed)
    # endpoints: None = the venue's known backups when on its public endpoint
    backup_ws_urls: tuple[str, ...] | None = None
    failover_after: int = 3  # consecutive failed attempts before the next endpoint
    # venue limits: None = the venue's default from net/venue_limits.py
    max_symbols_per_link: int | None = None
    max_sends_per_s: float | None = None
    max_link_age_s: float | None = None
    # planned disconnects
    make_before_break: bool = True
    switch_timeout_s: float = 10.0  # promote the replacement by then even if a book never lined up
    drain_s: float = 0.5  # the replaced link keeps feeding (deduplicated) this long
    dedup_window_s: float = 5.0
    # a second, subscribed connection per shard, promoted at once when the primary drops
    warm_standby: bool = False
    resolver: Resolver | None = None  # tests: resolve without DNS traffic


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
    attempts: int = 0  # connection attempts, failed or not
    failures: int = 0
    failovers: int = 0  # switches to the next endpoint after repeated failures
    switchovers: int = 0  # make-before-break replacements completed
    switch_failures: int = 0
    tls_resumed: int = 0  # connects that resumed a TLS session
    pongs_overdue: int = 0
    dead_links: int = 0
    sends_queued: int = 0  # sends delayed by the venue's message-rate limit
    standby_failovers: int = 0  # primaries replaced by the warm standby after a drop
    standby_failures: int = 0  # failed attempts to open a warm standby
    endpoint: str = ""
    shards: int = 1
    last_connect: ConnectTiming | None = None
    last_failure: ConnectError | None = None


class Role(enum.IntEnum):
    PRIMARY = 0  # drives the books
    CANDIDATE = 1  # replacement warming up: deduplicated, never drives a book's state
    DRAINING = 2  # replaced, about to close: deduplicated like a candidate
    STANDBY = 3  # warm standby: deduplicated like a candidate, promoted only when the primary drops


_PRIMARY = Role.PRIMARY  # a module constant: enum member lookups are slow on the hot path
_TAKE_OVER = frozenset({Role.CANDIDATE, Role.STANDBY})  # roles that become primary if it is gone
# picows' message types are an IntEnum too: ~80 ns a lookup, once or twice per frame
_TEXT, _BINARY, _PONG, _CLOSE = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.PONG, WSMsgType.CLOSE


class _Conn:
    """One WebSocket connection and its session."""

    __slots__ = (
        "link", "shard", "session", "role", "transport", "url", "opened_ns", "last_recv_ns",
        "frames", "ping_sent", "last_ping_ns", "aligned", "ready", "closed", "sendq",
        "tokens", "tokens_ns", "drain_handle", "ticket_pending", "tls_host", "seq",
    )

    def __init__(self, link: Link, shard: _Shard, session: VenueSession, role: Role, url: str, seq: int) -> None:
        self.link = link
        self.shard = shard
        self.session = session
        self.role = role
        self.url = url
        self.seq = seq
        self.transport: WSTransport | None = None
        self.opened_ns = 0
        self.last_recv_ns = 0
        self.frames = 0
        self.ping_sent = 0  # perf_counter_ns of the outstanding RTT ping, 0 if none
        self.last_ping_ns = 0
        self.aligned: set[str] = set()
        self.ready = asyncio.Event()
        self.closed = False
        self.sendq: deque[bytes] = deque()
        self.tokens = 1.0
        self.tokens_ns = 0
        self.drain_handle: asyncio.TimerHandle | None = None
        self.ticket_pending = False
        self.tls_host = urlsplit(url).hostname or ""

    def __repr__(self) -> str:
        return f"<conn #{self.seq} {self.role.name.lower()} shard {self.shard.index}>"


def _live(conn: _Conn | None) -> bool:
    return conn is not None and conn.transport is not None


class _Shard:
    """The symbols one connection carries, and who carries them now."""

    def __init__(
        self, index: int, symbols: list[str], session: VenueSession, template: VenueSession | None = None
    ) -> None:
        self.index = index
        self.symbols = symbols
        self.session = session  # the primary's session (reused by the next primary)
        # a companion's pristine session: its replacements start from it, not from the venue's
        self.template = template
        self.books = session.carries_books  # False: trades/quotes only, books never depend on it
        self.primary: _Conn | None = None
        self.candidate: _Conn | None = None
        self.draining: set[_Conn] = set()
        self.switch_task: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()
        self.endpoint_i = 0
        self.failures = 0  # consecutive failed attempts on the current endpoint
        self.attempt = 0  # backoff exponent
        self.attempts = 0  # attempts since the last healthy connection (for the log)
        self.lost_reason = ""
        self.switch_retry_ns = 0  # after a failed replacement, don't try again before this
        self.standby: _Conn | None = None  # warm standby (LinkOptions.warm_standby)
        self.standby_wake = asyncio.Event()  # a primary arrived, or the standby went away
        self.standby_attempt = 0  # the standby's own backoff exponent


class _Listener(WSListener):
    """picows callbacks for one connection; thin on purpose: all logic sits in ``Link``."""

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn
        self.frame = conn.link._frame

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.conn.link._connected(self.conn, transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        recv_ns = time.time_ns()
        conn = self.conn
        if conn.ticket_pending:
            conn.link._save_ticket(conn)
        msg_type = frame.msg_type
        if msg_type is _TEXT or msg_type is _BINARY:
            self.frame(conn, frame.get_payload_as_bytes(), recv_ns)
        elif msg_type is _PONG:
            # not "alive": a stalled venue may still answer pings; only data counts
            conn.link._pong(conn, frame.get_payload_as_bytes())
        elif msg_type is _CLOSE:
            conn.link._closed_by_venue(conn, frame.get_close_code(), frame.get_close_message())
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.conn.link._disconnected(self.conn)


def clone_session(template: VenueSession) -> VenueSession:
    """A fresh copy of a pristine session; stateless members that cannot be copied
    (msgspec decoders) are shared."""
    memo: dict[int, Any] = {}
    for value in vars(template).values():
        try:
            copy.deepcopy(value)
        except TypeError:
            memo[id(value)] = value
    return copy.deepcopy(template, memo)


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
        session_factory: Callable[[], VenueSession] | None = None,
    ) -> None:
        self.feed = feed
        self.session = feed.session
        self.venue = feed.venue
        self.rest = rest
        self.latency = latency
        self.options = o = options or LinkOptions()
        self.on_status = on_status
        self.tap: Tap | None = None
        self.stats = LinkStats()
        limits = limits_for(self.venue)
        self.max_sends_per_s = o.max_sends_per_s if o.max_sends_per_s is not None else limits.max_sends_per_s
        self.max_link_age_s = o.max_link_age_s if o.max_link_age_s is not None else limits.max_link_age_s
        base = feed.session.endpoints.ws_url
        # the configured endpoint first, then the backups (given, or the venue's known ones)
        self.urls: tuple[str, ...] = (
            (base, *(u for u in o.backup_ws_urls if u != base))
            if o.backup_ws_urls
            else backup_urls(self.venue, base)
        )
        self._ssl_context = ssl_context
        self._template = clone_session(feed.session)  # pristine: replacements start from it
        self._session_factory = session_factory
        self._rng = random.Random()
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._conns: set[_Conn] = set()
        self._seq = 0
        # trade ids while two links overlap (a dict: ordered, so the oldest can be trimmed)
        self._dedup: dict[tuple[str, str], None] | None = None
        self._dedup_until_ns = 0
        self._processing = latency.processing.add
        self._perf = time.perf_counter_ns
        self.shards = self._make_shards(limits.max_streams_per_link)
        self.stats.shards = len(self.shards)
        self.stats.endpoint = self.urls[0]

    # -- set-up ------------------------------------------------------------------------
    def _make_shards(self, max_streams: int | None) -> list[_Shard]:
        session = self.feed.session
        symbols = list(session.symbols)
        per_link = self.options.max_symbols_per_link
        if per_link is None and max_streams and symbols and hasattr(session, "streams"):
            per_symbol = max(1, len(session.streams()) // len(symbols))  # type: ignore[attr-defined]
            per_link = max(1, max_streams // per_symbol)
        if not per_link or len(symbols) <= per_link:
            shards = [_Shard(0, symbols, session)]
        else:
            shards = []
            for i in range(0, len(symbols), per_link):
                shard_session = self._new_session()
                shard_session.symbols = symbols[i : i + per_link]
                shards.append(_Shard(len(shards), shard_session.symbols, shard_session))
        for companion in session.companions():
            companion.stats = session.stats  # one set of counters per venue
            shards.append(_Shard(len(shards), list(companion.symbols), companion, clone_session(companion)))
        return shards

    def _new_session(self, shard: _Shard | None = None) -> VenueSession:
        if shard is not None and shard.template is not None:
            session = clone_session(shard.template)
        elif self._session_factory:
            session = self._session_factory()
        else:
            session = clone_session(self._template)
        session.stats = self.feed.session.stats  # one set of counters per venue
        return session

    @property
    def single(self) -> bool:
        """One connection carries everything: the feed's session is that connection's."""
        return len(self.shards) == 1

    @property
    def _sole_book_shard(self) -> _Shard | None:
        """The shard carrying every book, when one does (one shard, or one plus companions)."""
        books = [s for s in self.shards if s.books]
        return books[0] if len(books) == 1 else None

    @property
    def transport(self) -> WSTransport | None:
        """The first shard's primary transport (compatibility)."""
        primary = self.shards[0].primary
        return primary.transport if primary is not None else None

    def ssl_context_for(self, url: str) -> ssl.SSLContext | None:
        if not url.startswith("wss:"):
            return None
        if self._ssl_context is None:
            self._ssl_context = client_context(
                cafile=self.options.tls_cafile, session_reuse=self.options.tls_session_reuse
            )
        return self._ssl_context

    # -- hot path ----------------------------------------------------------------------
    def _frame(self, conn: _Conn, payload: bytes, recv_ns: int) -> None:
        perf = self._perf
        t0 = perf()
        conn.last_recv_ns = recv_ns
        self.stats.frames += 1
        if conn.role is _PRIMARY:
            if self.tap is not None:
                self.tap("recv", payload, recv_ns, "")
            feed = self.feed
            if self._dedup is None and conn.session is feed.session:
                actions = feed.on_frame(payload, recv_ns)  # the one path, unchanged
                if actions:
                    self._execute(conn, actions)
            else:
                self._route(conn, payload, recv_ns)
        else:
            self._secondary(conn, payload, recv_ns)
        self._processing(perf() - t0)

    def _route(self, conn: _Conn, payload: bytes, recv_ns: int) -> None:
        """A primary's frame when ``feed.on_frame`` can't be used: another shard's
        session, or trades being deduplicated around a switch."""
        feed = self.feed
        feed.last_recv_ns = recv_ns
        dedup = self._dedup
        for item in conn.session.on_frame(payload, recv_ns):
            kind = type(item)
            if kind is BookUpdate:
                actions = feed.on_update(item)  # type: ignore[arg-type]
                if actions:
                    self._execute(conn, actions)
            elif kind is Send or kind is FetchSnapshot or kind is Reconnect:
                self._execute(conn, [item])  # type: ignore[list-item]
            else:
                if kind is Trade and dedup is not None:
                    key = (item.symbol, item.trade_id)  # type: ignore[union-attr]
                    if key in dedup:
                        continue
                    dedup[key] = None
                feed.on_event(item)  # type: ignore[arg-type]

    def _secondary(self, conn: _Conn, payload: bytes, recv_ns: int) -> None:
        """A candidate's, standby's or draining link's frame: only diffs that continue a synced book."""
        for item in conn.session.on_frame(payload, recv_ns):
            kind = type(item)
            if (kind is Trade or kind is Quote) and not conn.shard.books:
                conn.ready.set()  # a companion is ready once its data flows
            elif kind is BookUpdate:
                self._secondary_book(conn, item)  # type: ignore[arg-type]
            elif kind is Send:
                self._send(conn, item.text)  # type: ignore[union-attr]
            elif kind is BadFrame or kind is VenueError:
                self.feed.on_event(item)  # type: ignore[arg-type]
            # trades, quotes, snapshot requests and reconnect requests: the primary's job

    def _secondary_book(self, conn: _Conn, upd: BookUpdate) -> None:
        sync = self.feed.syncs.get(upd.symbol)
        if sync is None:
            return
        if upd.is_snapshot and sync.state is not SyncState.SYNCED and sync.rule.snapshot_in_stream:
            # a book waiting for an in-stream snapshot (it broke, or the switch is for its
            # sake) takes the one the replacement got on subscribing: the old connection will
            # not send another, and the venue's ids are the same on both
            actions = self.feed.on_update(upd)
            if actions:
                primary = conn.shard.primary
                self._execute(primary if primary is not None and primary.transport else conn, actions)
            return
        if sync.state is not SyncState.SYNCED or upd.is_snapshot:
            return
        rule = sync.rule
        verdict = rule.next(sync.last_id, upd) if sync.started else rule.first(sync.last_id, upd)
        if verdict is Verdict.GAP:
            return  # ahead of the book: the primary delivers the ids in between
        if upd.symbol not in conn.aligned:
            conn.aligned.add(upd.symbol)
            self._check_ready(conn)
        if verdict is Verdict.APPLY:
            actions = self.feed.on_update(upd)
            if actions:
                primary = conn.shard.primary
                self._execute(primary if primary is not None and primary.transport else conn, actions)

    def _check_ready(self, conn: _Conn) -> None:
        syncs = self.feed.syncs
        if all(s in conn.aligned or not syncs[s].synced for s in conn.shard.symbols if s in syncs):
            conn.ready.set()

    def _execute(self, conn: _Conn, actions: list[Action]) -> None:
        for action in actions:
            kind = type(action)
            if kind is Send:
                self._send(conn, action.text)  # type: ignore[union-attr]
            elif kind is FetchSnapshot:
                self._spawn(self._fetch_snapshot(action))  # type: ignore[arg-type]
            elif kind is Reconnect:
                self._on_reconnect(conn, action.reason)  # type: ignore[union-attr]

    def execute_for(self, symbol: str, actions: list[Action]) -> bool:
        """Carry out ``symbol``'s book actions (a resubscribe, a snapshot request) on the
        connection that carries that book; False when it is down."""
        primary = self._shard_of(symbol).primary
        if primary is None or primary.transport is None:
            return False
        self._execute(primary, actions)
        return True

    # -- sending (venue message-rate limits) ---------------------------------------------
    def _send(self, conn: _Conn, text: str) -> None:
        transport = conn.transport
        if transport is None:
            return
        data = text.encode()
        rate = self.max_sends_per_s
        if rate:
            now = time.monotonic_ns()
            conn.tokens = min(1.0, conn.tokens + (now - conn.tokens_ns) * rate / 1e9)
            conn.tokens_ns = now
            if conn.sendq or conn.tokens < 1.0:
                conn.sendq.append(data)
                self.stats.sends_queued += 1
                self._schedule_drain(conn)
                return
            conn.tokens -= 1.0
        transport.send(WSMsgType.TEXT, data)
        if self.tap is not None and conn.role is Role.PRIMARY:
            self.tap("sent", data, time.time_ns(), "")

    def _schedule_drain(self, conn: _Conn) -> None:
        if conn.drain_handle is not None or self.max_sends_per_s is None:
            return
        wait = max(0.0, (1.0 - conn.tokens) / self.max_sends_per_s)
        conn.drain_handle = asyncio.get_running_loop().call_later(wait, self._drain, conn)

    def _drain(self, conn: _Conn) -> None:
        conn.drain_handle = None
        transport = conn.transport
        if transport is None:
            conn.sendq.clear()
            return
        rate = self.max_sends_per_s or 1.0
        now = time.monotonic_ns()
        conn.tokens = min(1.0, conn.tokens + (now - conn.tokens_ns) * rate / 1e9)
        conn.tokens_ns = now
        while conn.sendq and conn.tokens >= 1.0:
            data = conn.sendq.popleft()
            conn.tokens -= 1.0
            transport.send(WSMsgType.TEXT, data)
            if self.tap is not None and conn.role is Role.PRIMARY:
                self.tap("sent", data, time.time_ns(), "")
        if conn.sendq:
            self._schedule_drain(conn)

    # -- connection events -----------------------------------------------------------------
    def _connected(self, conn: _Conn, transport: WSTransport) -> None:
        conn.transport = transport
        if not self.options.tcp.nodelay:
            reapply_tcp_options(transport, self.options.tcp)  # before the first send
        now = time.time_ns()
        conn.opened_ns = conn.last_recv_ns = now
        conn.tokens_ns = time.monotonic_ns()
        self._conns.add(conn)
        self.stats.connects += 1
        shard = conn.shard
        ctx = self._ssl_context
        if isinstance(ctx, ResumingContext) and conn.url.startswith("wss:"):
            conn.ticket_pending = True
        if shard.primary is None and not self._stopping and conn.role in _TAKE_OVER:
            # the old link went while this one connected: no overlap to manage, and no
            # reason to leave the books waiting for the supervisor's backoff
            if conn.role is Role.STANDBY:
                self.stats.standby_failovers += 1
                self._status("standby took over", f"{conn!r}: the primary dropped while it connected")
            conn.role = Role.PRIMARY
        elif conn.role is Role.PRIMARY and _live(shard.primary):
            # a standby or a replacement took over while this one connected
            if self.options.warm_standby and not _live(shard.standby):
                conn.role = Role.STANDBY
                self._status("late primary", f"{conn!r} connected after {shard.primary!r} took over: kept as standby")
            else:
                self._close_surplus(conn, f"connected after {shard.primary!r} took over")
                return
        elif conn.role is Role.STANDBY and _live(shard.standby):
            self._close_surplus(conn, f"{shard.standby!r} is the standby already")
            return
        if conn.role is Role.PRIMARY:
            self._install_primary(shard, conn)
            self.feed.last_recv_ns = now
            if self.tap is not None:
                self.tap("open", b"", now, conn.url)
        elif conn.role is Role.STANDBY:
            shard.standby = conn
            if self._dedup is None:
                self._dedup = {}
        else:
            shard.candidate = conn
            if self._dedup is None:
                self._dedup = {}
        self._execute(conn, list(conn.session.on_open(now)))

    def _close_surplus(self, conn: _Conn, why: str) -> None:
        """A connection that lost its place while it connected: it never subscribes, and
        ``_open`` closes it once the connect has finished."""
        conn.role = Role.DRAINING
        conn.shard.draining.add(conn)
        self._status("surplus connection", f"{conn!r} to be closed: {why}")

    def _install_primary(self, shard: _Shard, conn: _Conn) -> None:
        shard.primary = conn
        shard.session = conn.session
        if shard is self._sole_book_shard:
            self.feed.session = conn.session
            self.session = conn.session
        self._update_connected()
        if self.options.warm_standby:
            shard.standby_wake.set()

    def _update_connected(self) -> None:
        primaries = [s.primary for s in self.shards]
        connected = all(p is not None and p.transport is not None for p in primaries)
        if connected and not self.stats.connected:
            self.stats.connected_since_ns = min(p.opened_ns for p in primaries if p is not None)
        self.stats.connected = connected

    def _closed_by_venue(self, conn: _Conn, code: Any, message: Any) -> None:
        reason = f"closed by venue: {code} {message!r}"
        if conn.role is Role.PRIMARY:
            self.stats.last_error = reason
            conn.shard.lost_reason = reason

    def _disconnected(self, conn: _Conn) -> None:
        conn.transport = None
        conn.closed = True
        conn.sendq.clear()
        if conn.drain_handle is not None:
            conn.drain_handle.cancel()
            conn.drain_handle = None
        self._conns.discard(conn)
        shard = conn.shard
        if conn is shard.candidate:
            shard.candidate = None
            conn.ready.set()  # wake the switch task
            return
        if conn in shard.draining:
            shard.draining.discard(conn)
            return
        if conn is shard.standby:
            shard.standby = None
            lived = (time.time_ns() - conn.opened_ns) / 1e9
            if lived >= self.options.healthy_after_s:
                shard.standby_attempt = 0
            shard.standby_wake.set()  # reopened with backoff; the primary is not touched
            return
        if conn is not shard.primary:
            return
        cand = shard.candidate
        if cand is not None and cand.transport is not None and not self._stopping:
            self._promote(shard, cand, f"primary dropped ({shard.lost_reason or 'closed'})")
            return
        standby = shard.standby
        if standby is not None and standby.transport is not None and not self._stopping:
            self.stats.standby_failovers += 1
            self._promote(shard, standby, f"primary dropped ({shard.lost_reason or 'closed'})")
            shard.lost_reason = ""
            return
        shard.primary = None
        self._update_connected()
        now = time.time_ns()
        reason = "link lost"
        if self._stopping:
            pass  # the engine is shutting down: books keep their last state for the summary
        elif not shard.books:
            pass  # a companion (trades, quotes): the books never depended on it
        elif shard is self._sole_book_shard:
            self.feed.link_lost(reason, now)
        else:
            syncs = self.feed.syncs
            for symbol in shard.symbols:
                if symbol in syncs:
                    syncs[symbol].invalidate(reason, now)
        lived = (now - conn.opened_ns) / 1e9
        if lived >= self.options.healthy_after_s:
            shard.attempt = 0
            shard.attempts = 0
        shard.lost_reason = f"after {lived:.1f}s: {shard.lost_reason or 'closed'}"
        shard.lost.set()

    def _pong(self, conn: _Conn, payload: bytes) -> None:
        if len(payload) == 8 and conn.ping_sent:
            (sent,) = struct.unpack("<q", payload)
            if sent == conn.ping_sent:
                self.latency.rtt.add((self._perf() - sent) // 1000)
                conn.ping_sent = 0

    def _save_ticket(self, conn: _Conn) -> None:
        ctx = self._ssl_context
        transport = conn.transport
        if not isinstance(ctx, ResumingContext) or transport is None:
            conn.ticket_pending = False
            return
        ssl_object = transport.underlying_transport.get_extra_info("ssl_object")
        conn.frames += 1  # frames looked at for a ticket
        if ctx.save_from(conn.tls_host, ssl_object) or conn.frames > 100:
            conn.ticket_pending = False

    def _on_reconnect(self, conn: _Conn, reason: str) -> None:
        if conn.role is not Role.PRIMARY:
            if conn.role is Role.CANDIDATE and not is_planned(reason):
                self._drop(conn, f"replacement: {reason}")
            elif conn.role is Role.STANDBY and not is_planned(reason):
                self._drop(conn, f"standby: {reason}")  # reopened with backoff
            return
        if is_planned(reason) and self.options.make_before_break:
            self._request_switch(conn.shard, reason)
        else:
            self._drop(conn, reason)

    def _drop(self, conn: _Conn, reason: str) -> None:
        """Close one connection now (TCP abort); for a primary the supervisor reconnects."""
        if conn.role is Role.PRIMARY:
            self.stats.last_error = reason
            conn.shard.lost_reason = reason
        self._status("reconnect" if conn.role is Role.PRIMARY else "drop", f"{conn!r}: {reason}")
        if conn.transport is not None:
            conn.transport.disconnect(graceful=False)

    def reconnect(self, reason: str) -> None:
        """Drop every primary now (planned reasons switch make-before-break instead)."""
        for shard in self.shards:
            if shard.primary is not None:
                self._on_reconnect(shard.primary, reason)

    def _status(self, what: str, detail: str) -> None:
        log.info("venue=%s %s: %s", self.venue, what, detail)
        if self.on_status is not None:
            self.on_status(what, detail)

    # -- planned disconnects: make-before-break -------------------------------------------
    def _request_switch(self, shard: _Shard, reason: str) -> None:
        if shard.switch_task is not None and not shard.switch_task.done():
            return
        if time.time_ns() < shard.switch_retry_ns:
            return
        self._status("planned disconnect", f"shard {shard.index}: {reason}; opening the replacement first")
        shard.switch_task = self._spawn(self._switch(shard, reason))

    async def _switch(self, shard: _Shard, reason: str) -> None:
        started = time.perf_counter()
        try:
            cand = await self._open(shard, Role.CANDIDATE)
        except ConnectError as exc:
            self.stats.switch_failures += 1
            shard.switch_retry_ns = time.time_ns() + int(max(10.0, self.options.backoff_cap_s) * 1e9)
            self._status("replacement failed", f"{exc}; the current link stays until it drops")
            return
        if cand.role is Role.PRIMARY:  # the old link went away while we connected
            return
        deadline = started + self.options.switch_timeout_s
        while shard.candidate is cand and not cand.ready.is_set():
            self._check_ready(cand)
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(cand.ready.wait(), min(left, 0.1))
        if shard.candidate is cand and cand.transport is not None:
            self._promote(shard, cand, reason)

    def _promote(self, shard: _Shard, cand: _Conn, reason: str) -> None:
        old = shard.primary
        standby = cand.role is Role.STANDBY
        cand.role = Role.PRIMARY
        if shard.candidate is cand:
            shard.candidate = None
        if shard.standby is cand:
            shard.standby = None  # _install_primary wakes the standby keeper: a new one, with backoff
        self._install_primary(shard, cand)
        now = time.time_ns()
        self._dedup_until_ns = now + int(self.options.dedup_window_s * 1e9)
        if not standby:
            self.stats.switchovers += 1
        if self.tap is not None:
            self.tap("open", b"", now, cand.url)
        synced = sum(1 for s in shard.symbols if self.feed.syncs[s].synced)
        self._status(
            "standby took over" if standby else "switched",
            f"shard {shard.index} now on {cand!r} ({reason}); {synced}/{len(shard.symbols)} books stayed synced",
        )
        if old is not None and old is not cand and old.transport is not None:
            old.role = Role.DRAINING
            shard.draining.add(old)
            asyncio.get_running_loop().call_later(self.options.drain_s, self._close_drained, old)

    def _close_drained(self, conn: _Conn) -> None:
        if conn.transport is not None:
            conn.transport.send_close()
            conn.transport.disconnect()

    # -- supervisor ------------------------------------------------------------------------
    def backoff_s(self, shard: _Shard | None = None) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**attempt)]."""
        shard = shard or self.shards[0]
        o = self.options
        ceiling = min(o.backoff_cap_s, o.backoff_base_s * (2**shard.attempt))
        shard.attempt = min(shard.attempt + 1, 30)
        return self._rng.uniform(0, ceiling)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        timer = loop.create_task(self._timer())
        supervisors = [loop.create_task(self._supervise(shard)) for shard in self.shards]
        keepers = (
            [loop.create_task(self._keep_standby(shard)) for shard in self.shards]
            if self.options.warm_standby
            else []
        )
        try:
            await asyncio.gather(*supervisors)
        finally:
            for task in (timer, *supervisors, *keepers, *self._tasks):
                task.cancel()
            await asyncio.gather(timer, *supervisors, *keepers, return_exceptions=True)
            for conn in list(self._conns):
                if conn.transport is not None:
                    conn.transport.disconnect(graceful=False)

    async def _supervise(self, shard: _Shard) -> None:
        delay = 0.0
        while not self._stopping:
            if delay:
                await asyncio.sleep(delay)
                delay = 0.0
                continue
            if shard.primary is not None:
                shard.lost.clear()
                await shard.lost.wait()
                if shard.primary is None and not self._stopping:
                    self.stats.reconnects += 1
                    pending = shard.switch_task is not None and not shard.switch_task.done()
                    delay = 0.0 if pending else self.backoff_s(shard)
                    self._status(
                        "disconnected",
                        f"shard {shard.index} {shard.lost_reason}; "
                        + ("replacement under way" if pending else f"reconnecting in {delay:.2f}s"),
                    )
                    shard.lost_reason = ""
                continue
            switch = shard.switch_task
            if switch is not None and not switch.done():
                await asyncio.wait([switch])
                continue
            try:
                await self._open(shard, Role.PRIMARY)
            except ConnectError as exc:
                delay = self._after_failure(shard, exc)
                self.stats.reconnects += 1

    def _standby_backoff(self, shard: _Shard) -> float:
        """Full jitter like ``backoff_s``, on the standby's own exponent."""
        o = self.options
        ceiling = min(o.backoff_cap_s, o.backoff_base_s * (2**shard.standby_attempt))
        shard.standby_attempt = min(shard.standby_attempt + 1, 30)
        return self._rng.uniform(0, ceiling)

    async def _keep_standby(self, shard: _Shard) -> None:
        """Keeps one warm standby open beside the shard's primary (``warm_standby``)."""
        delay = 0.0
        while not self._stopping:
            if delay:
                await asyncio.sleep(delay)
                delay = 0.0
                continue
            primary = shard.primary
            if primary is None or primary.transport is None or shard.standby is not None:
                # wait for a primary, or for the standby to drop or be promoted
                shard.standby_wake.clear()
                had = shard.standby
                await shard.standby_wake.wait()
                if had is not None and shard.standby is None and not self._stopping:
                    delay = self._standby_backoff(shard)
                    what = "promoted" if had.role is Role.PRIMARY else "lost"
                    self._status(f"standby {what}", f"shard {shard.index}: a new standby in {delay:.2f}s")
                continue
            try:
                conn = await self._open(shard, Role.STANDBY)
            except ConnectError as exc:
                self.stats.standby_failures += 1
                delay = self._standby_backoff(shard)
                self._status("standby connect failed", f"shard {shard.index} ({exc.kind}): {exc}; retry in {delay:.2f}s")
                continue
            if shard.standby is not conn and not self._stopping:
                delay = self._standby_backoff(shard)  # gone already: don't spin

    async def _open(self, shard: _Shard, role: Role) -> _Conn:
        """Open one connection; ``_connected`` installs it before this returns."""
        base = self.urls[shard.endpoint_i % len(self.urls)]
        if role is Role.PRIMARY:
            session = shard.session
        else:
            session = self._new_session(shard)
            session.symbols = list(shard.symbols)
        if session.endpoints.ws_url != base:
            session.endpoints = dataclasses.replace(session.endpoints, ws_url=base)
        url = session.url()
        self._seq += 1
        try:
            headers = session.headers()
        except ValueError as exc:
            raise ConnectError("config", self.venue, url, str(exc)) from exc
        conn = _Conn(self, shard, session, role, url, self._seq)
        standby = role is Role.STANDBY
        if not standby:
            shard.attempts += 1
        self.stats.attempts += 1
        o = self.options
        try:
            transport, _, timing = await open_ws(
                lambda: _Listener(conn),
                url,
                venue=self.venue,
                tcp=o.tcp,
                ssl_context=self.ssl_context_for(url),
                connect_timeout_s=o.connect_timeout_s,
                handshake_timeout_s=o.handshake_timeout_s,
                resolver=o.resolver,
                use_aiofastnet=o.use_aiofastnet,
                extra_headers=headers,
            )
        except ConnectError:
            raise
        except Exception as exc:  # anything unforeseen is still one failed attempt
            raise ConnectError("error", self.venue, url, f"{type(exc).__name__}: {exc}") from exc
        self.stats.last_connect = timing
        self.stats.endpoint = base
        if timing.session_reused:
            self.stats.tls_resumed += 1
        if not standby:
            shard.failures = 0
        tls = f", {timing.tls_version}{' resumed' if timing.session_reused else ''}" if timing.tls_version else ""
        self._status(
            "connected",
            f"{conn!r}{'' if standby else f' attempt {shard.attempts}'} to {url[:100]} in {timing.total_ms:.1f} ms "
            f"(dns {timing.dns_ms:.1f}, tcp {timing.tcp_ms:.1f}, handshake {timing.handshake_ms:.1f}{tls})",
        )
        if self._stopping:
            transport.disconnect()
        elif conn.role is Role.DRAINING:
            self._close_drained(conn)  # surplus (``_close_surplus``)
        return conn

    def _after_failure(self, shard: _Shard, exc: ConnectError) -> float:
        """Log the failed attempt once, rotate endpoints after repeats; returns the delay."""
        self.stats.failures += 1
        self.stats.last_error = str(exc)
        self.stats.last_failure = exc
        shard.failures += 1
        url = self.urls[shard.endpoint_i % len(self.urls)]
        rotate = len(self.urls) > 1 and shard.failures >= self.options.failover_after
        delay = self.backoff_s(shard)
        if exc.retry_after_s is not None:  # the venue's word beats our cap (bounded: 15 min)
            delay = max(delay, min(exc.retry_after_s, 900.0))
        note = ""
        if rotate:
            shard.endpoint_i = (shard.endpoint_i + 1) % len(self.urls)
            shard.failures = 0
            self.stats.failovers += 1
            note = f"; failing over to {self.urls[shard.endpoint_i]}"
        self._status(
            "connect failed",
            f"shard {shard.index} attempt {shard.attempts} to {url} ({exc.kind}): {exc}; "
            f"retry in {delay:.2f}s{note}",
        )
        return delay

    async def stop(self) -> None:
        self._stopping = True
        for shard in self.shards:
            shard.lost.set()
            shard.standby_wake.set()
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.disconnect()
        for task in list(self._tasks):
            task.cancel()

    # -- beside the hot path -----------------------------------------------------------------
    async def _timer(self) -> None:
        o = self.options
        while True:
            await asyncio.sleep(o.timer_s)
            self.latency.fold()
            now = time.time_ns()
            dedup = self._dedup
            if dedup is None:
                pass
            elif o.warm_standby:
                # a standby may take over at any moment: keep the recent trade ids, bounded
                if len(dedup) > 100_000:
                    self._dedup = dict.fromkeys(list(dedup)[-20_000:])
            elif now > self._dedup_until_ns and (
                len(dedup) > 100_000 or not any(s.candidate is not None for s in self.shards)
            ):
                self._dedup = None
            for conn in list(self._conns):
                if conn.transport is not None:
                    self._tick(conn, now)
            if self.max_link_age_s:
                for shard in self.shards:
                    p = shard.primary
                    if p is not None and p.transport is not None and now - p.opened_ns > self.max_link_age_s * 1e9:
                        self._on_reconnect(p, f"link age {(now - p.opened_ns) / 3.6e12:.1f} h")
                    sb = shard.standby
                    if sb is not None and sb.transport is not None and now - sb.opened_ns > self.max_link_age_s * 1e9:
                        self._drop(sb, f"standby link age {(now - sb.opened_ns) / 3.6e12:.1f} h")

    def _tick(self, conn: _Conn, now: int) -> None:
        o = self.options
        transport = conn.transport
        assert transport is not None
        if now - conn.last_recv_ns > o.dead_after_s * 1e9:
            self.stats.dead_links += 1
            self._drop(conn, f"no frame for {(now - conn.last_recv_ns) / 1e9:.1f}s (dead link)")
            return
        perf = self._perf()
        if conn.ping_sent and o.pong_timeout_s and perf - conn.ping_sent > o.pong_timeout_s * 1e9:
            self.stats.pongs_overdue += 1
            self._drop(conn, f"pong overdue: ping unanswered for {(perf - conn.ping_sent) / 1e9:.1f}s")
            return
        primary = conn.role is Role.PRIMARY
        for item in conn.session.on_timer(now, conn.last_recv_ns):
            if isinstance(item, (Send, FetchSnapshot, Reconnect)):
                self._execute(conn, [item])
            elif primary:
                self.feed.on_event(item)
        if o.rtt_ping_s and not conn.ping_sent and now - conn.last_ping_ns >= o.rtt_ping_s * 1e9:
            conn.last_ping_ns = now
            conn.ping_sent = perf
            transport.send_ping(struct.pack("<q", perf))
        if conn.sendq and conn.drain_handle is None:
            self._schedule_drain(conn)

    def _spawn(self, coro) -> asyncio.Task[Any]:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

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
            shard = self._shard_of(action.symbol)
            if shard.primary is not None:
                self._execute(shard.primary, actions)

    def _shard_of(self, symbol: str) -> _Shard:
        """The shard carrying ``symbol``'s book."""
        if self.single:
            return self.shards[0]
        for shard in self.shards:
            if shard.books and symbol in shard.symbols:
                return shard
        return self.shards[0]
