"""Frame -> opportunity latency: server send -> detector done, at 10k msg/s and at the
maximum sustainable rate.

``bench/replay_server.py`` (this process) paces the recorded Binance ETHUSDT frames over
loopback TLS and stamps each frame with ``time.time_ns()`` just before writing it (a
leading ``"ts"`` field). The client is arbwire's real ``Engine`` in its own process
(``bench/ws_client.py arbwire --stamped``); a hook around ``VenueFeed.on_frame`` (the one
hot path: decode, book sync, detector against a second venue's book) takes
``time.time_ns()`` when it returns. Both stamps are the same machine clock, so the
difference is the whole path: server write, TLS, kernel, picows, arbwire, detector.

1. A burst run measures the client's maximum throughput R.
2. A paced run at ``--rate`` (10,000 frames/s), and the same for a bare picows loop
   that only reads the stamp (the floor: server, TLS, kernel and wake-ups), and with
   ``--diagnose`` once more with arbwire's latency histograms switched off.
3. The maximum sustainable paced rate, bisected (``--probes`` runs of the same length)
   between the target and R; the highest sustainable run is reported. Sustainable: the client received
   every frame, the median latency stayed under 500 µs, and the median of the last
   fifth of the run is within 3x (or 200 µs) of the first fifth's (a client that can't
   keep up queues without bound). Paced frames go out one per write, so this rate is
   below the burst throughput, where frames arrive many per read. The floor runs at
   that rate too.

Percentiles are over depth updates applied to a synced book (the frames that reach the
detector) and over all frames; the first 1,000 frames (connection, first sync) are left
out. Each pass of the capture starts with a sequence jump, so the book resyncs from the
REST snapshot once per pass (every ~3.4 s at 10k/s) and those pauses are in the figures.
"own" is arbwire's share of each frame's latency: from the frame callback (where the
link stamps ``recv_ns``) to the detector done; the rest is the server's write, TLS, the
kernel and the wake-up. ``--busy-poll`` adds runs at the target rate with the loop
never blocking (``[runtime] busy_poll``), arbwire and the floor alike.

    .venv/bin/python bench/latency.py [--seconds S] [--rate 10000] [--busy-poll] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Bench, machine, run_client, start_bench, stop_bench, ws_client_argv  # noqa: E402
from replay_server import Plan  # noqa: E402

P50_LIMIT_US = 500.0  # a median above this means frames queue: the client is not keeping up


def sustainable(r: dict[str, Any]) -> bool:
    """Every frame arrived, the median stayed low, and it did not grow over the run."""
    lat = r.get("latency_all") or {}
    if not r.get("complete") or not lat.get("n"):
        return False
    first, last = lat["first_fifth_p50_us"], lat["last_fifth_p50_us"]
    return lat["p50_us"] <= P50_LIMIT_US and last <= max(3 * first, first + 200.0)


async def _paced(bench: Bench, rate: float, seconds: float, timeout: float, kind: str = "arbwire",
                 no_hdr: bool = False, busy_poll: bool = False) -> dict[str, Any]:
    per_pass = len(bench.capture.frames)
    passes = max(1, math.ceil(rate * seconds / per_pass))
    count = passes * per_pass
    plan = Plan(passes=passes, mode="paced", rate=rate, gate=kind == "arbwire")
    argv = ws_client_argv(bench, kind, count, stamped=True, timeout=timeout)
    if no_hdr:
        argv.append("--no-hdr")
    if busy_poll:
        argv.append("--busy-poll")
    r = await run_client(bench, argv, plan, timeout)
    r["rate"] = round(rate)
    r["kind"] = kind + (" --no-hdr" if no_hdr else "") + (" --busy-poll" if busy_poll else "")
    r["sustainable"] = sustainable(r)
    return r


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    bench = await start_bench(tls=not args.plain, frames=args.frames)
    try:
        per_pass = len(bench.capture.frames)
        burst_passes = max(1, args.burst_passes)
        burst = await run_client(
            bench, ws_client_argv(bench, "arbwire", burst_passes * per_pass, timeout=args.timeout),
            Plan(passes=burst_passes, mode="burst", gate=True), args.timeout,
        )
        max_rate = float(burst.get("msgs_per_s") or 0.0)
        at_rate = await _paced(bench, args.rate, args.seconds, args.timeout, no_hdr=args.no_hdr)
        baselines = [await _paced(bench, args.rate, args.seconds, args.timeout, kind="picows")]
        if args.diagnose and not args.no_hdr:
            baselines.append(await _paced(bench, args.rate, args.seconds, args.timeout, no_hdr=True))
        if args.busy_poll:
            for kind in ("arbwire", "picows"):
                baselines.append(await _paced(bench, args.rate, args.seconds, args.timeout, kind=kind, busy_poll=True))
        trials: list[dict[str, Any]] = []
        best: dict[str, Any] | None = None
        if max_rate > args.rate and not args.skip_max:
            # bisect the paced rate between the target (if it held) and the burst throughput
            lo = args.rate if at_rate["sustainable"] else 0.0
            hi = max_rate
            for _ in range(args.probes):
                mid = (lo + hi) / 2 if lo else hi / 2
                r = await _paced(bench, mid, args.seconds, args.timeout, no_hdr=args.no_hdr)
                trials.append(r)
                if r["sustainable"]:
                    lo, best = mid, r
                else:
                    hi = mid
        if best is not None:
            baselines.append(await _paced(bench, best["rate"], args.seconds, args.timeout, kind="picows"))
        return {
            "machine": machine(),
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "tls": not args.plain,
            "no_hdr": args.no_hdr,
            "searched": not args.skip_max,
            "seconds_per_run": args.seconds,
            "burst": {k: burst.get(k) for k in ("frames", "msgs_per_s", "cpu_us_per_msg", "complete", "error",
                                                "book_loop")},
            "at_rate": _slim(at_rate),
            "max_sustainable": _slim(best) if best else None,
            "trials": [_slim(t) for t in trials],
            "baselines": [_slim(b) for b in baselines],
        }
    finally:
        await stop_bench(bench)


def _slim(r: dict[str, Any]) -> dict[str, Any]:
    keys = ("kind", "rate", "sustainable", "frames", "complete", "msgs_per_s", "cpu_us_per_msg",
            "latency_depth", "latency_all", "own_depth", "own_all", "skipped_unsynced", "resyncs", "opportunities", "server", "error")
    return {k: r[k] for k in keys if k in r}


def report(result: dict[str, Any]) -> str:
    lines = [
        f"frame -> opportunity latency (server send -> detector done), loopback "
        f"{'TLS' if result['tls'] else 'plain'}, {result['seconds_per_run']} s per rate; {result['machine']}",
        f"burst (unpaced) throughput: {result['burst']['msgs_per_s']} msgs/s, "
        f"{result['burst']['cpu_us_per_msg']} CPU µs/msg; book loop: {result['burst'].get('book_loop')}; "
        f"load average at the end {result['load_avg_1m_at_end']}",
        f"{'client':28} {'rate msgs/s':>11} {'frames':>8} {'CPU µs/msg':>10}  {'depth p50':>9} {'p99':>8} "
        f"{'p99.9':>8} {'max':>8}   {'all p50':>8} {'p99':>8}   {'own p50':>7} {'p99':>7} {'depth p99':>9}  sustainable",
    ]

    def row(r: dict[str, Any] | None, label: str = "") -> None:
        if not r:
            return
        kind = r.get("kind", "arbwire")
        if not r.get("complete"):
            lines.append(f"{kind:28} {r.get('rate', '?'):>11} FAILED: {r.get('error') or 'incomplete'}")
            return
        d, a = r.get("latency_depth") or {}, r["latency_all"]
        if d.get("n"):
            depth = f"{d['p50_us']:9.1f} {d['p99_us']:8.1f} {d['p99.9_us']:8.1f} {d['max_us']:8.1f}"
        else:
            depth = f"{'-':>9} {'-':>8} {'-':>8} {'-':>8}"
        o, od = r.get("own_all") or {}, r.get("own_depth") or {}
        own = f"{o['p50_us']:7.1f} {o['p99_us']:7.1f}" if o.get("n") else f"{'-':>7} {'-':>7}"
        own += f" {od['p99_us']:9.1f}" if od.get("n") else f" {'-':>9}"
        lines.append(
            f"{kind:28} {r['rate']:>11} {r['frames']:>8} {r['cpu_us_per_msg']:10.2f}  {depth}   "
            f"{a['p50_us']:8.1f} {a['p99_us']:8.1f}   {own}  {'yes' if r['sustainable'] else 'no'} {label}"
        )

    row(result["at_rate"], "(target rate)")
    for t in result["trials"]:
        row(t, "(bisection)")
    for b in result.get("baselines", []):
        row(b, "(baseline: same rate, same run)")
    best = result["max_sustainable"]
    if best:
        lines.append(f"max sustainable rate: {best['rate']} msgs/s (highest sustainable run of the bisection)")
    elif not result.get("searched", True):
        lines.append("max sustainable rate: not searched (--skip-max)")
    else:
        lines.append("max sustainable rate: none above the target rate found")
    lines.append("latency in µs; depth = depth updates applied to a synced book (they reach the detector; "
                 "for picows the same depth frames); own = arbwire's share: frame callback -> detector done; "
                 "picows = a bare receive loop that only reads the stamp and the stream name (the floor)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=10_000.0, help="the target rate, frames/s")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each paced run")
    ap.add_argument("--burst-passes", type=int, default=3, help="passes of the capture for the burst run")
    ap.add_argument("--frames", type=int, default=None, help="only the first N frames of the capture (smoke runs)")
    ap.add_argument("--probes", type=int, default=4, help="bisection steps for the maximum sustainable rate")
    ap.add_argument("--skip-max", action="store_true", help="only the run at --rate")
    ap.add_argument("--diagnose", action="store_true", help="also run the target rate with --no-hdr")
    ap.add_argument("--busy-poll", action="store_true",
                    help="also run the target rate with the loop busy polling, arbwire and the floor")
    ap.add_argument("--no-hdr", action="store_true", help="diagnostic: the client drops its latency "
                    "samples instead of folding them into HDR histograms (see docs/benchmarks.md)")
    ap.add_argument("--plain", action="store_true", help="ws:// instead of wss://")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    import uvloop

    result = uvloop.run(_run(args))
    print(json.dumps(result, indent=2) if args.json else report(result))
    return 0 if result["at_rate"].get("complete") else 1


if __name__ == "__main__":
    sys.exit(main())
