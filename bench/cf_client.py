"""The cryptofeed benchmark client: runs in its own venv (never a project dependency).

Cryptofeed's own ``Binance`` feed, subclassed only to point ``websocket_endpoints`` and
``rest_endpoints`` at ``bench/replay_server.py``; L2 book, ticker and trades channels
with no-op callbacks, uvloop (cryptofeed's default). The server's CA is trusted through
``SSL_CERT_FILE`` (websockets, aiohttp) and ``REQUESTS_CA_BUNDLE`` (requests, for
exchangeInfo), which ``bench/compare.py`` sets. Prints one JSON line like
``bench/ws_client.py``: frames, wall and process CPU seconds from the first frame to the
last, counted where cryptofeed hands each received frame to its message handler.

    /tmp/cfvenv/bin/python bench/cf_client.py --ws wss://127.0.0.1:PORT --rest https://127.0.0.1:PORT --count N
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
import warnings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ws", required=True, help="WebSocket base URL (wss://host:port)")
    ap.add_argument("--rest", required=True, help="REST base URL (https://host:port)")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args(argv)

    import cryptofeed
    from cryptofeed import FeedHandler
    from cryptofeed.connection import RestEndpoint, Routes, WebsocketEndpoint
    from cryptofeed.defines import L2_BOOK, TICKER, TRADES
    from cryptofeed.exchanges import Binance

    state = {"n": 0, "wall0": 0.0, "cpu0": 0.0, "wall1": 0.0, "cpu1": 0.0, "books": 0, "tickers": 0, "trades": 0}
    count = args.count
    done: list[asyncio.Future[None]] = []
    rusage: list[resource.struct_rusage] = []

    class LocalBinance(Binance):
        websocket_endpoints = [WebsocketEndpoint(args.ws)]
        rest_endpoints = [RestEndpoint(args.rest, routes=Routes(
            "/api/v3/exchangeInfo", l2book="/api/v3/depth?symbol={}&limit={}",
            authentication="/api/v3/userDataStream"))]

        async def message_handler(self, msg: str, conn: object, timestamp: float) -> None:
            await super().message_handler(msg, conn, timestamp)
            n = state["n"] = state["n"] + 1
            if n == 1:
                state["wall0"], state["cpu0"] = time.perf_counter(), time.process_time()
                rusage.append(resource.getrusage(resource.RUSAGE_SELF))
            if n == count:
                state["wall1"], state["cpu1"] = time.perf_counter(), time.process_time()
                rusage.append(resource.getrusage(resource.RUSAGE_SELF))
                if done and not done[0].done():
                    done[0].set_result(None)

    async def on_book(book: object, receipt: float) -> None:
        state["books"] += 1

    async def on_ticker(t: object, receipt: float) -> None:
        state["tickers"] += 1

    async def on_trade(t: object, receipt: float) -> None:
        state["trades"] += 1

    fh = FeedHandler(config={"uvloop": True, "log": {"disabled": True}})
    fh.add_feed(LocalBinance(symbols=["ETH-USDT"], channels=[L2_BOOK, TICKER, TRADES],
                             callbacks={L2_BOOK: on_book, TICKER: on_ticker, TRADES: on_trade}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        loop = asyncio.new_event_loop()  # uvloop: FeedHandler installed its policy
        asyncio.set_event_loop(loop)
    done.append(loop.create_future())
    fh.run(start_loop=False, install_signal_handlers=False)
    with contextlib.suppress(TimeoutError):
        loop.run_until_complete(asyncio.wait_for(asyncio.shield(done[0]), args.timeout))
    n = state["n"]
    wall = (state["wall1"] or time.perf_counter()) - state["wall0"] if n else 0.0
    cpu = (state["cpu1"] or time.process_time()) - state["cpu0"] if n else 0.0
    result = {
        "client": "cryptofeed",
        "version": cryptofeed.__version__ if hasattr(cryptofeed, "__version__") else "",
        "loop": type(loop).__module__,
        "frames": n,
        "expected": count,
        "complete": n >= count,
        "wall_s": round(wall, 4),
        "cpu_s": round(cpu, 4),
        "msgs_per_s": round((n - 1) / wall, 1) if n > 1 and wall > 0 else 0.0,
        "cpu_us_per_msg": round(cpu * 1e6 / (n - 1), 3) if n > 1 else 0.0,
        "book_updates": state["books"],
        "tickers": state["tickers"],
        "trades": state["trades"],
    }
    if len(rusage) == 2:
        result["ctx_switches"] = {"voluntary": rusage[1].ru_nvcsw - rusage[0].ru_nvcsw,
                                  "involuntary": rusage[1].ru_nivcsw - rusage[0].ru_nivcsw}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    import os

    os._exit(0 if result["complete"] else 1)  # skip cryptofeed's slow, noisy shutdown


if __name__ == "__main__":
    sys.exit(main())
