"""``arbwire record``: raw frames and normalized events to disk, never in the hot path's way.

What the hot path does for the recorder is one ``deque`` append per item:

* every link's ``tap`` (raw traffic: frames received with their receive time,
  frames sent, REST responses, link opens) appends to that venue's bounded
  drop-oldest queue (``BoundedSink``);
* the engine hands every event (trades, quotes, opportunities, ...) to the
  recorder's own queue through ``engine.sinks``, and a wrapper around each
  feed's ``on_book`` adds the book updates as they are applied (a snapshot as
  the whole book once aligned, so the Parquet rows rebuild the exact book).

Consumers on the loop only batch; compression (zstd) and Parquet encoding run in
one worker thread. A queue that overflows drops its oldest items and counts them;
raw drops are also written into the recording as ``drop`` records, so a replay
knows where the hole is. ``Recorder.stats()`` reports everything, and
``recording.json`` in the output folder keeps it after the run.

Files::

    <out>/raw/<venue>/<venue>-<start>-<part>.raw.zst     (see rawfile.py)
    <out>/parquet/type=<t>/venue=<v>/symbol=<s>/date=<d>/part-*.parquet (see parquet.py)
    <out>/recording.json                                  (stats, written on close)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import arbwire
from arbwire.model import BookUpdate
from arbwire.record import parquet
from arbwire.record.rawfile import RawHeader, RawItem, RawWriter
from arbwire.sinks import BoundedSink
from arbwire.sync import BookSync
from arbwire.venues.registry import SECRET_OPTIONS

if TYPE_CHECKING:
    from arbwire.engine import Engine
    from arbwire.feed import VenueFeed

log = logging.getLogger("arbwire.record")


@dataclass(frozen=True, slots=True)
class RecorderOptions:
    raw_queue: int = 200_000  # records per venue queue before the oldest are dropped
    event_queue: int = 200_000  # events before the oldest are dropped
    rotate_bytes: int = 256 << 20  # a raw file this large (compressed) is closed, the next opened
    rotate_s: float = 3600.0  # and one this old (by recorded time)
    block_records: int = 4096  # records per zstd frame
    block_bytes: int = 1 << 20  # payload bytes per zstd frame
    flush_s: float = 1.0  # a partly filled frame is written after this long
    zstd_level: int = 3
    parquet: bool = True
    parquet_rows: int = 250_000  # buffered rows (all partitions) that trigger a Parquet flush
    parquet_flush_s: float = 60.0  # and the age of the oldest buffered row that does
    yield_every: int = 512  # consumers give the loop back after this many items


class _RawSink(BoundedSink[RawItem]):
    """One venue's raw traffic: batched into zstd frames by the recorder's worker."""

    def __init__(self, recorder: Recorder, writer: RawWriter) -> None:
        super().__init__(f"raw:{writer.header.venue}", self._take, recorder.options.raw_queue)
        self.recorder = recorder
        self.writer = writer
        self.block: list[RawItem] = []
        self.block_bytes = 0
        self.block_since = 0.0
        self.noted_drops = 0
        self._count = 0

    def tap(self, kind: str, payload: bytes, time_ns: int, url: str) -> None:
        """``Link.tap``: called on the hot path, only appends."""
        self.put((kind, time_ns, payload, url))

    def _take(self, item: RawItem) -> Awaitable[None] | None:
        block = self.block
        if not block:
            self.block_since = time.monotonic()
        if self.dropped != self.noted_drops:
            block.append(("drop", item[1], str(self.dropped - self.noted_drops).encode(), ""))
            self.noted_drops = self.dropped
        block.append(item)
        self.block_bytes += len(item[2])
        o = self.recorder.options
        if len(block) >= o.block_records or self.block_bytes >= o.block_bytes:
            return self.flush()
        self._count += 1
        if self._count % o.yield_every == 0:
            return asyncio.sleep(0)
        return None

    def flush(self) -> Awaitable[None] | None:
        if not self.block:
            return None
        block, self.block, self.block_bytes = self.block, [], 0
        return self.recorder._submit(self.writer.write_block, block)


class Recorder(BoundedSink[Any]):
    """Raw recordings per venue plus normalized events to Parquet.

    It is itself the engine's event sink: put it in ``engine.sinks`` (``attach``
    does) and ``Engine.run`` starts it and, on stop, drains and closes it, which
    also closes the raw queues and the files. Outside an engine, call ``start()``
    inside the running loop and ``await close()``.
    """

    def __init__(self, out_dir: str | Path, options: RecorderOptions | None = None) -> None:
        self.options = options or RecorderOptions()
        super().__init__("recorder", self._take_event, self.options.event_queue)
        self.out_dir = Path(out_dir)
        self.raw: dict[str, _RawSink] = {}
        self.started_ns = time.time_ns()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: set[asyncio.Future[Any]] = set()
        self._buffers: dict[tuple[str, str, str, str], list[Any]] = {}
        self._rows = 0
        self._since = 0.0
        self._seq = 0
        self._count = 0
        self._ticker: asyncio.Task[None] | None = None
        self._closed = False
        self.parquet_files: list[Path] = []
        self.parquet_rows = 0
        self.errors: list[str] = []

    # -- wiring -------------------------------------------------------------------------
    def add_venue(
        self,
        venue: str,
        registry: str,
        symbols: list[str],
        options: Mapping[str, Any] | None = None,
        ws_url: str = "",
        rest_url: str = "",
    ) -> Callable[[str, bytes, int, str], None]:
        """A raw recording for one venue link; returns the ``Link.tap`` callable."""
        header = RawHeader(
            venue=venue,
            registry=registry,
            symbols=list(symbols),
            options=dict(options or {}),
            ws_url=ws_url,
            rest_url=rest_url,
            created_ns=self.started_ns,
            writer=f"arbwire {arbwire.__version__}",
        )
        o = self.options
        writer = RawWriter(
            self.out_dir / "raw" / venue, header, rotate_bytes=o.rotate_bytes, rotate_s=o.rotate_s, level=o.zstd_level
        )
        sink = _RawSink(self, writer)
        self.raw[venue] = sink
        if self._task is not None:
            sink.start()
        return sink.tap

    def watch_feed(self, feed: VenueFeed) -> None:
        """Record ``feed``'s book updates as they are applied (wraps ``feed.on_book``)."""
        if not self.options.parquet:
            return
        inner = feed.on_book
        put = self.put

        def on_book(sync: BookSync, upd: BookUpdate) -> None:
            if upd.is_snapshot:  # the whole book as synced: snapshot plus aligned diffs
                put(sync.as_snapshot())
            else:
                put(upd)
            inner(sync, upd)

        feed.on_book = on_book

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self._task is not None:
            return
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="arbwire-recorder")
        super().start()
        for sink in self.raw.values():
            sink.start()
        self._ticker = asyncio.get_running_loop().create_task(self._tick())

    async def close(self) -> None:
        """Drain every queue, write what is buffered, close the files, write recording.json."""
        if self._closed:
            return
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for sink in self.raw.values():
            await sink.close()
            sink.flush()
        await super().close()
        self._flush_parquet()
        if self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)
        if self._pool is not None:
            for sink in self.raw.values():
                self._pool.submit(sink.writer.close)
            await asyncio.get_running_loop().run_in_executor(None, self._pool.shutdown, True)
        else:
            for sink in self.raw.values():
                sink.writer.close()
        self._write_manifest()
        dropped = self.dropped + sum(s.dropped for s in self.raw.values())
        if dropped:
            log.warning("recorder dropped %d items (queues full): see %s", dropped, self.out_dir / "recording.json")

    def _submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="arbwire-recorder")
        fut = loop.run_in_executor(self._pool, fn, *args)
        self._pending.add(fut)
        fut.add_done_callback(self._done)
        return fut

    def _done(self, fut: asyncio.Future[Any]) -> None:
        self._pending.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            exc = fut.exception()
            self.errors.append(f"{type(exc).__name__}: {exc}")
            log.error("recorder write failed: %s", exc)

    async def _tick(self) -> None:
        o = self.options
        while True:
            await asyncio.sleep(min(0.25, o.flush_s))
            now = time.monotonic()
            for sink in self.raw.values():
                if sink.block and now - sink.block_since >= o.flush_s:
                    sink.flush()
            if self._rows and now - self._since >= o.parquet_flush_s:
                self._flush_parquet()

    # -- normalized events ------------------------------------------------------------------
    def _take_event(self, event: Any) -> Awaitable[None] | None:
        kind = parquet.event_type(event)
        if kind is None or not self.options.parquet:
            return None
        key = parquet.partition_key(event, kind)
        buf = self._buffers.get(key)
        if buf is None:
            buf = self._buffers[key] = []
        if not self._rows:
            self._since = time.monotonic()
        buf.append(event)
        self._rows += parquet.rows_of(event, kind)
        if self._rows >= self.options.parquet_rows:
            return self._flush_parquet()
        self._count += 1
        if self._count % self.options.yield_every == 0:
            return asyncio.sleep(0)
        return None

    def _flush_parquet(self) -> asyncio.Future[Any] | None:
        if not self._buffers:
            return None
        buffers, self._buffers, self._rows = self._buffers, {}, 0
        self._seq += 1
        return self._submit(self._write_parquet, buffers, self._seq)

    def _write_parquet(self, buffers: dict[tuple[str, str, str, str], list[Any]], seq: int) -> None:
        root = self.out_dir / "parquet"
        for key, events in buffers.items():
            self.parquet_files.append(parquet.write_partition(root, key, events, seq))
            self.parquet_rows += sum(parquet.rows_of(e, key[0]) for e in events)

    # -- reporting --------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {
            "out": str(self.out_dir),
            "raw": {
                venue: {
                    "records": s.writer.records,
                    "bytes": s.writer.bytes,
                    "files": [str(p) for p in s.writer.paths],
                    "dropped": s.dropped,
                    "queued": len(s._queue) + len(s.block),
                }
                for venue, s in self.raw.items()
            },
            "events": {
                "delivered": self.delivered,
                "dropped": self.dropped,
                "parquet_files": len(self.parquet_files),
                "parquet_rows": self.parquet_rows,
            },
            "dropped": self.dropped + sum(s.dropped for s in self.raw.values()),
            "errors": list(self.errors),
        }

    def _write_manifest(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "recording.json").write_text(json.dumps(self.stats(), indent=2) + "\n")


def attach_recorder(engine: Engine, out_dir: str | Path, options: RecorderOptions | None = None) -> Recorder:
    """Record everything ``engine`` sees to ``out_dir``; call before ``engine.run``.

    Sets ``link.tap`` on every link (raw traffic), wraps every feed's ``on_book``
    (book updates) and adds the recorder to ``engine.sinks`` (trades, quotes,
    opportunities; and the recorder's life cycle: ``Engine.run`` starts it and
    closes it on stop).
    """
    recorder = Recorder(out_dir, options)
    enabled = [(name, v) for name, v in engine.config.venues.items() if v.enabled]
    by_session: dict[str, tuple[str, dict[str, Any]]] = {}
    for (name, vcfg), venue in zip(enabled, engine.feeds, strict=False):
        by_session[venue] = (name, {k: v for k, v in vcfg.options.items() if k not in SECRET_OPTIONS})
    for venue, link in engine.links.items():
        feed = engine.feeds[venue]
        session = feed.session
        registry, options = by_session.get(venue, (venue, {}))
        link.tap = recorder.add_venue(
            venue, registry, list(session.symbols), options, session.endpoints.ws_url, session.endpoints.rest_url
        )
        recorder.watch_feed(feed)
    engine.sinks.append(recorder)
    return recorder
