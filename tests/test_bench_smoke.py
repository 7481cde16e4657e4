"""Smoke tests for the benchmarks in bench/: tiny counts, output structure only, never speed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
sys.path.insert(0, str(BENCH))


@pytest.fixture(autouse=True)
def _needs_real_data(real_data: Path) -> None:
    """Every benchmark replays the real captures in ../shared/data/real."""


def _run(main, argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict:  # type: ignore[no-untyped-def]
    code = main([*argv, "--json"])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_stages_every_venue(capsys: pytest.CaptureFixture[str]) -> None:
    import stages

    result = _run(stages.main, ["--passes", "1", "--max-records", "400"], capsys)
    assert [v["venue"] for v in result["venues"]] == list(stages.CAPTURES)
    for v in result["venues"]:
        assert set(v["stages"]) == set(stages.STAGES)
        assert v["stages"]["decode"]["n"] > 0, v["venue"]
        assert v["stages"]["frame_to_opportunity"]["n"] == v["stages"]["decode"]["n"]
        assert set(v["ratios"]) == {"decode", "apply"}


def test_memory_counts_messages(capsys: pytest.CaptureFixture[str]) -> None:
    import memory

    result = _run(memory.main, ["--messages", "40000", "--every", "20000"], capsys)
    assert result["messages"] == 40000
    assert result["passes"] == 2
    assert result["book"]["state"] == "SYNCED"
    for key in ("rss_before_mb", "rss_after_mb", "growth_mb", "growth_after_first_pass_mb", "peak_rss_mb"):
        assert isinstance(result[key], float)
    assert [n for n, _ in result["samples"]][:2] == [0, 33617]


def test_sbe_rows_cover_every_stream(capsys: pytest.CaptureFixture[str]) -> None:
    import sbe

    result = _run(sbe.main, ["--repeats", "1"], capsys)
    rows = {r["kind"]: r for r in result["rows"]}
    assert set(rows) == {"bookTicker", "trade", "depth"}
    assert rows["depth"]["frames"] == 3434 and rows["bookTicker"]["frames"] == 24077
    for r in rows.values():
        assert r["sbe_bytes"] < r["json_bytes"]  # the binary form is smaller on every stream
        assert r["json_ns"] > 0 and r["sbe_ns"] > 0 and r["sbe_python_ns"] > 0


def test_htx_mbp_increments_chain_and_sync(capsys: pytest.CaptureFixture[str]) -> None:
    import htx_mbp

    result = _run(htx_mbp.main, ["--passes", "1"], capsys)
    assert result["increments_per_pass"] > 200 and result["symbols"] > 5
    stages = result["stages"]
    # every increment after the books synced applied: the derived chain has no gap
    assert result["applied_per_pass"] == stages["apply"]["n"] == stages["frame_to_opportunity"]["n"] > 200
    assert stages["decode"]["n"] == result["increments_per_pass"]
    assert stages["fixture_decode"]["n"] == result["fixture_increments"] == 5


def test_frames_reach_the_engine_through_every_layer(capsys: pytest.CaptureFixture[str]) -> None:
    import frames

    result = _run(frames.main, ["--passes", "2", "--frames", "300"], capsys)
    assert result["frames"] == {"bookTicker": 300, "trade": 300}
    # feed and link layers ran twice per pass each (the session layer emits no events)
    counted = result["counted"]
    assert counted == {"quotes": 2 * 2 * 300, "trades": 2 * 2 * 300, "link_frames": 2 * 2 * 300, "bad_frames": 0}
    for row in result["ns_per_frame"].values():
        assert set(row) == {"json.loads (baseline)", "session.on_frame", "feed.on_frame", "link frame handler"}
        assert all(v > 0 for v in row.values())
