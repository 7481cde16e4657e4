"""Whole pipeline on identical streams: arbwire vs cryptofeed vs a bare picows loop.

A local server (``bench/replay_server.py``, this process) replays the same recorded
Binance ETHUSDT frames over loopback TLS, with the capture's REST snapshot, to one
client process at a time:

* ``picows``: a picows receive loop that counts frames and does nothing else (the floor);
* ``arbwire``: the real ``Engine`` (link, REST snapshot, book sync, detector against a
  second venue's book, sinks), endpoints pointed at the server;
* ``cryptofeed``: cryptofeed's Binance feed (L2 book, ticker, trades), endpoints pointed
  at the server, from its own venv (``--cf-python``, ``$ARBWIRE_BENCH_CF_PYTHON``, default
  ``/tmp/cfvenv/bin/python``; ``--setup-cryptofeed`` creates that venv with pip). Skipped
  with a message when it can't be imported.

Each client runs ``--repeat`` times, in rounds of one run per client (the machine's speed
drifts; interleaving spreads the drift over all clients); the median run by throughput is
reported, with frames/s and process CPU µs per frame from its first frame to its last. The server writes pre-framed messages as fast as the client reads them, so the
client is the bottleneck. The capture is served ``--passes`` times; each pass starts
with a sequence jump, so every client resyncs from the REST snapshot once per pass.

    .venv/bin/python bench/compare.py [--passes N] [--clients picows,arbwire,cryptofeed] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    BENCH,
    Bench,
    cryptofeed_python,
    cryptofeed_version,
    machine,
    run_client,
    setup_cryptofeed,
    start_bench,
    stop_bench,
    ws_client_argv,
)
from replay_server import Plan  # noqa: E402

CLIENTS = ("picows", "arbwire", "cryptofeed")


async def _run(args: argparse.Namespace, cf_python: str | None) -> dict[str, Any]:
    bench: Bench = await start_bench(tls=True, frames=args.frames)
    try:
        count = len(bench.capture.frames) * args.passes
        # rounds of one run per client (picows, arbwire, cryptofeed, picows, ...), not all of one
        # client's runs in a row: the machine's speed drifts over minutes, and interleaving
        # spreads the drift over every client alike
        argvs: dict[str, list[str]] = {}
        results: dict[str, Any] = {}
        for kind in args.clients:
            if kind == "cryptofeed":
                if cf_python is None:
                    results[kind] = {"skipped": args.cf_skip_reason}
                    continue
                argvs[kind] = [cf_python, str(BENCH / "cf_client.py"), "--ws", bench.server.ws_url,
                               "--rest", bench.server.rest_url, "--count", str(count),
                               "--timeout", str(args.timeout)]
            else:
                argvs[kind] = ws_client_argv(bench, kind, count, timeout=args.timeout)
        runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in argvs}
        for _ in range(args.repeat):
            for kind, argv in argvs.items():
                plan = Plan(passes=args.passes, mode="burst", gate=kind != "picows")
                runs[kind].append(await run_client(bench, argv, plan, args.timeout))
        for kind in argvs:
            results[kind] = median_run(runs[kind])
        return {
            "machine": machine(),
            "frames_per_pass": len(bench.capture.frames),
            "kinds_per_pass": bench.capture.counts,
            "passes": args.passes,
            "repeat": args.repeat,
            "frames": count,
            "tls": True,
            "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
            "cryptofeed_version": args.cf_version,
            "clients": results,
            "ratios": {**ratios(results), **round_ratios(runs)},
        }
    finally:
        await stop_bench(bench)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median throughput; every run's msgs/s kept beside it."""
    good = [r for r in runs if r.get("complete")]
    if not good:
        return runs[-1]
    good.sort(key=lambda r: r["msgs_per_s"])
    best = dict(good[(len(good) - 1) // 2])
    best["runs_msgs_per_s"] = [r.get("msgs_per_s", 0.0) for r in runs]
    return best


def ratios(results: dict[str, Any]) -> dict[str, float]:
    def ok(k: str) -> bool:
        r = results.get(k) or {}
        return bool(r.get("complete")) and r.get("msgs_per_s", 0) > 0

    out: dict[str, float] = {}
    if ok("arbwire") and ok("cryptofeed"):
        a, c = results["arbwire"], results["cryptofeed"]
        out["throughput_arbwire_over_cryptofeed"] = round(a["msgs_per_s"] / c["msgs_per_s"], 2)
        out["cpu_cryptofeed_over_arbwire"] = round(c["cpu_us_per_msg"] / a["cpu_us_per_msg"], 2)
        # = msgs per CPU-second, arbwire over cryptofeed: the throughput ratio with a core each
    if ok("arbwire") and ok("picows"):
        a, f = results["arbwire"], results["picows"]
        out["throughput_floor_over_arbwire"] = round(f["msgs_per_s"] / a["msgs_per_s"], 2)
        out["cpu_arbwire_minus_floor_us"] = round(a["cpu_us_per_msg"] - f["cpu_us_per_msg"], 3)
    return out


def round_ratios(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """arbwire over cryptofeed within each round (runs minutes apart see different machine
    speeds; runs of one round see nearly the same), and the median of those."""
    a, c = runs.get("arbwire") or [], runs.get("cryptofeed") or []
    per_round = [round(x["msgs_per_s"] / y["msgs_per_s"], 2) for x, y in zip(a, c, strict=False)
                 if x.get("complete") and y.get("complete") and y.get("msgs_per_s")]
    if not per_round:
        return {}
    return {"throughput_arbwire_over_cryptofeed_per_round": per_round,
            "throughput_arbwire_over_cryptofeed_round_median": sorted(per_round)[(len(per_round) - 1) // 2]}


def report(result: dict[str, Any]) -> str:
    lines = [
        f"{result['frames']} frames ({result['passes']} passes x {result['frames_per_pass']}: "
        f"{result['kinds_per_pass']}) over loopback TLS; {result['machine']}",
        f"{'client':12} {'msgs/s':>10} {'CPU µs/msg':>11} {'msgs/CPU-s':>11} {'wall s':>8} {'preempted':>9} "
        f"{'vs cryptofeed':>14}  notes",
    ]
    clients = result["clients"]
    cf = clients.get("cryptofeed") or {}
    for kind, r in clients.items():
        if "skipped" in r:
            lines.append(f"{kind:12} skipped: {r['skipped']}")
            continue
        if "error" in r or not r.get("complete"):
            lines.append(f"{kind:12} FAILED: {r.get('error') or r}")
            continue
        vs = f"{r['msgs_per_s'] / cf['msgs_per_s']:.2f}x" if cf.get("complete") and cf.get("msgs_per_s") else "-"
        notes = []
        if kind == "arbwire":
            notes.append(f"{r['book_updates']} book updates, {r['resyncs']} resyncs, "
                         f"{r['opportunities']} opportunities, book loop {r.get('book_loop')}")
        if kind == "cryptofeed":
            notes.append(f"{r['book_updates']} book callbacks, cryptofeed {result.get('cryptofeed_version')}")
        pre = (r.get("ctx_switches") or {}).get("involuntary", "-")
        lines.append(f"{kind:12} {r['msgs_per_s']:10.0f} {r['cpu_us_per_msg']:11.2f} {1e6 / r['cpu_us_per_msg']:11.0f} "
                     f"{r['wall_s']:8.2f} {pre:>9} {vs:>14}  {'; '.join(notes)}")
    for k, v in result["ratios"].items():
        lines.append(f"  {k}: {v}")
    lines.append(f"  load average (1 min) at the end: {result['load_avg_1m_at_end']}; 'preempted' counts the "
                 "client's involuntary context switches: other processes on the 2 cores cost msgs/s, "
                 "not CPU µs/msg (msgs/CPU-s = 1e6 / CPU µs/msg)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passes", type=int, default=6, help="times the capture is served (33,617 frames each)")
    ap.add_argument("--frames", type=int, default=None, help="only the first N frames of the capture (smoke runs)")
    ap.add_argument("--clients", default=",".join(CLIENTS), help="comma list of picows,arbwire,cryptofeed")
    ap.add_argument("--cf-python", help="python of a venv with cryptofeed (default $ARBWIRE_BENCH_CF_PYTHON "
                    "or /tmp/cfvenv/bin/python)")
    ap.add_argument("--setup-cryptofeed", action="store_true",
                    help="create /tmp/cfvenv with cryptofeed if it is missing (pip; never the project venv)")
    ap.add_argument("--repeat", type=int, default=3, help="runs per client; the median run is reported")
    ap.add_argument("--timeout", type=float, default=240.0, help="per client, seconds")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    args.clients = [c.strip() for c in args.clients.split(",") if c.strip()]
    unknown = set(args.clients) - set(CLIENTS)
    if unknown:
        ap.error(f"unknown clients {sorted(unknown)}")
    cf_python: str | None = None
    args.cf_version = None
    args.cf_skip_reason = ""
    if "cryptofeed" in args.clients:
        cf_python = cryptofeed_python(args.cf_python)
        args.cf_version = cryptofeed_version(cf_python)
        if args.cf_version is None and args.setup_cryptofeed and not args.cf_python:
            print("setting up cryptofeed in /tmp/cfvenv (pip install cryptofeed) ...", file=sys.stderr)
            cf_python = setup_cryptofeed()
            args.cf_version = cryptofeed_version(cf_python)
        if args.cf_version is None:
            args.cf_skip_reason = (f"cryptofeed not importable with {cf_python}; create it with "
                                   f"`python3 -m venv /tmp/cfvenv && /tmp/cfvenv/bin/pip install cryptofeed` "
                                   f"(or --setup-cryptofeed), or point --cf-python / $ARBWIRE_BENCH_CF_PYTHON at one")
            print(f"skipping cryptofeed: {args.cf_skip_reason}", file=sys.stderr)
            cf_python = None
    import uvloop

    result = uvloop.run(_run(args, cf_python))
    print(json.dumps(result, indent=2) if args.json else report(result))
    failed = [k for k, r in result["clients"].items() if "skipped" not in r and not r.get("complete")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
