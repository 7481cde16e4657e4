"""``arbwire bench connect``: what connecting costs, on loopback, against local servers.

* ``connect``: a TLS WebSocket connect (DNS + TCP + TLS 1.3 + upgrade) to a local
  server: the first one (fresh context), reconnects with a full handshake, and
  reconnects resuming the TLS session (aiofastnet's fallback engine and uvloop's
  TLS; aiofastnet's default engine cannot resume), with ``session_reused`` counts;
* ``nodelay``: connect, then two small messages back to back and their echoes
  (what a subscription batch does), with TCP_NODELAY on and off;
* ``switchover``: a planned disconnect (Binance ``serverShutdown``, link closed 0.3 s
  later) against the Binance simulator ticking every 10 ms, make-before-break vs
  drop-and-reconnect (production backoff: full jitter, base 1 s): the longest time
  without a book update around the switch, and how long the books were unusable;
* ``recv_cost``: client CPU per received message for each TLS engine (and plain
  TCP), with the server in another process, paced like a busy feed.

All servers listen on 127.0.0.1. Times in ms (recv_cost in µs), median and p99.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import platform
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from picows import WSListener, WSMsgType, WSTransport

from arbwire.net.connect import open_ws
from arbwire.net.sockopts import TcpOptions
from arbwire.net.tls import ResumingContext, client_context


def _stats(samples: Sequence[float]) -> dict[str, float]:
    ordered = sorted(samples)
    n = len(ordered)
    if not n:
        return {"n": 0}
    return {
        "n": n,
        "median": round(statistics.median(ordered), 3),
        "p99": round(ordered[min(n - 1, int(n * 0.99))], 3),
        "min": round(ordered[0], 3),
    }


class _FirstFrame(WSListener):
    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.event = asyncio.Event()

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type is WSMsgType.TEXT:
            self.frames.append(frame.get_payload_as_bytes())
            self.event.set()


async def _connect_once(url: str, ctx: ssl.SSLContext | None, *, tcp: TcpOptions | None = None,
                        use_aiofastnet: bool | None = None, save: bool = False) -> tuple[float, bool, _FirstFrame, WSTransport]:
    transport, listener, timing = await open_ws(
        _FirstFrame, url, venue="bench", ssl_context=ctx, tcp=tcp, use_aiofastnet=use_aiofastnet
    )
    assert isinstance(listener, _FirstFrame)
    if save and isinstance(ctx, ResumingContext):
        await asyncio.wait_for(listener.event.wait(), 5)  # the TLS 1.3 ticket follows the handshake
        ctx.save_from("localhost", transport.underlying_transport.get_extra_info("ssl_object"))
    return timing.total_ms, timing.session_reused, listener, transport


async def _close(transport: WSTransport) -> None:
    transport.disconnect()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(transport.wait_disconnected(), 2)


async def bench_connect(runs: int) -> dict[str, Any]:
    from arbwire.sim.faulty import PushServer
    from arbwire.sim.tls import make_certs

    with tempfile.TemporaryDirectory(prefix="arbwire-bench-") as tmp:
        certs = make_certs(tmp)
        server = await PushServer(b"{}", interval_s=0, hello=b'{"hello":1}', echo=True,
                                  ssl_context=certs.server_context()).start()
        url = f"wss://localhost:{server.port}/ws"
        cafile = str(certs.ca_cert)
        out: dict[str, Any] = {}
        try:
            # first connect: a fresh context each time (nothing cached anywhere)
            first = []
            for _ in range(runs):
                ms, _, _, tr = await _connect_once(url, client_context(cafile=cafile))
                first.append(ms)
                await _close(tr)
            out["first_connect"] = _stats(first)
            variants = [  # (name, resuming context, use_aiofastnet, offer the saved session)
                ("reconnect_full_handshake", False, None, False),
                ("reconnect_full_handshake_fallback_engine", True, None, False),
                ("reconnect_resumed_fallback_engine", True, None, True),
                ("reconnect_full_handshake_uvloop_tls", True, False, False),
                ("reconnect_resumed_uvloop_tls", True, False, True),
            ]
            for name, resuming, use_afn, offer in variants:
                ctx = client_context(cafile=cafile, session_reuse=resuming)
                _, _, _, tr = await _connect_once(url, ctx, use_aiofastnet=use_afn, save=offer)
                await _close(tr)
                times, reused = [], 0
                for _ in range(runs):
                    ms, was_reused, _, tr = await _connect_once(url, ctx, use_aiofastnet=use_afn, save=offer)
                    times.append(ms)
                    reused += was_reused
                    await _close(tr)
                out[name] = {**_stats(times), "session_reused": reused}
            # TCP_NODELAY: connect + two back-to-back small sends + both echoes
            for name, nodelay in (("connect_and_2_sends_nodelay", True), ("connect_and_2_sends_nagle", False)):
                ctx = client_context(cafile=cafile)
                times = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    _, _, listener, tr = await _connect_once(url, ctx, tcp=TcpOptions(nodelay=nodelay))
                    await asyncio.wait_for(listener.event.wait(), 5)
                    listener.event.clear()
                    tr.send(WSMsgType.TEXT, b'{"method":"SUBSCRIBE","params":["a"],"id":1}')
                    tr.send(WSMsgType.TEXT, b'{"method":"SUBSCRIBE","params":["b"],"id":2}')
                    while len(listener.frames) < 3:
                        listener.event.clear()
                        await asyncio.wait_for(listener.event.wait(), 5)
                    times.append((time.perf_counter() - t0) * 1e3)
                    await _close(tr)
                out[name] = _stats(times)
        finally:
            await server.close()
    return out


async def bench_switchover(runs: int) -> dict[str, Any]:
    """Planned disconnects against the Binance simulator (plain ws on loopback)."""
    out: dict[str, Any] = {}
    for name, mbb in (("make_before_break", True), ("drop_and_reconnect", False)):
        out[name] = await _switchover_mode(mbb, runs)
    out["tick_ms"] = 10
    return out


async def _switchover_mode(mbb: bool, runs: int) -> dict[str, Any]:
    from arbwire.feed import VenueFeed
    from arbwire.latency import VenueLatency
    from arbwire.net.link import Link, LinkOptions
    from arbwire.net.rest import RestClient
    from arbwire.sim.runner import start_simulators
    from arbwire.venues.base import Endpoints
    from arbwire.venues.binance import BinanceSession

    sims = await start_simulators(venues=("binance",), symbols=("BTC-USDT",), seed=3, tick_ms=10)
    ep = sims.endpoints["binance"]
    applied: list[float] = []
    unusable: list[float] = []
    down_since = [0.0]

    def on_book(sync: Any, upd: Any) -> None:
        applied.append(time.perf_counter())

    def on_event(event: Any) -> None:
        state = getattr(event, "state", None)
        if state is None:
            return
        if state.name != "SYNCED" and not down_since[0]:
            down_since[0] = time.perf_counter()
        elif state.name == "SYNCED" and down_since[0]:
            unusable.append((time.perf_counter() - down_since[0]) * 1e3)
            down_since[0] = 0.0

    session = BinanceSession(["BTC-USDT"], Endpoints(ep.ws_url, ep.rest_url))
    feed = VenueFeed(session, on_book=on_book, on_event=on_event)
    rest = RestClient()
    # production backoff (full jitter, base 1 s): what a dropped link really waits
    link = Link(feed, rest, VenueLatency("binance"), LinkOptions(make_before_break=mbb, timer_s=0.05, drain_s=0.2))
    task = asyncio.create_task(link.run())
    gaps: list[float] = []
    try:
        while not feed.syncs["BTC-USDT"].synced:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)
        unusable.clear()  # the first sync is not a switch
        for _ in range(runs):
            link.shards[0].attempt = 0  # each switch as after a long healthy life
            t0 = time.perf_counter()
            sims.venue("binance").server_shutdown(close_after_s=0.3)
            await asyncio.sleep(1.0 if mbb else 1.6)
            while not feed.syncs["BTC-USDT"].synced:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            window = [t for t in applied if t >= t0 - 0.05]
            gaps.append(max(b - a for a, b in zip(window, window[1:], strict=False)) * 1e3)
            applied.clear()
    finally:
        await link.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await rest.close()
        await sims.close()
    return {
        "max_gap_ms": _stats(gaps),
        "books_unusable_ms": _stats(unusable),
        "resyncs": feed.syncs["BTC-USDT"].resyncs,
        "switchovers": link.stats.switchovers,
        "connects": link.stats.connects,
    }


# -- per-message receive cost (server in another process) --------------------------------------------------
_MSG = (
    b'{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":1,"u":2,'
    b'"b":[["60000.01000000","1.00000000"],["59999.00000000","0.50000000"]],'
    b'"a":[["60001.00000000","2.00000000"]]}}'
)


def _recv_server(cert: str, key: str, count: int, queue: Any) -> None:
    import uvloop
    from picows import ws_create_server

    class Pump(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
            if frame.msg_type is WSMsgType.TEXT:
                asyncio.get_running_loop().create_task(self.pump(transport))

        async def pump(self, transport: WSTransport) -> None:
            for i in range(count):
                transport.send(WSMsgType.TEXT, _MSG)
                if i % 2:
                    await asyncio.sleep(0.0002)

    async def main() -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        tls = await ws_create_server(lambda r: Pump(), "127.0.0.1", 0, ssl=ctx)
        plain = await ws_create_server(lambda r: Pump(), "127.0.0.1", 0)
        queue.put((tls.sockets[0].getsockname()[1], plain.sockets[0].getsockname()[1]))
        await asyncio.sleep(3600)

    uvloop.run(main())


class _Counter(WSListener):
    def __init__(self, count: int) -> None:
        self.count = count
        self.n = 0
        self.done = asyncio.get_running_loop().create_future()

    def on_ws_frame(self, transport: WSTransport, frame: Any) -> None:
        if frame.msg_type is WSMsgType.TEXT:
            frame.get_payload_as_bytes()
            self.n += 1
            if self.n == self.count and not self.done.done():
                self.done.set_result(None)


async def bench_recv_cost(count: int, repeats: int) -> dict[str, Any]:
    from arbwire.sim.tls import make_certs

    with tempfile.TemporaryDirectory(prefix="arbwire-bench-") as tmp:
        certs = make_certs(tmp)
        mpctx = mp.get_context("spawn")
        queue = mpctx.Queue()
        proc = mpctx.Process(target=_recv_server, args=(str(certs.cert), str(certs.key), count, queue), daemon=True)
        proc.start()
        try:
            tls_port, plain_port = queue.get(timeout=30)
            results: dict[str, list[float]] = {}
            modes = ("plain", "aiofastnet_direct", "aiofastnet_fallback", "uvloop_tls")
            for _ in range(repeats):
                for mode in modes:
                    ctx: ssl.SSLContext | None = None
                    use_afn: bool | None = None
                    url = f"wss://localhost:{tls_port}/"
                    if mode == "plain":
                        url = f"ws://127.0.0.1:{plain_port}/"
                    elif mode == "aiofastnet_direct":
                        ctx = client_context(cafile=str(certs.ca_cert))
                    elif mode == "aiofastnet_fallback":
                        ctx = client_context(cafile=str(certs.ca_cert), session_reuse=True)
                    else:
                        ctx = client_context(cafile=str(certs.ca_cert), session_reuse=True)
                        use_afn = False
                    transport, listener, _ = await open_ws(
                        lambda: _Counter(count), url, venue="bench", ssl_context=ctx, use_aiofastnet=use_afn
                    )
                    assert isinstance(listener, _Counter)
                    c0 = time.process_time()
                    transport.send(WSMsgType.TEXT, b"go")
                    await asyncio.wait_for(listener.done, 60)
                    cpu = time.process_time() - c0
                    results.setdefault(mode, []).append(cpu / count * 1e6)
                    await _close(transport)
        finally:
            proc.terminate()
            proc.join(5)
    return {mode: {**_stats(v), "unit": "us_cpu_per_msg"} for mode, v in results.items()} | {"messages": count}


async def run_all(
    runs: int, switch_runs: int, recv_count: int, parts: Sequence[str], recv_repeats: int = 5
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "python": platform.python_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "runs": runs,
    }
    if "connect" in parts:
        out["connect"] = await bench_connect(runs)
    if "switchover" in parts:
        out["switchover"] = await bench_switchover(switch_runs)
    if "recv" in parts:
        out["recv_cost"] = await bench_recv_cost(recv_count, recv_repeats)
    return out


def _print_table(result: dict[str, Any]) -> None:
    print(f"python {result['python']}, {result['openssl']}; loopback; ms unless noted")
    for section in ("connect", "switchover", "recv_cost"):
        block = result.get(section)
        if not block:
            continue
        print(f"\n[{section}]")
        for name, value in block.items():
            if not isinstance(value, dict):
                print(f"  {name:45} {value}")
                continue
            flat = {k: v for k, v in value.items() if not isinstance(v, dict)}
            nested = {k: v for k, v in value.items() if isinstance(v, dict)}
            text = "  ".join(f"{k}={v}" for k, v in flat.items())
            for k, v in nested.items():
                text += f"  {k}: median={v.get('median')} p99={v.get('p99')} n={v.get('n')}"
            print(f"  {name:45} {text}")


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="arbwire bench connect", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--runs", type=int, default=100, help="connects per variant (default 100)")
    p.add_argument("--switch-runs", type=int, default=5, help="planned disconnects per mode (default 5)")
    p.add_argument("--recv-messages", type=int, default=20_000, help="messages per recv-cost run")
    p.add_argument("--recv-repeats", type=int, default=5, help="recv-cost runs per engine (default 5)")
    p.add_argument("--only", default="connect,switchover,recv", help="comma list of parts")
    args = p.parse_args(argv)
    parts = [x for x in args.only.split(",") if x]
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(run_all(args.runs, args.switch_runs, args.recv_messages, parts, args.recv_repeats))
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
    else:
        _print_table(result)
    return 0
