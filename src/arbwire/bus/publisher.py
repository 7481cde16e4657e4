"""Publish an Engine's normalized events on NATS, for detectors on other machines.

``attach_publisher(engine, "nats://host:4222")`` before ``engine.run()``. The publisher
is one of the engine's sinks: trades, quotes and book state changes reach it through
``Engine.sinks``; book updates through a wrapper around each feed's ``on_book``, which
sees every update as it is applied (the whole book when a book syncs, then each delta).

Hot path: the wrapper numbers the update (``seq``, see ``arbwire.bus.wire``) and
appends one small tuple to the drop-oldest queue of ``BoundedSink``; encoding and the
NATS write happen in the sink's task. Nothing on the hot path waits for the network:
a slow or absent NATS server costs queued items, dropped oldest-first and counted
(``dropped``). Lost or dropped book messages are gaps on the bus; subscribers repair
them from a snapshot: the publisher answers ``<prefix>.snapshot.<venue>.<symbol>``
requests from its live book, publishes a snapshot of every synced book every
``snapshot_every_s`` and right after reconnecting to NATS. Connecting and reconnecting
is ``BusPeer``'s (``arbwire.bus.connection``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from nats.aio.msg import Msg

from arbwire.bus import wire
from arbwire.bus.connection import DEFAULT_URL, BusPeer
from arbwire.bus.wire import (
    BOOK,
    PREFIX,
    QUOTE,
    SNAPSHOT,
    STATE,
    TRADE,
    BusBook,
    BusState,
    NoSnapshot,
)
from arbwire.feed import VenueFeed
from arbwire.model import BookUpdate, FeedState, Quote, Trade
from arbwire.sinks import BoundedSink
from arbwire.sync import BookSync

if TYPE_CHECKING:
    from arbwire.engine import Engine

log = logging.getLogger("arbwire.bus")


class _Book:
    """A published book: its sync, its bus sequence and subjects."""

    __slots__ = ("sync", "subject", "request_subject", "seq", "skip", "decimals")

    def __init__(self, sync: BookSync, prefix: str, decimals: int | None) -> None:
        self.sync = sync
        self.subject = wire.subject(prefix, BOOK, sync.venue, sync.symbol)
        self.request_subject = wire.subject(prefix, SNAPSHOT, sync.venue, sync.symbol)
        self.seq = 0
        self.skip = 0  # fault hook: updates numbered but not published
        self.decimals = decimals


class BusPublisher(BoundedSink[Any], BusPeer):
    """An engine's sink that puts its normalized events on NATS (see the module doc)."""

    def __init__(
        self,
        engine: Engine,
        url: str | Sequence[str] = DEFAULT_URL,
        *,
        prefix: str = PREFIX,
        maxlen: int = 100_000,
        snapshot_every_s: float = 5.0,
        reconnect_wait_s: float = 1.0,
        trades: bool = True,
        quotes: bool = True,
        name: str = "arbwire-publish",
    ) -> None:
        BoundedSink.__init__(self, "nats", self._publish, maxlen)
        BusPeer.__init__(self, url, name=name, reconnect_wait_s=reconnect_wait_s)
        self.engine = engine
        self.prefix = prefix
        self.snapshot_every_s = snapshot_every_s
        self.trades = trades
        self.quotes = quotes
        self.epoch = random.SystemRandom().getrandbits(62) + 1
        self._books: dict[BookSync, _Book] = {}
        self._by_key: dict[tuple[str, str], _Book] = {}
        self._by_request: dict[str, _Book] = {}
        self._subjects: dict[tuple[str, str, str], str] = {}
        self._wrapped: set[int] = set()
        self._served: set[str] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._side_tasks: set[asyncio.Task[Any]] = set()
        self._enqueue = super().put
        self.published = 0
        self.publish_errors = 0
        self.skipped = 0
        self.snapshots = 0
        self.snapshot_requests = 0

    # -- engine side (hot path) ---------------------------------------------------------
    def put(self, event: Any) -> None:
        """``Engine._deliver``: trades, quotes and book states go out; the rest stays local."""
        kind = type(event)
        if kind is Trade:
            if self.trades:
                self._enqueue((self._subject(TRADE, event.venue, event.symbol), event))
        elif kind is Quote:
            if self.quotes:
                self._enqueue((self._subject(QUOTE, event.venue, event.symbol), event))
        elif kind is FeedState:
            book = self._by_key.get((event.venue, event.symbol))
            seq = book.seq if book is not None else 0
            msg = BusState(epoch=self.epoch, seq=seq, state=event)
            self._enqueue((self._subject(STATE, event.venue, event.symbol), msg))

    def _subject(self, kind: str, venue: str, symbol: str) -> str:
        key = (kind, venue, symbol)
        subject = self._subjects.get(key)
        if subject is None:
            subject = self._subjects[key] = wire.subject(self.prefix, kind, venue, symbol)
        return subject

    def watch_feed(self, feed: VenueFeed) -> None:
        """Publish ``feed``'s book updates as they are applied (wraps ``feed.on_book``)."""
        if id(feed) in self._wrapped:
            return
        self._wrapped.add(id(feed))
        for sync in feed.syncs.values():
            self._add(sync)
        inner = feed.on_book
        books = self._books
        add = self._add
        enqueue = self._enqueue
        snapshot = self._snapshot
        epoch = self.epoch

        def on_book(sync: BookSync, upd: BookUpdate) -> None:
            book = books.get(sync) or add(sync)
            book.seq = seq = book.seq + 1
            if book.skip:
                book.skip -= 1
                self.skipped += 1
            elif upd.is_snapshot:  # the whole book as synced: snapshot plus aligned diffs
                enqueue((book.subject, snapshot(book)))
            else:
                enqueue((book.subject, BusBook(epoch=epoch, seq=seq, update=upd)))
            inner(sync, upd)

        feed.on_book = on_book

    def _add(self, sync: BookSync) -> _Book:
        book = _Book(sync, self.prefix, self._size_decimals(sync))
        self._books[sync] = book
        self._by_key[(sync.venue, sync.symbol)] = book
        self._by_request[book.request_subject] = book
        if self.nc is not None:
            self._spawn(self._serve(book))
        return book

    def _size_decimals(self, sync: BookSync) -> int | None:
        instruments = self.engine.instruments
        if instruments is None:
            return None
        venue = self.engine.config_name(sync.venue)
        return instruments.size_decimals(sync.symbol, [venue, venue.partition("-")[0]])

    def _snapshot(self, book: _Book) -> BusBook:
        """The book as it stands, numbered with the ``seq`` of the last update it holds."""
        return BusBook(epoch=self.epoch, seq=book.seq, update=book.sync.as_snapshot(), size_decimals=book.decimals)

    # -- fault hook (tests) -------------------------------------------------------------
    def drop_next(self, venue: str, symbol: str, count: int = 1) -> None:
        """Number the next ``count`` updates of the book but do not publish them: a loss
        on the bus, as subscribers see it."""
        self._by_key[(venue, symbol)].skip += count

    def seq(self, venue: str, symbol: str) -> int:
        """The bus sequence of the last update of the book (0: none yet)."""
        book = self._by_key.get((venue, symbol))
        return 0 if book is None else book.seq

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        """``Engine.run`` calls this after the instrument check, before the links run."""
        if self._task is not None:
            return
        for feed in self.engine.feeds.values():
            self.watch_feed(feed)
        self._task = asyncio.get_running_loop().create_task(self._main())

    async def _main(self) -> None:
        try:
            await self._connect()
            log.info("bus: publishing to %s as %s (epoch %d)", self.server_name, self.prefix, self.epoch)
            for book in list(self._books.values()):
                await self._serve(book)
        except Exception:
            log.exception("bus: cannot publish to %s", self.servers)
            raise
        if self.snapshot_every_s > 0:
            self._ticker = asyncio.get_running_loop().create_task(self._periodic())
        await self._run()

    async def _serve(self, book: _Book) -> None:
        assert self.nc is not None
        if book.request_subject in self._served:
            return
        self._served.add(book.request_subject)
        await self.nc.subscribe(book.request_subject, cb=self._on_request)

    async def _on_request(self, msg: Msg) -> None:
        self.snapshot_requests += 1
        book = self._by_request.get(msg.subject)
        if book is None or not book.sync.synced:
            venue, symbol = (book.sync.venue, book.sync.symbol) if book else ("?", msg.subject)
            reason = book.sync.reason if book else "unknown book"
            body: BusBook | NoSnapshot = NoSnapshot(venue=venue, symbol=symbol, reason=reason)
        else:
            body = self._snapshot(book)
            body.sent_ns = time.time_ns()
        try:
            await msg.respond(wire.encoder.encode(body))
        except Exception as exc:
            self._ratelog(logging.WARNING, "reply", "bus: snapshot reply on %s failed: %r", msg.subject, exc)

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.snapshot_every_s)
            self.publish_snapshots()

    def publish_snapshots(self) -> int:
        """Queue a snapshot of every synced book; returns how many."""
        n = 0
        for book in self._books.values():
            if book.sync.synced:
                self._enqueue((book.subject, self._snapshot(book)))
                n += 1
        return n

    def _publish(self, item: tuple[str, Any]) -> Any:
        subject, msg = item
        if type(msg) is BusBook:
            msg.sent_ns = time.time_ns()
            if msg.update.is_snapshot:
                self.snapshots += 1
        return self._send(subject, wire.encoder.encode(msg))

    async def _send(self, subject: str, data: bytes) -> None:
        nc = self.nc
        assert nc is not None
        try:
            await nc.publish(subject, data)
        except Exception as exc:  # buffer full while reconnecting, payload too large, closed
            self.publish_errors += 1
            self._ratelog(logging.WARNING, type(exc).__name__, "bus: publish on %s failed: %r", subject, exc)
        else:
            self.published += 1

    def _disconnected(self) -> None:
        log.warning("bus: disconnected from NATS; reconnecting every %.1fs", self.reconnect_wait_s)

    def _reconnected(self) -> None:
        n = self.publish_snapshots()  # whatever subscribers missed meanwhile
        log.info("bus: reconnected to %s; republishing %d snapshots", self.server_name, n)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    async def close(self, timeout_s: float = 2.0) -> None:
        """Publish what is queued (for up to ``timeout_s`` while connected), then disconnect."""
        self._closing = True
        if self._ticker is not None:
            self._ticker.cancel()
        for task in list(self._side_tasks):
            task.cancel()
        if self._task is None:
            return
        nc = self.nc
        deadline = time.monotonic() + timeout_s
        while self._queue and nc is not None and nc.is_connected and time.monotonic() < deadline:
            self._wake.set()
            await asyncio.sleep(0.005)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):  # a failed connect was logged
            await self._task
        self._task = None
        if nc is not None:
            with contextlib.suppress(Exception):
                if nc.is_connected:
                    await nc.flush(timeout=max(0.1, deadline - time.monotonic()))
        await self._close_nats()

    def stats(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "servers": self.servers,
            "epoch": self.epoch,
            "books": len(self._books),
            "published": self.published,
            "queued": len(self._queue),
            "dropped": self.dropped,
            "publish_errors": self.publish_errors,
            "snapshots": self.snapshots,
            "snapshot_requests": self.snapshot_requests,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "skipped": self.skipped,
        }


def attach_publisher(engine: Engine, url: str | Sequence[str] = DEFAULT_URL, **options: Any) -> BusPublisher:
    """Publish everything ``engine`` sees on NATS at ``url``; call before ``engine.run``.

    ``options`` are ``BusPublisher``'s (``prefix``, ``maxlen``, ``snapshot_every_s``,
    ``reconnect_wait_s``, ``trades``, ``quotes``, ``name``). The engine starts and
    closes the publisher with its other sinks.
    """
    publisher = BusPublisher(engine, url, **options)
    engine.sinks.append(publisher)
    return publisher


__all__ = ["DEFAULT_URL", "BusPublisher", "attach_publisher"]
