"""A loopback server that replays the recorded Binance ETHUSDT stream to one client at a time.

The frames are the real hftbacktest capture (``@depth@100ms`` diffs, ``@bookTicker``,
trades), served as a Binance combined stream on any ``/stream?...`` or ``/ws`` URL, with
the capture's REST snapshot at ``/api/v3/depth`` and a real (cryptofeed-captured)
``/api/v3/exchangeInfo``. Over TLS with a throw-away CA when asked (cryptofeed only
speaks ``wss://``), so every client pays the same decryption.

Two changes to the recorded bytes, the same for every client:

* ``@trade`` frames are served as ``@aggTrade`` (same price, size, time, side; the trade
  id becomes ``a``/``f``/``l``), because cryptofeed subscribes ``aggTrade`` for trades
  and would log every ``trade`` frame as unexpected.
* The capture (33,617 frames) is served ``passes`` times. Pass *k* adds ``k * span`` to
  every book update id (``U``/``u``, bookTicker ``u``) and to the snapshot's
  ``lastUpdateId``, so each pass starts with a sequence jump: a client resyncs from the
  REST snapshot once per pass, exactly as it would after a gap live. With ``gate`` the
  server starts pass *k+1* only once pass *k*'s snapshot was fetched, so a snapshot
  always belongs to the pass the client is in.

Modes: ``burst`` writes pre-framed WebSocket messages in 256 KB chunks as fast as the
client reads them (the server costs next to nothing, so the client is the bottleneck);
``paced`` sends one frame at a time at ``rate`` frames/s and stamps the send time into
each frame as a leading ``"ts":<19-digit time.time_ns()>`` field (bytes 6..25), which
Binance decoders ignore and a latency hook reads.

    .venv/bin/python bench/replay_server.py [--tls] [--passes N]   # serve until Ctrl-C
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import ssl
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from aiohttp import web
from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from arbwire.record.importers import Kind, read_hftbacktest

SHARED = Path(__file__).resolve().parents[2] / "shared/data/real"
CAPTURE = SHARED / "hftbacktest/binance_spot_ethusdt_20240808.gz"
EXCHANGE_INFO = SHARED / "cryptofeed/BINANCE.0"
STAMP = b'{"ts":'  # a stamped frame starts with this; the 19 digits follow at [6:25]
STAMP_END = 25

_IDS = re.compile(rb'"([Uu])":(\d+)')


def read_stamp(payload: bytes) -> int:
    """The server's send time (ns) in a stamped frame."""
    return int(payload[6:STAMP_END])


@dataclass
class Capture:
    """The recorded stream as it is served: frames in order, the REST snapshot, the id span."""

    frames: list[bytes]
    snapshot: bytes
    span: int  # ids added per pass: more than all the capture's update ids cover
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def symbol(self) -> str:
        return "ETH-USDT"


def _agg_trade(frame: bytes) -> bytes:
    msg = msgspec.json.decode(frame)
    d = msg["data"]
    data = {
        "e": "aggTrade", "E": d["E"], "s": d["s"], "a": d["t"], "p": d["p"], "q": d["q"],
        "f": d["t"], "l": d["t"], "T": d["T"], "m": d["m"], "M": d.get("M", True),
    }
    return msgspec.json.encode({"stream": msg["stream"].replace("@trade", "@aggTrade"), "data": data})


def load_capture(path: Path = CAPTURE, limit: int | None = None) -> Capture:
    """The capture's frames (all of them, or the first ``limit``) and its REST snapshot."""
    frames: list[bytes] = []
    snapshot = b""
    counts = {"depth": 0, "bookTicker": 0, "aggTrade": 0}
    lo, hi = 1 << 62, 0
    for rec in read_hftbacktest(path):
        if rec.kind is Kind.HTTP:
            snapshot = rec.payload
            continue
        if limit is not None and len(frames) >= limit:
            if snapshot:
                break
            continue
        frame = rec.payload
        if b"@trade" in frame[:40]:
            frame = _agg_trade(frame)
            counts["aggTrade"] += 1
        else:
            counts["depth" if b"@depth" in frame[:40] else "bookTicker"] += 1
            for m in _IDS.finditer(frame):
                v = int(m[2])
                lo, hi = min(lo, v), max(hi, v)
        frames.append(frame)
    if not snapshot:
        raise ValueError(f"{path}: no REST snapshot in the capture")
    span = 10 ** len(str(max(hi - lo, 1) * 2))
    return Capture(frames, snapshot, span, counts)


def shift_ids(frame: bytes, offset: int) -> bytes:
    if not offset or b"@aggTrade" in frame[:40]:
        return frame
    return _IDS.sub(lambda m: b'"%s":%d' % (m[1], int(m[2]) + offset), frame)


def shifted_snapshot(snapshot: bytes, offset: int) -> bytes:
    head, sep, rest = snapshot.partition(b",")
    key, _, value = head.partition(b":")
    return b"%s:%d%s%s" % (key, int(value) + offset, sep, rest)


def ws_frame(payload: bytes) -> bytes:
    """One unmasked server->client text frame."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def _exchange_info() -> bytes:
    """The real exchangeInfo body cryptofeed recorded (first line of BINANCE.0)."""
    with EXCHANGE_INFO.open("rb") as fh:
        line = fh.readline()
    return line.partition(b": ")[2].rstrip(b"\n")


@dataclass
class Plan:
    """What the next client connection gets."""

    passes: int = 1
    mode: str = "burst"  # or "paced"
    rate: float = 10_000.0  # frames/s when paced
    gate: bool = False  # start pass k+1 only after pass k's snapshot was fetched
    gate_timeout_s: float = 10.0


@dataclass
class SendStats:
    frames: int = 0
    bytes: int = 0
    passes_started: int = 0
    snapshots_served: int = 0
    gate_timeouts: int = 0
    started_ns: int = 0
    finished_ns: int = 0
    max_lag_ns: int = 0  # paced: how far behind schedule a send ever was


class _Conn(WSListener):
    def __init__(self, server: ReplayServer) -> None:
        self.server = server
        self.task: asyncio.Task[None] | None = None
        self.writable = asyncio.Event()
        self.writable.set()

    def pause_writing(self) -> None:  # the transport's buffer crossed its high-water mark
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def on_ws_connected(self, transport: WSTransport) -> None:
        raw = transport.underlying_transport
        high = self.server.high_water
        raw.set_write_buffer_limits(high=high, low=high // 4)  # type: ignore[attr-defined]
        self.task = asyncio.get_running_loop().create_task(self.server._serve(transport, self))

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        # anything else (subscribe messages, pongs) needs no answer: the URL names the streams

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()


class ReplayServer:
    """Serves ``capture`` per ``plan`` to each connection; REST snapshot follows the pass."""

    high_water = 4 << 20  # bytes the server lets queue before it waits for the client

    def __init__(self, capture: Capture, *, ssl_context: ssl.SSLContext | None = None,
                 host: str = "127.0.0.1") -> None:
        self.capture = capture
        self.ssl_context = ssl_context
        self.host = host
        self.plan = Plan()
        self.stats = SendStats()
        self.done = asyncio.Event()
        self.ws_port = 0
        self.rest_port = 0
        self._pass = 0
        self._served: set[int] = set()
        self._served_event = asyncio.Event()
        self._ws: asyncio.Server | None = None
        self._runner: web.AppRunner | None = None
        self._exchange_info = _exchange_info() if EXCHANGE_INFO.exists() else b'{"symbols":[]}'
        self._prepared: tuple[int, list[list[bytes]]] | None = None
        self._shifted: list[list[bytes]] = []

    # -- endpoints -------------------------------------------------------------------------------
    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.ssl_context else 'ws'}://{self.host}:{self.ws_port}"

    @property
    def rest_url(self) -> str:
        return f"{'https' if self.ssl_context else 'http'}://{self.host}:{self.rest_port}"

    def total_frames(self, passes: int | None = None) -> int:
        return len(self.capture.frames) * (self.plan.passes if passes is None else passes)

    async def start(self) -> None:
        # picows warns on every write-buffer high/low crossing: in a burst that is all the time
        logging.getLogger("picows").setLevel(logging.ERROR)
        self._ws = await ws_create_server(self._route, self.host, 0, ssl=self.ssl_context,
                                          enable_auto_pong=True)
        self.ws_port = self._ws.sockets[0].getsockname()[1]
        app = web.Application()
        app.add_routes([
            web.get("/api/v3/depth", self._depth),
            web.get("/api/v3/exchangeInfo", self._info),
            web.get("/api/v3/ping", self._ping),
        ])
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0, ssl_context=self.ssl_context)
        await site.start()
        self.rest_port = self._runner.addresses[0][1]

    async def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.wait_closed(), 2)
        if self._runner is not None:
            await self._runner.cleanup()

    def reset(self, plan: Plan) -> None:
        """Set what the next connection gets; clears the counters."""
        self.plan = plan
        self.stats = SendStats()
        self.done = asyncio.Event()
        self._pass = 0
        self._served = set()
        if plan.mode == "burst" and (self._prepared is None or self._prepared[0] < plan.passes):
            self._prepared = (plan.passes, [self._chunks(k) for k in range(plan.passes)])
        if plan.mode == "paced":  # shifted ahead of time: the send loop only stamps and writes
            self._shifted = [list(self._pass_frames(k)) for k in range(plan.passes)]

    # -- REST ------------------------------------------------------------------------------------
    async def _depth(self, request: web.Request) -> web.Response:
        k = self._pass
        self._served.add(k)
        self.stats.snapshots_served += 1
        self._served_event.set()
        body = shifted_snapshot(self.capture.snapshot, k * self.capture.span)
        return web.Response(body=body, content_type="application/json")

    async def _info(self, request: web.Request) -> web.Response:
        return web.Response(body=self._exchange_info, content_type="application/json")

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(body=b"{}", content_type="application/json")

    # -- WebSocket ---------------------------------------------------------------------------------
    def _route(self, request: WSUpgradeRequest) -> WSListener | None:
        path = request.path.decode() if isinstance(request.path, bytes) else str(request.path)
        if path.startswith(("/stream", "/ws")):
            return _Conn(self)
        return None

    def _pass_frames(self, k: int) -> Iterator[bytes]:
        offset = k * self.capture.span
        for frame in self.capture.frames:
            yield shift_ids(frame, offset)

    def _chunks(self, k: int, size: int = 256 << 10) -> list[bytes]:
        out: list[bytes] = []
        buf: list[bytes] = []
        n = 0
        for frame in self._pass_frames(k):
            f = ws_frame(frame)
            buf.append(f)
            n += len(f)
            if n >= size:
                out.append(b"".join(buf))
                buf, n = [], 0
        if buf:
            out.append(b"".join(buf))
        return out

    async def _gate(self, k: int) -> None:
        """Before pass k (>0): wait until pass k-1's snapshot was fetched."""
        plan = self.plan
        if not plan.gate or k == 0:
            return
        deadline = time.monotonic() + plan.gate_timeout_s
        while (k - 1) not in self._served:
            left = deadline - time.monotonic()
            if left <= 0:
                self.stats.gate_timeouts += 1
                return
            self._served_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._served_event.wait(), left)

    async def _serve(self, transport: WSTransport, conn: _Conn) -> None:
        try:
            if self.plan.mode == "paced":
                await self._paced(transport, conn)
            else:
                await self._burst(transport, conn)
        finally:
            self.stats.finished_ns = time.time_ns()
            self.done.set()

    @staticmethod
    async def _drain(raw: asyncio.BaseTransport, conn: _Conn) -> None:
        """Wait while the transport says its buffer is full (flow control, no polling)."""
        while not conn.writable.is_set():
            if raw.is_closing():
                raise ConnectionError("client went away")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(conn.writable.wait(), 1.0)

    async def _burst(self, transport: WSTransport, conn: _Conn) -> None:
        raw = transport.underlying_transport
        st = self.stats
        st.started_ns = time.time_ns()
        assert self._prepared is not None
        per_pass = len(self.capture.frames)
        for k in range(self.plan.passes):
            await self._gate(k)
            self._pass = k
            st.passes_started += 1
            for chunk in self._prepared[1][k]:
                raw.write(chunk)
                st.bytes += len(chunk)
                await self._drain(raw, conn)
            st.frames += per_pass

    async def _paced(self, transport: WSTransport, conn: _Conn) -> None:
        raw = transport.underlying_transport
        st = self.stats
        interval = 1e9 / self.plan.rate
        clock = time.perf_counter_ns
        wall = time.time_ns
        write = raw.write
        st.started_ns = wall()
        i = 0
        t0 = clock()
        for k in range(self.plan.passes):
            await self._gate(k)
            if k:
                t0 = clock() - int(i * interval)  # a gate wait does not count as lag
            self._pass = k
            st.passes_started += 1
            for frame in self._shifted[k]:
                target = t0 + int(i * interval)
                now = clock()
                if now < target:
                    ahead = target - now
                    if ahead > 1_000_000:  # loop timers have ms resolution
                        await asyncio.sleep(ahead / 1e9 - 0.0005)
                    elif ahead > 200_000:  # a short blocking nap instead of spinning a core
                        time.sleep((ahead - 120_000) / 1e9)
                    while clock() < target:
                        await asyncio.sleep(0)  # spin, but let the loop serve REST meanwhile
                elif now - target > st.max_lag_ns:
                    st.max_lag_ns = now - target
                payload = b'{"ts":%019d,' % wall() + frame[1:]
                write(ws_frame(payload))
                i += 1
                st.frames += 1
                st.bytes += len(payload)
                if not conn.writable.is_set():
                    await self._drain(raw, conn)


def tls_pair(directory: str | Path | None = None) -> tuple[ssl.SSLContext, Path]:
    """A server context and the CA file a client must trust (throw-away, loopback only)."""
    from arbwire.sim.tls import make_certs

    certs = make_certs(directory)
    return certs.server_context(), certs.ca_cert


async def _serve_forever(args: argparse.Namespace) -> None:
    ctx, ca = tls_pair() if args.tls else (None, None)
    server = ReplayServer(load_capture(limit=args.frames), ssl_context=ctx)
    await server.start()
    server.reset(Plan(passes=args.passes, mode="paced" if args.rate else "burst",
                      rate=args.rate or 0.0, gate=args.gate))
    print(f"ws {server.ws_url}/stream?streams=ethusdt@depth@100ms/ethusdt@bookTicker/ethusdt@aggTrade")
    print(f"rest {server.rest_url}/api/v3/depth?symbol=ETHUSDT&limit=1000")
    if ca:
        print(f"ca {ca}")
    print(f"{server.total_frames()} frames per connection", flush=True)
    try:
        while True:
            await server.done.wait()
            print(f"served {server.stats}", flush=True)
            server.reset(server.plan)
    finally:
        await server.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tls", action="store_true", help="wss:// and https:// with a throw-away CA")
    ap.add_argument("--passes", type=int, default=1)
    ap.add_argument("--frames", type=int, default=None, help="only the first N frames of the capture")
    ap.add_argument("--rate", type=float, default=None, help="paced, stamped frames/s (default: burst)")
    ap.add_argument("--gate", action="store_true", help="start each pass after the previous snapshot")
    args = ap.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve_forever(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
