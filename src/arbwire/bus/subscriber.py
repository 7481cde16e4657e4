"""A detector on another machine: books rebuilt from the bus, the same ArbDetector.

``BusDetector`` subscribes to ``<prefix>.book.*.*`` and ``<prefix>.state.*.*`` (or the
venues/symbols it is given), keeps one ``BookSync`` per venue+symbol and feeds it
the published snapshots and deltas under the bus sequence rule (``wire`` module doc):
the same state machine as a venue book (INIT -> BUFFERING -> SYNCED -> RESYNCING),
the same ``FeedState`` events, and only SYNCED books that are fresh take part in the
detector. Fresh means the same as locally: ``recv_ns`` is the publisher's receive
stamp of the venue frame, so ``max_age_ms`` measures from the venue's frame, across
the bus.

A book goes unsynced, and its opportunities close, when

* a delta does not follow the last one (``gap``: a message lost or dropped on the
  bus); the detector asks the publisher for a snapshot (``<prefix>.snapshot.<venue>.
  <symbol>``, request/reply) unless ``request_snapshots`` is off, and in any case
  takes the next snapshot the publisher publishes (periodic, or after a reconnect);
* the publisher says its own book is unsynced (``BusState``): until the publisher's
  resync snapshot, newer than the break, arrives;
* the publisher restarted (new ``epoch``);
* the connection to NATS drops (``bus disconnected``); after reconnecting every
  book asks for a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import msgspec
from nats.aio.msg import Msg

from arbwire.arb.detector import ArbDetector, detector_from_config
from arbwire.arb.paper import LivePaper, paper_from_config
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
from arbwire.config import Config
from arbwire.latency import Recorder
from arbwire.model import BookUpdate, Event, FeedState, Opportunity, OpportunityEvent, SyncState
from arbwire.sync import BookSync, Outcome, SequenceRule

log = logging.getLogger("arbwire.bus")

_APPLIED = Outcome.APPLIED
_NEED_SNAPSHOT = Outcome.NEED_SNAPSHOT
_SYNCED = SyncState.SYNCED
_DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)


def make_detector(config: Config) -> ArbDetector:
    """An ``ArbDetector`` with the fees and thresholds of ``config`` (as ``Engine`` builds it)."""
    return detector_from_config(
        config.arb, {name: v.taker_fee_bps for name, v in config.venues.items() if v.taker_fee_bps is not None}
    )


class _Remote:
    """One venue+symbol book as rebuilt from the bus."""

    __slots__ = ("sync", "epoch", "floor", "requesting", "backoff_s", "request_subject")

    def __init__(self, sync: BookSync, request_subject: str) -> None:
        self.sync = sync
        self.epoch: int | None = None
        self.floor = 0  # snapshots numbered <= floor predate a break the publisher reported
        self.requesting = False
        self.backoff_s = 0.0
        self.request_subject = request_subject


class BusDetector(BusPeer):
    """Subscribes to published books, rebuilds them, runs ``ArbDetector`` on them.

    ``listeners`` get every ``Opportunity`` and ``FeedState`` (and ``Trade``/``Quote``
    when ``trades``/``quotes`` are on), as ``Engine.listeners`` do.
    """

    def __init__(
        self,
        url: str | Sequence[str] = DEFAULT_URL,
        *,
        config: Config | None = None,
        detector: ArbDetector | None = None,
        prefix: str = PREFIX,
        venues: Iterable[str] | None = None,
        symbols: Iterable[str] | None = None,
        request_snapshots: bool = True,
        request_timeout_s: float = 1.0,
        reconnect_wait_s: float = 1.0,
        trades: bool = False,
        quotes: bool = False,
        name: str = "arbwire-detect",
    ) -> None:
        super().__init__(url, name=name, reconnect_wait_s=reconnect_wait_s)
        config = config or Config()
        self.config = config
        self.prefix = prefix
        self.detector = detector or make_detector(config)
        self.max_depth = config.link.max_depth
        self.venues = sorted(set(venues)) if venues else None
        self.symbols = sorted(set(symbols)) if symbols else None
        self.request_snapshots = request_snapshots
        self.request_timeout_s = request_timeout_s
        self.trades = trades
        self.quotes = quotes
        self.listeners: list[Callable[[Event], None]] = []
        self.syncs: dict[tuple[str, str], BookSync] = {}
        self.opportunities: deque[Opportunity] = deque(maxlen=1000)
        self._remote: dict[tuple[str, str], _Remote] = {}
        self._decimals: dict[str, dict[str, int]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._housekeeper: asyncio.Task[None] | None = None
        self.bus_latency = Recorder()  # publisher send -> received here, µs
        self.recv_latency = Recorder()  # venue frame at the publisher -> received here, µs
        self.messages = 0
        self.bad_messages = 0
        self.updates = 0
        self.snapshots = 0
        self.snapshot_requests = 0
        self.snapshot_failures = 0
        self.opened = 0
        self.closed = 0
        # the same paper trading as the engine's, on the books rebuilt here
        self.paper = paper_from_config(config.paper, self.detector.fees)
        self._paper = LivePaper(self.paper, self.detector.syncs) if self.paper is not None else None

    # -- books --------------------------------------------------------------------------
    def _add(self, venue: str, symbol: str) -> _Remote:
        sync = BookSync(venue, symbol, SequenceRule(), max_depth=self.max_depth, on_state=self._on_state)
        remote = _Remote(sync, wire.subject(self.prefix, SNAPSHOT, venue, symbol))
        self._remote[(venue, symbol)] = remote
        self.syncs[(venue, symbol)] = sync
        self.detector.register(sync)
        return remote

    def on_book(self, msg: BusBook) -> None:
        """One published (or requested) book message; runs the detector when it applied."""
        upd = msg.update
        venue, symbol = upd.venue, upd.symbol
        remote = self._remote.get((venue, symbol)) or self._add(venue, symbol)
        sync = remote.sync
        now = time.time_ns()
        if msg.sent_ns:
            self.bus_latency.add((now - msg.sent_ns) // 1000)
        if msg.size_decimals is not None:
            self._set_decimals(venue, symbol, msg.size_decimals)
        if msg.epoch != remote.epoch:
            self._new_epoch(remote, msg.epoch, upd.recv_ns)
        seq = msg.seq
        if upd.is_snapshot:
            if seq <= remote.floor or (sync.state is _SYNCED and seq <= sync.last_id):
                return  # from before a break the publisher reported / nothing new
            self.snapshots += 1
        else:
            self.recv_latency.add((now - upd.recv_ns) // 1000)
        local = BookUpdate(
            venue, symbol, upd.bids, upd.asks, seq, seq, seq - 1, upd.is_snapshot, None,
            upd.venue_ts_ns, upd.recv_ns,
        )  # fmt: skip
        outcome = sync.on_update(local)
        if outcome is _APPLIED:
            self.updates += 1
            for opp in self.detector.check(sync, upd.recv_ns):
                self._emit(opp)
        elif outcome is _NEED_SNAPSHOT:
            self._request(remote)

    def on_state(self, msg: BusState) -> None:
        """The publisher's book changed state; a break makes ours unsynced too."""
        fs = msg.state
        remote = self._remote.get((fs.venue, fs.symbol)) or self._add(fs.venue, fs.symbol)
        if msg.epoch != remote.epoch:
            self._new_epoch(remote, msg.epoch, fs.recv_ns)
        if fs.state is _SYNCED:
            return  # the snapshot it synced from follows on the book subject
        remote.floor = max(remote.floor, msg.seq)
        sync = remote.sync
        if sync.state is _SYNCED and sync.last_id <= msg.seq:
            sync.invalidate(f"publisher: {fs.reason}", fs.recv_ns)

    def _new_epoch(self, remote: _Remote, epoch: int, recv_ns: int) -> None:
        if remote.epoch is not None:
            remote.sync.invalidate("publisher restarted", recv_ns, requested=remote.requesting)
        remote.epoch = epoch
        remote.floor = 0

    def _set_decimals(self, venue: str, symbol: str, decimals: int) -> None:
        by_venue = self._decimals.setdefault(symbol, {})
        if by_venue.get(venue) != decimals:
            by_venue[venue] = decimals
            self.detector.set_size_decimals(symbol, min(by_venue.values()))

    def _on_state(self, state: FeedState) -> None:
        if state.state is not _SYNCED:
            sync = self.syncs.get((state.venue, state.symbol))
            if sync is not None:
                for opp in self.detector.on_unsynced(sync, state.recv_ns):
                    self._emit(opp)
        log.info("bus book %s %s %s: %s", state.venue, state.symbol, state.state.name, state.reason)
        self._deliver(state)

    def _emit(self, opp: Opportunity) -> None:
        self.opportunities.append(opp)
        if opp.event is OpportunityEvent.OPENED:
            self.opened += 1
            if self._paper is not None:
                self._paper.on_opportunity(opp)
        elif opp.event is OpportunityEvent.CLOSED:
            self.closed += 1
        self._deliver(opp)

    def _deliver(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)

    # -- snapshots by request -----------------------------------------------------------
    def _request(self, remote: _Remote) -> None:
        if not self.request_snapshots or remote.requesting or self.nc is None:
            return  # the next published snapshot repairs the book
        remote.requesting = True
        remote.sync.awaiting = True
        task = asyncio.get_running_loop().create_task(self._fetch(remote))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _fetch(self, remote: _Remote) -> None:
        sync = remote.sync
        self.snapshot_requests += 1
        assert self.nc is not None
        try:
            msg = await self.nc.request(remote.request_subject, b"", timeout=self.request_timeout_s)
            reply = wire.decode_reply(msg.data)
        except Exception as exc:  # no responders, timeout, disconnected, undecodable
            reply = None
            why = repr(exc)
        else:
            why = f"publisher book {reply.reason}" if isinstance(reply, NoSnapshot) else ""
        if reply is None or isinstance(reply, NoSnapshot):
            self.snapshot_failures += 1
            self._ratelog(logging.INFO, f"snap {sync.venue} {sync.symbol}",
                          "bus: no snapshot for %s %s: %s", sync.venue, sync.symbol, why)
            remote.backoff_s = min(max(remote.backoff_s * 2, 0.1), 2.0)
            await asyncio.sleep(remote.backoff_s)  # a published snapshot may repair it meanwhile
            remote.requesting = False
            if sync.state is not _SYNCED:
                sync.snapshot_failed()  # the next delta asks again
            return
        remote.backoff_s = 0.0
        remote.requesting = False
        self.on_book(reply)
        if not remote.requesting and sync.state is not _SYNCED:
            sync.snapshot_failed()  # the reply was of no use (older than a break): ask again

    # -- NATS ---------------------------------------------------------------------------
    def _subjects(self, kind: str) -> list[str]:
        venues = [wire.token(v) for v in self.venues] if self.venues else ["*"]
        symbols = [wire.token(s) for s in self.symbols] if self.symbols else ["*"]
        return [f"{self.prefix}.{kind}.{v}.{s}" for v in venues for s in symbols]

    def _callback(
        self, decode: Callable[[bytes], Any], handle: Callable[[Any], None]
    ) -> Callable[[Msg], Any]:
        """A subscription's callback: count, decode (a bad message is counted, logged,
        dropped), handle."""

        async def cb(msg: Msg) -> None:
            self.messages += 1
            try:
                body = decode(msg.data)
            except _DECODE_ERRORS as exc:
                self._bad(msg, exc)
                return
            handle(body)

        return cb

    def _bad(self, msg: Msg, exc: Exception) -> None:
        self.bad_messages += 1
        self._ratelog(logging.WARNING, "bad", "bus: undecodable message on %s: %s", msg.subject, exc)

    async def start(self) -> None:
        """Connect (retrying forever), subscribe, start the stale-book sweep."""
        nc = await self._connect()
        kinds: list[tuple[str, Callable[[bytes], Any], Callable[[Any], None]]] = [
            (BOOK, wire.decode_book, self.on_book),
            (STATE, wire.decode_state, self.on_state),
        ]
        if self.trades:
            kinds.append((TRADE, wire.decode_trade, self._deliver))
        if self.quotes:
            kinds.append((QUOTE, wire.decode_quote, self._deliver))
        for kind, decode, handle in kinds:
            cb = self._callback(decode, handle)
            for subject in self._subjects(kind):
                await nc.subscribe(subject, cb=cb)
        await nc.flush()
        self._housekeeper = asyncio.get_running_loop().create_task(self._housekeeping())
        log.info("bus: detecting on %s (%s)", self.server_name, self.prefix)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            for opp in self.detector.expire(time.time_ns()):
                self._emit(opp)
            if self._paper is not None:
                self._paper.run_due()

    def _disconnected(self) -> None:
        log.warning("bus: disconnected from NATS; books unsynced until reconnected")
        now = time.time_ns()
        for remote in self._remote.values():
            if remote.sync.state is _SYNCED:
                remote.sync.invalidate("bus disconnected", now)

    def _reconnected(self) -> None:
        log.info("bus: reconnected; asking for %d snapshots", len(self._remote))
        for remote in self._remote.values():
            if remote.sync.state is not _SYNCED:
                self._request(remote)

    async def close(self) -> None:
        self._closing = True
        if self._housekeeper is not None:
            self._housekeeper.cancel()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._housekeeper is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeper
        await self._close_nats()

    async def run(self, duration_s: float | None = None) -> None:
        """Run until ``duration_s`` passes, or forever; cancel to stop."""
        try:
            await self.start()
            if duration_s is None:
                await asyncio.Event().wait()
            else:
                await asyncio.sleep(duration_s)
        finally:
            await self.close()

    # -- public state -------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        return {
            "connected": self.connected,
            "servers": self.servers,
            "messages": self.messages,
            "bad_messages": self.bad_messages,
            "updates": self.updates,
            "snapshots": self.snapshots,
            "snapshot_requests": self.snapshot_requests,
            "snapshot_failures": self.snapshot_failures,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "books": {
                f"{v} {s}": {
                    "state": sync.state.name,
                    "reason": sync.reason,
                    "gaps": sync.gaps,
                    "resyncs": sync.resyncs,
                    "seq": sync.last_id,
                }
                for (v, s), sync in sorted(self.syncs.items())
            },
            "latency": {
                "bus_us": self.bus_latency.summary().as_dict(),
                "venue_recv_to_here_us": self.recv_latency.summary().as_dict(),
            },
            "opportunities": {"opened": self.opened, "closed": self.closed},
            "paper": self.paper.summary() if self.paper is not None else None,
            "detector": self.detector.summary(),
        }
