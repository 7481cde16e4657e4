"""The arbwire command as a user runs it: a real process, real output."""

from __future__ import annotations

import json
import subprocess
import sys


def _arbwire(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "arbwire.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_demo_json_summary_shows_synced_books_and_opportunities():
    proc = _arbwire("demo", "--duration", "4", "--json", "--seed", "7")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert set(summary["venues"]) == {"binance", "okx", "bybit", "gateio", "htx"}
    for venue, v in summary["venues"].items():
        assert v["frames"] > 20, venue
        assert all(b["state"] == "SYNCED" for b in v["books"].values()), (venue, v["books"])
        assert v["latency"]["event_to_recv_us"]["count"] > 0
        assert v["latency"]["processing_us"]["p99"] > 0
    assert summary["opportunities"]["opened"] >= 1
    assert summary["opportunity_events"][0]["event"] == "opened"


def test_run_with_a_bad_config_names_the_file_and_key(tmp_path):
    bad = tmp_path / "arbwire.toml"
    bad.write_text("[arb]\nmin_net_bps = 'lots'\n")
    proc = _arbwire("run", "--config", str(bad), timeout=30)
    assert proc.returncode == 2
    assert f"{bad}: arb.min_net_bps" in proc.stderr


def test_ctrl_c_ends_the_demo_with_its_summary():
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, "-m", "arbwire.cli", "demo", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    summary = json.loads(out)
    assert summary["duration_s"] >= 1.0  # ran until the signal, not just through start-up
    assert all(v["frames"] > 0 for v in summary["venues"].values())
