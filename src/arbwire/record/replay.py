"""Drive recorded traffic through the same ``VenueFeed`` the live engine uses.

REST snapshots found in a recording are handed to the book sync at the time they
were received, so the official snapshot+diff procedure runs exactly as it did
live. A book whose capture holds no usable snapshot stays unsynced: it is never
guessed.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import sys
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from arbwire.arb.detector import detector_from_config
from arbwire.arb.paper import Fill, paper_from_config
from arbwire.config import ArbConfig, PaperConfig
from arbwire.feed import VenueFeed
from arbwire.model import (
    BadFrame,
    BookUpdate,
    Event,
    FeedState,
    Opportunity,
    OpportunityEvent,
    Quote,
    Side,
    SyncState,
    Trade,
    VenueError,
)
from arbwire.record.importers import (
    CaptureError,
    Kind,
    Record,
    describe_cryptofeed,
    describe_hftbacktest,
    read_cryptofeed,
    read_hftbacktest,
)
from arbwire.record.rawfile import RawHeader, RawReader, RecordingError, is_recording
from arbwire.sync import BookSync
from arbwire.venues.base import Action, Endpoints, FetchSnapshot, Reconnect, Send, VenueSession
from arbwire.venues.registry import make_session

SnapshotSymbol = Callable[[Record], str | None]


def query_symbol(record: Record, *keys: str) -> str | None:
    """The venue's symbol named in a REST URL's query (``symbol=``, ``instId=``, ...)."""
    query = parse_qs(urlsplit(record.url).query)
    for key in keys:
        if key in query:
            return query[key][0]
    return None


def merge(*streams: Iterable[Record]) -> Iterator[Record]:
    """Records of several files of one session, in receive-time order."""
    return heapq.merge(*streams, key=lambda r: r.recv_ns)


def replay(
    feed: VenueFeed,
    records: Iterable[Record],
    snapshot_symbol: SnapshotSymbol,
    on_actions: Callable[[list[Action]], None] | None = None,
) -> int:
    """Feed every received frame and REST snapshot; returns the number of frames fed."""
    frames = 0
    for record in records:
        if record.kind is Kind.RECV:
            frames += 1
            actions = feed.on_frame(record.payload, record.recv_ns)
        elif record.kind is Kind.HTTP:
            symbol = snapshot_symbol(record)
            if symbol is None:
                continue
            try:
                actions = feed.on_snapshot(symbol, record.payload, record.recv_ns)
            except ValueError as exc:  # an unusable snapshot leaves the book unsynced
                feed.on_event(feed.session.bad_frame(f"snapshot: {exc}", record.payload, record.recv_ns))
                continue
        else:
            continue
        if actions and on_actions is not None:
            on_actions(actions)
    return frames


# -- whole replays: files -> sessions -> feeds -> detector -> emitted lines and a summary ---

FORMATS = ("arbwire", "hftbacktest", "cryptofeed")
EMITS = ("tops", "trades", "quotes", "opportunities", "fills")
_TIMER_NS = 500_000_000  # Link's timer period: session.on_timer in recorded time
_EXPIRE_NS = 250_000_000  # the engine's housekeeping period: detector.expire in recorded time


def venue_spec(name: str) -> tuple[str, dict[str, Any]]:
    """``"binance-usdm"`` -> ``("binance", {"futures": True})``; a registry name -> itself."""
    if name == "binance-usdm":
        return "binance", {"futures": True}
    return name, {}


def detect_format(path: str | Path) -> str:
    """arbwire (a zstd file), hftbacktest (gzip or ``<ns> <frame>`` lines) or cryptofeed."""
    path = Path(path)
    if is_recording(path):
        return "arbwire"
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError:
        return "cryptofeed"
    if head[:2] == b"\x1f\x8b":
        return "hftbacktest"
    ts, sep, rest = head.partition(b" ")
    if sep and ts.isdigit() and len(ts) >= 16 and rest[:1] in (b"{", b"["):
        return "hftbacktest"
    return "cryptofeed"


@dataclass
class SourceFile:
    """One input file: what it is, which stream it belongs to, what reading it gave."""

    path: Path
    format: str
    registry: str | None
    options: dict[str, Any]
    symbols: list[str]
    channel: str = "all"  # files of one stream in the same channel are chained; channels merge by time
    endpoints: Endpoints | None = None
    group: str = ""
    header: RawHeader | None = None
    records: int = 0
    error: str | None = None
    error_offset: int | None = None
    last_ns: int = 0

    def read(self) -> Iterator[Record]:
        """The file's records; a break ends them and is kept in ``error`` (never raised)."""
        try:
            if self.format == "arbwire":
                reader = RawReader(self.path)
                for rec in reader:
                    self.records += 1
                    self.last_ns = rec.recv_ns
                    yield rec
            else:
                reader_fn = read_cryptofeed if self.format == "cryptofeed" else read_hftbacktest
                for rec in reader_fn(self.path):
                    self.records += 1
                    self.last_ns = rec.recv_ns
                    yield rec
        except RecordingError as exc:
            self.error = str(exc)
            self.error_offset = exc.offset
        except CaptureError as exc:
            self.error = f"{exc}; read {self.records} records before it"
        except (EOFError, OSError, zlib.error, UnicodeDecodeError) as exc:
            self.error = (
                f"{self.path}: {type(exc).__name__}: {exc} (after {self.records} records, "
                f"last receive time {self.last_ns})"
            )

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": str(self.path), "format": self.format, "stream": self.group,
                               "records": self.records}
        if self.error:
            out["error"] = self.error
            if self.error_offset is not None:
                out["error_offset"] = self.error_offset
        return out


def open_source(path: str | Path, fmt: str | None = None, venue: str | None = None) -> SourceFile:
    """Describe ``path`` (format auto-detected unless given); ``venue`` names the venue of a
    capture that does not (hftbacktest) or overrides the guess. Raises RecordingError for an
    arbwire file whose header can't be read."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (known: {', '.join(FORMATS)})")
    override = venue_spec(venue) if venue else None
    if fmt == "arbwire":
        reader = RawReader(path)
        reader._fh.close()
        h = reader.header
        return SourceFile(path, fmt, h.registry, dict(h.options), list(h.symbols), "all",
                          h.endpoints(), f"arbwire:{h.venue}", h)
    info = describe_cryptofeed(path) if fmt == "cryptofeed" else describe_hftbacktest(path)
    registry, options = info.registry, dict(info.options)
    if override is not None:
        registry = override[0]
        options = {**{k: v for k, v in options.items() if k != "futures"}, **override[1]}
    name = info.source_name if fmt == "cryptofeed" and override is None else None
    group = f"{fmt}:{name or (registry or '?') + ('-usdm' if options.get('futures') else '')}"
    channel = info.channel if fmt == "cryptofeed" else "all"
    return SourceFile(path, fmt, registry, options, list(info.symbols), channel, None, group)


def snapshot_matcher(session: VenueSession) -> SnapshotSymbol:
    """Which symbol a recorded REST response is for: the URL the session would fetch, else
    the venue's name of a symbol in the URL's query, else the session's only symbol."""
    urls: dict[str, str] = {}
    names: dict[str, str] = {}
    url_of = getattr(session, "snapshot_url", None)
    venue_names = getattr(session, "names", None)
    for symbol in session.symbols:
        if url_of is not None:
            with contextlib.suppress(Exception):
                urls[url_of(symbol)] = symbol
        if venue_names is not None:
            with contextlib.suppress(Exception):
                names[venue_names.to_venue(symbol).lower()] = symbol
        names.setdefault(symbol.lower(), symbol)
    only = session.symbols[0] if len(session.symbols) == 1 else None

    def match(record: Record) -> str | None:
        symbol = urls.get(record.url)
        if symbol is not None:
            return symbol
        if record.url:
            for values in parse_qs(urlsplit(record.url).query).values():
                for value in values:
                    symbol = names.get(value.lower())
                    if symbol is not None:
                        return symbol
        return only

    return match


class Emitter:
    """Where replay output lines go: JSON lines (a file or stdout) or Parquet files."""

    def __init__(self, out: str | Path | None = None, *, stream: IO[bytes] | None = None) -> None:
        self.path = Path(out) if out else None
        self.parquet = self.path is not None and self.path.suffix == ".parquet"
        self._rows: dict[str, list[Any]] = {}
        self._fh: IO[bytes] | None = None
        self._own = False
        if not self.parquet:
            if self.path is not None:
                self._fh = open(self.path, "wb")  # noqa: SIM115 - closed in close()
                self._own = True
            else:
                self._fh = stream if stream is not None else sys.stdout.buffer
        self._encode = msgspec.json.Encoder().encode
        self.lines = 0
        self.files: list[str] = []

    def emit(self, kind: str, row: dict[str, Any], event: Any = None) -> None:
        self.lines += 1
        if self._fh is not None:
            self._fh.write(self._encode(row) + b"\n")
        else:
            self._rows.setdefault(kind, []).append(row if event is None else event)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            if self._own:
                self._fh.close()
            return
        if self.path is None:
            return
        from arbwire.record import parquet as pqt

        kinds = [k for k, rows in self._rows.items() if rows]
        for kind in kinds:
            rows = self._rows[kind]
            if kind == "top":
                table = pqt.top_table(rows)
            elif kind == "fill":
                table = pqt.pa.Table.from_pylist(rows)
            else:
                table = pqt.BUILDERS[kind](rows)
                if kind != "opportunity":
                    table = table.add_column(0, "symbol", pqt.pa.array([r.symbol for r in rows]))
                    table = table.add_column(0, "venue", pqt.pa.array([r.venue for r in rows]))
                else:
                    table = table.add_column(0, "symbol", pqt.pa.array([r.symbol for r in rows]))
            path = self.path if len(kinds) == 1 else self.path.with_suffix(f".{kind}.parquet")
            pqt.pq.write_table(table, path, compression="zstd")
            self.files.append(str(path))


def _trade_row(t: Trade) -> dict[str, Any]:
    return {"type": "trade", "venue": t.venue, "symbol": t.symbol, "side": "buy" if t.side is Side.BUY else "sell",
            "price": t.price, "size": t.size, "trade_id": t.trade_id, "venue_ts_ns": t.venue_ts_ns,
            "recv_ns": t.recv_ns}


def _quote_row(q: Quote) -> dict[str, Any]:
    return {"type": "quote", "venue": q.venue, "symbol": q.symbol, "bid": q.bid, "bid_size": q.bid_size,
            "ask": q.ask, "ask_size": q.ask_size, "update_id": q.update_id, "venue_ts_ns": q.venue_ts_ns,
            "recv_ns": q.recv_ns}


def _fill_row(f: Fill) -> dict[str, Any]:
    return {"type": "fill", **msgspec.structs.asdict(f), "latency_ns": f.latency_ns}


def _opportunity_row(o: Opportunity) -> dict[str, Any]:
    return {"type": "opportunity", **msgspec.structs.asdict(o), "event": o.event.value}


class Stream:
    """One venue's recorded session replayed: its files, its session and feed, its counters."""

    def __init__(self, replayer: Replayer, files: list[SourceFile], session: VenueSession) -> None:
        self.replayer = replayer
        self.files = files
        self.session = session
        self.venue = session.name
        self.feed = VenueFeed(session, max_depth=replayer.max_depth, on_book=self._on_book, on_event=self._on_event)
        self.match = snapshot_matcher(session)
        self.records = self.frames = self.sent = self.opens = 0
        self.snapshots_served = self.snapshots_unmatched = self.snapshots_bad = 0
        self.snapshot_requests = self.reconnect_requests = self.recorder_drops = 0
        self.book_updates = self.trades = self.quotes = self.bad_frames = 0
        self.venue_errors: list[str] = []
        self._last_timer = 0
        # connections a venue opens beside its book link (HTX /ws for bbo and trades): their
        # frames decode through this session all the same, but their opening resets nothing
        own = urlsplit(session.url()).path
        self._companion_paths = {urlsplit(c.url()).path for c in session.companions()} - {own}
        self.companion_opens = 0
        emit = replayer.emit
        self._tops = "tops" in emit
        self._trades = "trades" in emit
        self._quotes = "quotes" in emit

    def records_in_order(self) -> Iterator[Record]:
        channels: dict[str, list[SourceFile]] = {}
        for f in self.files:
            channels.setdefault(f.channel, []).append(f)
        chains = [itertools.chain.from_iterable(f.read() for f in fs) for fs in channels.values()]
        if len(chains) == 1:
            return iter(chains[0])
        return merge(*chains)

    # -- callbacks from the feed (the same hot path as live) -----------------------------------
    def _on_book(self, sync: BookSync, upd: BookUpdate) -> None:
        self.book_updates += 1
        r = self.replayer
        if self._tops:
            bid, ask = sync.book.top()
            r.out.emit("top", {
                "type": "top", "venue": sync.venue, "symbol": sync.symbol, "seq": sync.last_id,
                "bid": bid[0] if bid else None, "bid_size": bid[1] if bid else None,
                "ask": ask[0] if ask else None, "ask_size": ask[1] if ask else None,
                "recv_ns": upd.recv_ns,
            })
        for opp in r.detector.check(sync, upd.recv_ns):
            r.publish(opp)

    def _on_event(self, event: Event) -> None:
        kind = type(event)
        r = self.replayer
        if kind is Trade:
            self.trades += 1
            if self._trades:
                r.out.emit("trade", _trade_row(event), event)  # type: ignore[arg-type]
        elif kind is Quote:
            self.quotes += 1
            if self._quotes:
                r.out.emit("quote", _quote_row(event), event)  # type: ignore[arg-type]
        elif kind is FeedState:
            if event.state is not SyncState.SYNCED:  # type: ignore[union-attr]
                sync = self.feed.syncs.get(event.symbol)  # type: ignore[union-attr]
                if sync is not None:
                    for opp in r.detector.on_unsynced(sync, event.recv_ns):  # type: ignore[union-attr]
                        r.publish(opp)
        elif kind is BadFrame:
            self.bad_frames += 1
        elif kind is VenueError and len(self.venue_errors) < 100:
            self.venue_errors.append(f"{event.symbol}: {event.code} {event.message}")  # type: ignore[union-attr]

    def _actions(self, actions: Iterable[Any]) -> None:
        for a in actions:
            kind = type(a)
            if kind is FetchSnapshot:
                self.snapshot_requests += 1
            elif kind is Reconnect:
                self.reconnect_requests += 1
            # Send: what the session sent live is in the recording ("sent"); nothing to do

    # -- one record -----------------------------------------------------------------------------
    def feed_record(self, rec: Record) -> None:
        self.records += 1
        kind = rec.kind
        feed = self.feed
        ns = rec.recv_ns
        if kind is Kind.RECV:
            self.frames += 1
            if ns - self._last_timer >= _TIMER_NS:
                if self._last_timer:
                    self._timer(ns)
                self._last_timer = ns
            actions = feed.on_frame(rec.payload, ns)
            if actions:
                self._actions(actions)
        elif kind is Kind.HTTP:
            symbol = self.match(rec)
            if symbol is None:
                self.snapshots_unmatched += 1
                return
            try:
                actions = feed.on_snapshot(symbol, rec.payload, ns)
            except ValueError as exc:  # an unusable snapshot leaves the book unsynced
                self.snapshots_bad += 1
                feed.on_event(feed.session.bad_frame(f"snapshot: {exc}", rec.payload, ns))
                feed.sync_for(symbol).snapshot_failed()
                return
            self.snapshots_served += 1
            if actions:
                self._actions(actions)
        elif kind is Kind.OPEN:
            if self._companion_paths and urlsplit(rec.url).path in self._companion_paths:
                self.companion_opens += 1
                return
            self.opens += 1
            if self.opens > 1:
                feed.link_lost("link lost", ns)
            self._actions(self.session.on_open(ns))
            self._last_timer = ns
        elif kind is Kind.SENT:
            self.sent += 1
        elif kind is Kind.DROP:
            with contextlib.suppress(ValueError):
                self.recorder_drops += int(rec.payload or b"0")

    def _timer(self, now_ns: int) -> None:
        out = self.session.on_timer(now_ns, self.feed.last_recv_ns)
        if out:
            for item in out:
                if isinstance(item, (Send, FetchSnapshot, Reconnect)):
                    self._actions([item])
                else:
                    self.feed.on_event(item)

    def summary(self) -> dict[str, Any]:
        books = {}
        for symbol, sync in self.feed.syncs.items():
            bid, ask = sync.book.top() if sync.synced else (None, None)
            books[symbol] = {
                "state": sync.state.name,
                "reason": sync.reason,
                "last_id": sync.last_id,
                "applied": sync.applied,
                "gaps": sync.gaps,
                "resyncs": sync.resyncs,
                "checksums_ok": sync.checksums_ok,
                "checksums_failed": sync.checksums_failed,
                "crossed": sync.crossed,
                "bid": bid[0] if bid else None,
                "ask": ask[0] if ask else None,
            }
        return {
            "files": [str(f.path) for f in self.files],
            "symbols": list(self.session.symbols),
            "records": self.records,
            "frames": self.frames,
            "sent": self.sent,
            "opens": self.opens,
            "companion_opens": self.companion_opens,
            "snapshots_served": self.snapshots_served,
            "snapshots_unmatched": self.snapshots_unmatched,
            "snapshots_bad": self.snapshots_bad,
            "snapshot_requests": self.snapshot_requests,
            "reconnect_requests": self.reconnect_requests,
            "recorder_drops": self.recorder_drops,
            "book_updates": self.book_updates,
            "trades": self.trades,
            "quotes": self.quotes,
            "bad_frames": self.bad_frames,
            "venue_errors": self.venue_errors,
            "books": books,
        }


def _tag(stream: Stream) -> Iterator[tuple[Stream, Record]]:
    for rec in stream.records_in_order():
        yield stream, rec


class Replayer:
    """Replays recordings through the live code: venue sessions, ``VenueFeed``, ``ArbDetector``.

    Streams of several venues are merged by receive time; several files of one venue
    continue one stream. ``speed`` paces the replay at that multiple of recorded time
    (None: as fast as possible).
    """

    def __init__(
        self,
        *,
        emit: Iterable[str] = (),
        out: Emitter | None = None,
        arb: ArbConfig | None = None,
        fees: Mapping[str, float] | None = None,
        speed: float | None = None,
        max_depth: int = 5000,
        paper: PaperConfig | None = None,
    ) -> None:
        self.emit = frozenset(emit)
        unknown = self.emit - set(EMITS)
        if unknown:
            raise ValueError(f"unknown --emit {sorted(unknown)} (known: {', '.join(EMITS)})")
        self.out = out or Emitter()
        arb = arb or ArbConfig()
        self.detector = detector_from_config(arb, fees)
        # every opened opportunity on paper, executed in recorded time: the books it meets are
        # the ones just before the first frame received after its latency
        self.paper = paper_from_config(paper or PaperConfig(), self.detector.fees)
        if self.paper is not None and "fills" in self.emit:
            self.paper.on_fill = lambda fill: self.out.emit("fill", _fill_row(fill))
        if speed is not None and speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self.max_depth = max_depth
        self.files: list[SourceFile] = []
        self.streams: list[Stream] = []
        self.skipped: list[dict[str, Any]] = []
        self.records = 0
        self.first_ns = 0
        self.last_ns = 0
        self.opened = self.changed = self.closed = 0
        self.best_net_bps: float | None = None
        self._episodes: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.episodes: list[dict[str, Any]] = []
        self._emit_opps = "opportunities" in self.emit

    # -- inputs -------------------------------------------------------------------------------
    def add_files(self, files: Iterable[SourceFile]) -> None:
        """Group files into streams (one per venue) and build each stream's session."""
        groups: dict[str, list[SourceFile]] = {}
        for f in files:
            self.files.append(f)
            groups.setdefault(f.group, []).append(f)
        for group, members in groups.items():
            registry = next((f.registry for f in members if f.registry), None)
            options: dict[str, Any] = {}
            symbols: list[str] = []
            endpoints = next((f.endpoints for f in members if f.endpoints), None)
            for f in members:
                for k, v in f.options.items():
                    options.setdefault(k, v)
                for s in f.symbols:
                    if s not in symbols:
                        symbols.append(s)
            paths = [str(f.path) for f in members]
            if registry is None:
                self.skipped.append({"stream": group, "files": paths, "reason": "venue unknown: use --venue"})
                continue
            if not symbols:
                self.skipped.append({"stream": group, "files": paths, "reason": "no symbols found in the capture"})
                continue
            try:
                session = make_session(registry, symbols, endpoints, options)
            except (ValueError, TypeError) as exc:
                self.skipped.append({"stream": group, "files": paths, "reason": str(exc)})
                continue
            stream = Stream(self, members, session)
            self.detector.register_all(stream.feed.syncs.values())
            self.streams.append(stream)

    def add_paths(self, paths: Iterable[str | Path], fmt: str | None = None, venue: str | None = None) -> None:
        """Describe and add files; an arbwire file whose header is unreadable is reported as a
        file error. With ``venue``, arbwire recordings of other venues are left out."""
        files = []
        for p in paths:
            try:
                f = open_source(p, fmt, venue)
            except RecordingError as exc:
                f = SourceFile(Path(p), "arbwire", None, {}, [], group=f"broken:{p}")
                f.error, f.error_offset = str(exc), exc.offset
                self.files.append(f)
                continue
            if venue and f.header is not None and venue not in (f.header.venue, f.header.registry):
                self.skipped.append({"stream": f.group, "files": [str(p)], "reason": f"not venue {venue}"})
                continue
            files.append(f)
        self.add_files(files)

    # -- running ------------------------------------------------------------------------------
    def publish(self, opp: Opportunity) -> None:
        ev = opp.event
        key = (opp.symbol, opp.buy_venue, opp.sell_venue)
        if ev is OpportunityEvent.OPENED:
            self.opened += 1
            if self.paper is not None:
                self.paper.on_opportunity(opp)
            self._episodes[key] = {
                "symbol": opp.symbol, "buy_venue": opp.buy_venue, "sell_venue": opp.sell_venue,
                "opened_ns": opp.opened_ns, "closed_ns": None, "lifetime_ns": None,
                "buy_price": opp.buy_price, "sell_price": opp.sell_price, "size": opp.size,
                "net_bps": opp.net_bps, "profit": opp.profit,
                "max_net_bps": opp.net_bps, "max_profit": opp.profit, "changes": 0,
            }
        else:
            ep = self._episodes.get(key)
            if ev is OpportunityEvent.CHANGED:
                self.changed += 1
            else:
                self.closed += 1
            if ep is not None:
                if ev is OpportunityEvent.CHANGED:
                    ep["changes"] += 1
                if opp.net_bps > ep["max_net_bps"]:
                    ep["max_net_bps"] = opp.net_bps
                if Decimal(opp.profit) > Decimal(ep["max_profit"]):
                    ep["max_profit"] = opp.profit
                if ev is OpportunityEvent.CLOSED:
                    ep["closed_ns"] = opp.recv_ns
                    ep["lifetime_ns"] = opp.lifetime_ns
                    self.episodes.append(self._episodes.pop(key))
        if ev is not OpportunityEvent.CLOSED and (self.best_net_bps is None or opp.net_bps > self.best_net_bps):
            self.best_net_bps = opp.net_bps
        if self._emit_opps:
            self.out.emit("opportunity", _opportunity_row(opp), opp)

    def run(self) -> dict[str, Any]:
        """Replay everything added; returns the summary (also after a broken file)."""
        tagged = [_tag(s) for s in self.streams]
        merged: Iterable[tuple[Stream, Record]] = (
            tagged[0] if len(tagged) == 1 else heapq.merge(*tagged, key=lambda t: t[1].recv_ns)
        )
        speed = self.speed
        wall0 = 0.0
        last_expire = 0
        detector = self.detector
        paper = self.paper
        try:
            for stream, rec in merged:
                ns = rec.recv_ns
                if not self.first_ns:
                    self.first_ns = ns
                    wall0 = time.monotonic()
                if ns > self.last_ns:
                    self.last_ns = ns
                self.records += 1
                if speed is not None:
                    delay = (ns - self.first_ns) / 1e9 / speed - (time.monotonic() - wall0)
                    if delay > 0:
                        time.sleep(delay)
                if self.last_ns - last_expire >= _EXPIRE_NS:
                    if last_expire:
                        for opp in detector.expire(self.last_ns):
                            self.publish(opp)
                    last_expire = self.last_ns
                if paper is not None and paper.pending and paper.pending[0][0] <= ns:
                    paper.run_due(ns, detector.syncs)
                stream.feed_record(rec)
        finally:
            self.out.close()
        return self.summary()

    # -- results ------------------------------------------------------------------------------
    @property
    def errors(self) -> list[str]:
        return [f.error for f in self.files if f.error]

    def summary(self) -> dict[str, Any]:
        open_now = []
        for ep in self._episodes.values():
            ep = dict(ep)
            ep["lifetime_ns"] = self.last_ns - ep["opened_ns"]
            ep["open_at_end"] = True
            open_now.append(ep)
        episodes = self.episodes + open_now
        total = sum((Decimal(ep["max_profit"]) for ep in episodes), Decimal(0))
        frames = sum(s.frames for s in self.streams)
        return {
            "type": "summary",
            "ok": not self.errors,
            "records": self.records,
            "frames": frames,
            "first_ns": self.first_ns,
            "last_ns": self.last_ns,
            "recorded_s": round((self.last_ns - self.first_ns) / 1e9, 3) if self.records else 0.0,
            "files": [f.describe() for f in self.files],
            "venues": {s.venue: s.summary() for s in self.streams},
            "opportunities": {
                "opened": self.opened,
                "changed": self.changed,
                "closed": self.closed,
                "open_at_end": len(open_now),
                "best_net_bps": self.best_net_bps,
                "expected_profit": str(total),
                "mean_lifetime_ms": round(
                    sum(ep["lifetime_ns"] for ep in self.episodes) / len(self.episodes) / 1e6, 3
                ) if self.episodes else None,
                "episodes": episodes,
            },
            "paper": self.paper.summary() if self.paper is not None else None,
            "skipped": self.skipped,
            "errors": self.errors,
            "output": {"lines": self.out.lines, "files": self.out.files},
        }
