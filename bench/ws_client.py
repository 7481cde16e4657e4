"""Benchmark clients in the project's venv, one per process: arbwire's engine or a bare picows loop.

Each connects to ``bench/replay_server.py``, receives ``--count`` frames and prints one
JSON line: frames, wall seconds and process CPU seconds from the first frame to the last
(``time.process_time``, all threads of this process), and, with ``--stamped``, the
server-send -> detector-done latency of every frame read from the frame's ``ts`` stamp.

* ``arbwire``: the real ``Engine`` (one Binance link, the venue's REST snapshot, book
  sync, detector, sinks), its endpoints pointed at the server. ``--other-book FILE``
  registers a second venue's book for the same symbol (a static copy of a snapshot) so
  the detector really compares two books on every update, as ``bench/pipeline.py``
  does. The hook wraps ``VenueFeed.on_frame`` (the one hot path the link calls): it
  returns after the detector ran.
* ``picows``: a picows listener that counts frames and does nothing else (the floor).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import ssl
import sys
import time
from array import array
from typing import Any

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

STAMP_END = 25
WARMUP = 1000  # frames whose latency is not counted: connection and first sync
WARMUP_DEPTH = 100


def latency_summary(samples: array) -> dict[str, Any]:
    """Percentiles (µs) of ns samples, and the median of the first and last fifth: a
    client that can't keep up shows a last fifth far above the first."""
    n = len(samples)
    if not n:
        return {"n": 0}
    s = sorted(samples)

    def pct(p: float, xs: list[int] = s) -> float:
        return round(xs[min(len(xs) - 1, int(len(xs) * p / 100))] / 1000, 1)

    fifth = max(1, n // 5)
    return {
        "n": n,
        "p50_us": pct(50),
        "p90_us": pct(90),
        "p99_us": pct(99),
        "p99.9_us": pct(99.9),
        "max_us": round(s[-1] / 1000, 1),
        "first_fifth_p50_us": pct(50, sorted(samples[:fifth])),
        "last_fifth_p50_us": pct(50, sorted(samples[-fifth:])),
    }


class Counter:
    """First/last frame times and, when stamped, per-frame latency samples."""

    def __init__(self, count: int, stamped: bool) -> None:
        self.count = count
        self.stamped = stamped
        self.n = 0
        self.wall0 = self.wall1 = 0.0
        self.cpu0 = self.cpu1 = 0.0
        self.lat_all = array("q")
        self.lat_depth = array("q")
        self.own_all = array("q")  # arbwire: frame callback -> detector done (its own share)
        self.own_depth = array("q")
        self.skipped_unsynced = 0
        self.ru0: Any = None
        self.ru1: Any = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def tick(self) -> None:
        self.n += 1
        if self.n == 1:
            self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
            self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        if self.n == self.count:
            self.wall1, self.cpu1 = time.perf_counter(), time.process_time()
            self.ru1 = resource.getrusage(resource.RUSAGE_SELF)
            if not self.done.done():
                self.done.set_result(None)

    def result(self, kind: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        n = self.n
        wall = (self.wall1 or time.perf_counter()) - self.wall0 if n else 0.0
        cpu = (self.cpu1 or time.process_time()) - self.cpu0 if n else 0.0
        out: dict[str, Any] = {
            "client": kind,
            "frames": n,
            "expected": self.count,
            "complete": n >= self.count,
            "wall_s": round(wall, 4),
            "cpu_s": round(cpu, 4),
            "msgs_per_s": round((n - 1) / wall, 1) if n > 1 and wall > 0 else 0.0,
            "cpu_us_per_msg": round(cpu * 1e6 / (n - 1), 3) if n > 1 else 0.0,
        }
        if self.ru0 is not None and self.ru1 is not None:
            # waits for data (voluntary) and preemptions by other processes (involuntary)
            out["ctx_switches"] = {"voluntary": self.ru1.ru_nvcsw - self.ru0.ru_nvcsw,
                                   "involuntary": self.ru1.ru_nivcsw - self.ru0.ru_nivcsw}
        if self.stamped:
            out["latency_all"] = latency_summary(self.lat_all[WARMUP:])
            out["latency_depth"] = latency_summary(self.lat_depth[WARMUP_DEPTH:])
            if self.own_all:
                out["own_all"] = latency_summary(self.own_all[WARMUP:])
                out["own_depth"] = latency_summary(self.own_depth[WARMUP_DEPTH:])
            out["warmup_frames"] = WARMUP
            out["skipped_unsynced"] = self.skipped_unsynced
        if extra:
            out.update(extra)
        return out


def book_loop() -> str:
    """Which book arbwire holds: "c" (the ``arbwire._book`` sides) or python."""
    from arbwire import book

    return str(getattr(book, "IMPLEMENTATION", "python"))


def _client_context(ca: str | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=ca) if ca else None


# -- the floor: picows, nothing else --------------------------------------------------------------
class _Floor(WSListener):
    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self.tick = counter.tick
        self.lat = counter.lat_all.append if counter.stamped else None
        self.lat_depth = counter.lat_depth.append

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT or kind is WSMsgType.BINARY:
            if self.lat is not None:  # stamped: read the send time and the stream name, nothing else
                payload = frame.get_payload_as_bytes()
                lat = time.time_ns() - int(payload[6:STAMP_END])
                self.lat(lat)
                if b"@depth" in payload[STAMP_END:STAMP_END + 40]:  # the same frames as arbwire's depth
                    self.lat_depth(lat)
            self.tick()
        elif kind is WSMsgType.CLOSE:
            transport.disconnect()


def _spin_forever() -> None:
    """The floor's busy polling: the same self-rescheduling callback as arbwire.runtime.BusyPoll."""
    loop = asyncio.get_running_loop()

    def spin() -> None:
        loop.call_soon(spin)

    loop.call_soon(spin)


async def run_picows(args: argparse.Namespace) -> dict[str, Any]:
    counter = Counter(args.count, args.stamped)
    if args.busy_poll:
        _spin_forever()
    transport, _ = await ws_connect(lambda: _Floor(counter), args.url, ssl_context=_client_context(args.ca),
                                    max_frame_size=64 << 20)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(counter.done, args.timeout)
    transport.disconnect()
    return counter.result("picows")


# -- arbwire: the real engine ---------------------------------------------------------------------
async def run_arbwire(args: argparse.Namespace) -> dict[str, Any]:
    from arbwire.config import ArbConfig, Config, LinkConfig, RuntimeConfig, VenueConfig
    from arbwire.engine import Engine
    from arbwire.model import BookUpdate
    from arbwire.sync import BookSync, SequenceRule

    base, _, _ = args.url.partition("/stream")
    config = Config(
        venues={"binance": VenueConfig(symbols=["ETH-USDT"], ws_url=base, rest_url=args.rest)},
        arb=ArbConfig(max_age_ms=1e12),  # the static second book never goes stale
        link=LinkConfig(dead_after_s=60.0),
        log_level="WARNING",
        runtime=RuntimeConfig(busy_poll=args.busy_poll),
        check_instruments=False,
    )
    if args.no_hdr:  # diagnostic: latency samples are dropped instead of folded into HDR histograms
        from arbwire import latency as _latency

        init = _latency.Recorder.__init__

        def no_samples(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            self.add = lambda value: None

        _latency.Recorder.__init__ = no_samples  # type: ignore[method-assign]
        _latency.Recorder.fold = lambda self: None  # type: ignore[method-assign]
    engine = Engine(config, ssl_context=_client_context(args.ca))
    if args.other_book:
        import msgspec

        with open(args.other_book, "rb") as fh:
            snap = msgspec.json.decode(fh.read())
        other = BookSync("okx", "ETH-USDT", SequenceRule())
        other.on_update(BookUpdate(
            "okx", "ETH-USDT", [tuple(x) for x in snap["bids"]], [tuple(x) for x in snap["asks"]],
            0, 0, -1, True, None, 0, time.time_ns(),
        ))
        engine.detector.register(other)
    counter = Counter(args.count, args.stamped)
    link = engine.links["binance"]
    feed = engine.feeds["binance"]
    sync = feed.syncs["ETH-USDT"]
    inner = feed.on_frame  # the one hot path: returns once the detector has run
    tick = counter.tick
    if args.stamped:
        now = time.time_ns
        lat_all, lat_depth = counter.lat_all.append, counter.lat_depth.append
        own_all, own_depth = counter.own_all.append, counter.own_depth.append

        def hooked(payload: bytes, recv_ns: int) -> list[Any]:
            actions = inner(payload, recv_ns)
            done = now()
            if payload[:6] == b'{"ts":':
                lat = done - int(payload[6:STAMP_END])
                lat_all(lat)
                own_all(done - recv_ns)
                if b"@depth" in payload[STAMP_END:STAMP_END + 40]:
                    if sync.synced:
                        lat_depth(lat)
                        own_depth(done - recv_ns)
                    else:
                        counter.skipped_unsynced += 1
            tick()
            return actions
    else:

        def hooked(payload: bytes, recv_ns: int) -> list[Any]:
            actions = inner(payload, recv_ns)
            tick()
            return actions

    feed.on_frame = hooked  # type: ignore[method-assign]
    task = asyncio.create_task(engine.run())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(counter.done), args.timeout)
    extra = {
        "book_updates": engine.counters["binance"].book_updates,
        "resyncs": sync.resyncs,
        "gaps": sync.gaps,
        "book_state": sync.state.name,
        "opportunities": engine.opened,
        "snapshot_requests": link.stats.snapshot_requests,
        "book_loop": book_loop(),
    }
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return counter.result("arbwire", extra)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("kind", choices=("arbwire", "picows"))
    ap.add_argument("--url", required=True, help="the server's WebSocket URL (wss://host:port/stream?...)")
    ap.add_argument("--rest", default="", help="the server's REST base URL")
    ap.add_argument("--ca", help="CA file to trust (the server's throw-away CA)")
    ap.add_argument("--count", type=int, required=True, help="frames to receive")
    ap.add_argument("--stamped", action="store_true", help="frames carry the server's send time")
    ap.add_argument("--other-book", help="JSON snapshot registered as a second venue's book")
    ap.add_argument("--no-hdr", action="store_true",
                    help="diagnostic: drop arbwire's latency samples instead of folding them into histograms")
    ap.add_argument("--busy-poll", action="store_true",
                    help="the loop never blocks waiting for frames (arbwire: [runtime] busy_poll; picows: the same spin)")
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args(argv)
    import uvloop

    run = run_arbwire if args.kind == "arbwire" else run_picows
    result = uvloop.run(run(args))
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if result["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
