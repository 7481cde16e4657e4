"""Smoke tests for the loopback benchmarks (bench/compare.py, bench/latency.py): a replay
server in-process, clients in their own processes, tiny counts; structure only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))


@pytest.fixture(autouse=True)
def _needs_real_data(real_data: Path) -> None:
    """The server replays the real Binance capture in ../shared/data/real."""


def test_replay_server_shifts_each_pass() -> None:
    import replay_server as rs

    cap = rs.load_capture(limit=50)
    depth = next(f for f in cap.frames if b"@depth" in f[:40])
    shifted = rs.shift_ids(depth, cap.span)
    assert json.loads(shifted)["data"]["U"] == json.loads(depth)["data"]["U"] + cap.span
    snap = json.loads(rs.shifted_snapshot(cap.snapshot, 2 * cap.span))
    assert snap["lastUpdateId"] == json.loads(cap.snapshot)["lastUpdateId"] + 2 * cap.span
    assert all(b"@trade" not in f[:40] for f in cap.frames)  # served as aggTrade
    assert rs.read_stamp(b'{"ts":%019d,"stream":"x"}' % 1234) == 1234


def test_compare_structure_and_cryptofeed_skip(capsys: pytest.CaptureFixture[str]) -> None:
    import compare

    code = compare.main(["--frames", "2000", "--passes", "2", "--repeat", "1", "--timeout", "30",
                         "--cf-python", "/nonexistent/python", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    result = json.loads(captured.out)
    clients = result["clients"]
    assert "cryptofeed not importable" in clients["cryptofeed"]["skipped"]
    assert "skipping cryptofeed" in captured.err
    for kind in ("picows", "arbwire"):
        r = clients[kind]
        assert r["complete"] and r["frames"] == 4000, r
        assert r["msgs_per_s"] > 0 and r["cpu_us_per_msg"] > 0
    # so few frames go by faster than a REST snapshot: syncing is not asserted, asking is
    assert {"book_updates", "resyncs", "book_state"} <= set(clients["arbwire"])
    assert clients["arbwire"]["server"]["snapshots_served"] >= 1
    assert "throughput_floor_over_arbwire" in result["ratios"]


def test_latency_structure(capsys: pytest.CaptureFixture[str]) -> None:
    import latency

    code = latency.main(["--frames", "2000", "--rate", "2000", "--seconds", "1", "--burst-passes", "1",
                         "--skip-max", "--timeout", "30", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.out + captured.err
    result = json.loads(captured.out)
    r = result["at_rate"]
    assert r["complete"] and r["rate"] == 2000
    for key in ("latency_all", "latency_depth"):
        lat = r[key]
        assert lat["n"] > 0
        assert 0 < lat["p50_us"] <= lat["p99_us"] <= lat["max_us"]
    assert result["burst"]["complete"]
    assert result["max_sustainable"] is None and result["trials"] == []
