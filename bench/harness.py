"""What the loopback benchmarks share: the replay server in this process, clients as subprocesses.

The server runs on this process's event loop (one core); each client is its own process
(the other core) and reports its own figures as one JSON line on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replay_server import Capture, Plan, ReplayServer, load_capture, tls_pair

BENCH = Path(__file__).resolve().parent
STREAMS = "ethusdt@depth@100ms/ethusdt@bookTicker/ethusdt@trade"
CF_PYTHON_ENV = "ARBWIRE_BENCH_CF_PYTHON"
CF_VENV_DEFAULT = "/tmp/cfvenv"


def machine() -> str:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.python_implementation()} {platform.python_version()} on {platform.system()} "
            f"{platform.machine()}, {os.cpu_count()} x {cpu or 'cpu'}")


@dataclass
class Bench:
    """A started replay server with its TLS material and scratch files."""

    server: ReplayServer
    capture: Capture
    ca: Path | None
    tmp: Path
    other_book: Path

    @property
    def ws_url(self) -> str:
        return f"{self.server.ws_url}/stream?streams={STREAMS}"

    def client_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.ca is not None:
            env["SSL_CERT_FILE"] = str(self.ca)  # websockets, aiohttp: the default context
            env["REQUESTS_CA_BUNDLE"] = str(self.ca)  # requests (cryptofeed's exchangeInfo)
        env.pop("PYTHONPATH", None)
        return env


async def start_bench(*, tls: bool, frames: int | None = None) -> Bench:
    tmp = Path(tempfile.mkdtemp(prefix="arbwire-bench-"))
    ctx, ca = tls_pair(tmp / "tls") if tls else (None, None)
    capture = load_capture(limit=frames)
    other = tmp / "other_book.json"
    other.write_bytes(capture.snapshot)
    server = ReplayServer(capture, ssl_context=ctx)
    await server.start()
    return Bench(server, capture, ca, tmp, other)


async def stop_bench(bench: Bench) -> None:
    await bench.server.close()
    shutil.rmtree(bench.tmp, ignore_errors=True)


async def run_client(bench: Bench, argv: list[str], plan: Plan, timeout: float) -> dict[str, Any]:
    """Serve ``plan`` to one client process started with ``argv``; its JSON result line."""
    bench.server.reset(plan)
    cpu0 = time.process_time()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=bench.client_env(),
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout + 30)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
    lines = [ln for ln in out.decode(errors="replace").splitlines() if ln.startswith("{")]
    if not lines:
        tail = err.decode(errors="replace").strip().splitlines()[-15:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail), "complete": False}
    result: dict[str, Any] = json.loads(lines[-1])
    result["server"] = {
        "frames_sent": bench.server.stats.frames,
        "snapshots_served": bench.server.stats.snapshots_served,
        "gate_timeouts": bench.server.stats.gate_timeouts,
        "max_lag_us": round(bench.server.stats.max_lag_ns / 1000, 1),
        "cpu_s": round(time.process_time() - cpu0, 3),  # the server's whole run, incl. client start-up
    }
    return result


def ws_client_argv(bench: Bench, kind: str, count: int, *, stamped: bool = False,
                   timeout: float = 300.0) -> list[str]:
    argv = [sys.executable, str(BENCH / "ws_client.py"), kind, "--url", bench.ws_url,
            "--count", str(count), "--timeout", str(timeout)]
    if bench.server.rest_port:
        argv += ["--rest", bench.server.rest_url]
    if bench.ca is not None:
        argv += ["--ca", str(bench.ca)]
    if kind == "arbwire":
        argv += ["--other-book", str(bench.other_book)]
    if stamped:
        argv.append("--stamped")
    return argv


# -- cryptofeed in its own venv ------------------------------------------------------------------
def cryptofeed_python(explicit: str | None = None) -> str:
    """The interpreter of the cryptofeed venv: --cf-python, $ARBWIRE_BENCH_CF_PYTHON, /tmp/cfvenv."""
    return explicit or os.environ.get(CF_PYTHON_ENV) or f"{CF_VENV_DEFAULT}/bin/python"


def cryptofeed_version(python: str) -> str | None:
    """cryptofeed's version in that interpreter, or None when it can't import it."""
    if not Path(python).exists() and shutil.which(python) is None:
        return None
    try:
        proc = subprocess.run(
            [python, "-c", "import importlib.metadata as m; import cryptofeed; print(m.version('cryptofeed'))"],
            capture_output=True, text=True, timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def setup_cryptofeed(venv: str = CF_VENV_DEFAULT) -> str:
    """Create ``venv`` and pip-install cryptofeed into it (never into the project's venv)."""
    base = shutil.which("python3") or sys.executable
    subprocess.run([base, "-m", "venv", venv], check=True)
    subprocess.run([f"{venv}/bin/pip", "install", "-q", "cryptofeed"], check=True)
    return f"{venv}/bin/python"


def percentiles(samples: list[int], points: tuple[float, ...] = (50, 99, 99.9)) -> dict[str, float]:
    """Percentiles of ns samples, in µs."""
    if not samples:
        return {f"p{p:g}_us": 0.0 for p in points} | {"max_us": 0.0, "n": 0}
    s = sorted(samples)
    n = len(s)
    out = {f"p{p:g}_us": round(s[min(n - 1, int(n * p / 100))] / 1000, 1) for p in points}
    out["max_us"] = round(s[-1] / 1000, 1)
    out["n"] = n
    return out
