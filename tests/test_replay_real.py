"""Real captures replay through the importers and the live code with the results the data README lists."""

from __future__ import annotations

import json

import msgspec
import pytest

from arbwire.cli import main
from arbwire.numbers import to_units
from arbwire.record.importers import (
    Kind,
    describe_cryptofeed,
    describe_hftbacktest,
    read_hftbacktest,
)
from arbwire.record.replay import Emitter, Replayer, detect_format
from arbwire.venues.registry import VENUES

HFT = "hftbacktest/binance_spot_ethusdt_20240808.gz"


def _replay(paths, emit=(), out=None, **kw):
    r = Replayer(emit=emit, out=Emitter(out), **kw)
    r.add_paths(paths)
    return r, r.run()


def _books(summary, venue):
    return summary["venues"][venue]["books"]


def test_formats_and_venues_are_told_from_the_files(real_data):
    cf = real_data / "cryptofeed"
    assert detect_format(cf / "OKX.ws.1.0") == "cryptofeed"
    assert detect_format(real_data / HFT) == "hftbacktest"
    expected = {
        "BINANCE.ws.1.0": ("binance", {}, ["NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"]),
        "BINANCE.http.0.0": ("binance", {}, ["NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"]),
        "BINANCE_FUTURES.ws.1.0": ("binance", {"futures": True}, ["SUSHI-USDT", "AKRO-USDT", "KEEP-USDT", "CTK-USDT"]),
        "OKX.ws.1.0": ("okx", {}, ["BTC-USD-220527", "UNI-USD-PERP", "BTC-USDT"]),
        "GATEIO.ws.1.0": ("gateio", {"book_channel": "order_book_update"}, None),
        "HUOBI.ws.44.0": ("htx", {"book_channel": "depth", "depth_type": "step0", "link": "ws"}, None),
    }
    for name, (registry, options, symbols) in expected.items():
        info = describe_cryptofeed(cf / name)
        assert (info.registry, info.options) == (registry, options), name
        if symbols is not None:
            assert info.symbols == symbols, name
    assert describe_cryptofeed(cf / "GATEIO.ws.1.0").symbols[:2] == ["INK-USDT", "NEO-BTC"]
    assert len(describe_cryptofeed(cf / "HUOBI.ws.44.0").symbols) == 10
    assert describe_cryptofeed(cf / "BINANCE.http.0.0").channel == "http"
    info = describe_hftbacktest(real_data / HFT)
    assert (info.registry, info.symbols) == ("binance", ["ETH-USDT"])


def test_binance_spot_every_symbol_synced_no_gap_never_crossed(real_data):
    cf = real_data / "cryptofeed"
    _, s = _replay([cf / "BINANCE.ws.1.0", cf / "BINANCE.http.0.0"])
    assert s["ok"] and s["errors"] == []
    v = s["venues"]["binance"]
    assert v["snapshots_served"] == 4 and v["snapshots_unmatched"] == 0 and v["bad_frames"] == 0
    assert set(v["books"]) == {"NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"}
    for symbol, b in v["books"].items():
        assert b["state"] == "SYNCED", (symbol, b)
        assert b["gaps"] == b["resyncs"] == b["crossed"] == 0, symbol
        assert to_units(b["bid"]) < to_units(b["ask"]), symbol
    assert v["book_updates"] > 100


def test_usdm_pu_chain_holds(real_data):
    cf = real_data / "cryptofeed"
    _, s = _replay([cf / "BINANCE_FUTURES.ws.1.0", cf / "BINANCE_FUTURES.http.0.0"])
    v = s["venues"]["binance-usdm"]
    for symbol, b in v["books"].items():
        assert b["state"] == "SYNCED" and b["gaps"] == 0 and b["resyncs"] == 0 and b["crossed"] == 0, symbol
    assert v["book_updates"] > 600


def test_okx_290_checksums_pass_through_the_okx_adapter(real_data):
    _, s = _replay([real_data / "cryptofeed" / "OKX.ws.1.0"])
    books = _books(s, "okx")
    assert sum(b["checksums_ok"] for b in books.values()) == 290
    assert sum(b["checksums_failed"] for b in books.values()) == 0
    assert all(b["state"] == "SYNCED" and b["gaps"] == 0 for b in books.values())


def test_gate_syncs(real_data):
    cf = real_data / "cryptofeed"
    _, s = _replay([cf / "GATEIO.ws.1.0", cf / "GATEIO.http.0.0"])
    v = s["venues"]["gateio"]
    assert v["snapshots_served"] == 10 and v["bad_frames"] == 0
    assert all(b["state"] == "SYNCED" and b["gaps"] == 0 and b["crossed"] == 0 for b in v["books"].values())
    assert sum(b["applied"] for b in v["books"].values()) == 159


def test_huobi_maps_to_htx_or_is_skipped_gracefully(real_data, monkeypatch):
    path = real_data / "cryptofeed" / "HUOBI.ws.44.0"
    if "htx" in VENUES:
        _, s = _replay([path])
        v = s["venues"]["htx"]
        assert v["bad_frames"] == 0 and v["book_updates"] == 292
        assert all(b["crossed"] == 0 for b in v["books"].values())
    monkeypatch.delitem(VENUES, "htx", raising=False)
    r, s = _replay([path, real_data / "cryptofeed" / "OKX.ws.1.0"])
    assert [k["files"] for k in s["skipped"]] == [[str(path)]]
    assert "htx" in s["skipped"][0]["reason"]
    assert s["ok"] and list(s["venues"]) == ["okx"]


def test_all_captures_together_each_venue_its_own_stream(real_data):
    cf = real_data / "cryptofeed"
    files = sorted(p for p in cf.iterdir() if ".ws." in p.name or ".http." in p.name)
    _, s = _replay(files)
    expected = {"binance", "binance-usdm", "okx", "gateio"} | ({"htx"} if "htx" in VENUES else set())
    assert set(s["venues"]) == expected
    for venue, v in s["venues"].items():
        assert v["bad_frames"] == 0, venue
        assert all(b["state"] == "SYNCED" and b["gaps"] == 0 for b in v["books"].values()), venue


def test_hftbacktest_tops_equal_book_ticker_where_update_ids_coincide(real_data, tmp_path):
    out = tmp_path / "tops.jsonl"
    assert main(["replay", str(real_data / HFT), "--emit", "tops", "--out", str(out)]) == 0
    tops = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(tops) > 3000
    by_seq = {t["seq"]: t for t in tops}
    compared = 0
    for rec in read_hftbacktest(real_data / HFT):
        if rec.kind is not Kind.RECV or b"@bookTicker" not in rec.payload[:40]:
            continue
        q = msgspec.json.decode(rec.payload)["data"]
        top = by_seq.get(q["u"])
        if top is None:
            continue
        assert (top["bid"], top["bid_size"], top["ask"], top["ask_size"]) == (q["b"], q["B"], q["a"], q["A"])
        compared += 1
    assert compared > 100, compared


def test_emit_tops_line_format(real_data, capsys):
    assert main(["replay", str(real_data / HFT), "--emit", "tops", "--max"]) == 0
    lines = capsys.readouterr().out.splitlines()
    first = json.loads(lines[0])
    assert list(first) == ["type", "venue", "symbol", "seq", "bid", "bid_size", "ask", "ask_size", "recv_ns"]
    assert first["type"] == "top" and first["venue"] == "binance" and first["symbol"] == "ETH-USDT"
    for key in ("bid", "bid_size", "ask", "ask_size"):
        assert isinstance(first[key], str) and to_units(first[key]) > 0
    assert first["bid"] == "2683.80000000"  # the venue's exact text, not a float
    assert isinstance(first["seq"], int) and isinstance(first["recv_ns"], int)
    seqs = [json.loads(line)["seq"] for line in lines]
    assert seqs == sorted(seqs)


def test_json_summary(real_data, capsys):
    cf = real_data / "cryptofeed"
    assert main(["replay", str(cf / "OKX.ws.1.0"), str(real_data / HFT), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["type"] == "summary" and summary["ok"]
    assert summary["frames"] == 410 + 33617
    okx = summary["venues"]["okx"]["books"]["BTC-USDT"]
    assert {"state", "gaps", "resyncs", "checksums_ok", "checksums_failed", "crossed"} <= set(okx)
    assert summary["venues"]["binance"]["books"]["ETH-USDT"]["state"] == "SYNCED"
    assert summary["opportunities"]["opened"] == 0  # different symbols: nothing to compare


def test_capture_without_snapshot_ends_unsynced(real_data, tmp_path):
    from arbwire.record.rawfile import RawHeader, write_recording

    records = [r for r in read_hftbacktest(real_data / HFT) if r.kind is not Kind.HTTP]
    path = tmp_path / "nosnap.raw.zst"
    write_recording(path, RawHeader(venue="binance", registry="binance", symbols=["ETH-USDT"]), records)
    r, s = _replay([path], emit=["tops"], out=tmp_path / "tops.jsonl")
    b = s["venues"]["binance"]["books"]["ETH-USDT"]
    assert b["state"] == "BUFFERING" and b["bid"] is None and b["applied"] == 0
    assert s["venues"]["binance"]["snapshot_requests"] == 1
    assert (tmp_path / "tops.jsonl").read_text() == ""


def test_speed_paces_the_replay(real_data):
    import time

    path = real_data / "cryptofeed" / "OKX.ws.1.0"  # 10.8 s recorded
    t0 = time.monotonic()
    _, s = _replay([path], speed=100.0)
    elapsed = time.monotonic() - t0
    assert elapsed >= s["recorded_s"] / 100 * 0.9
    with pytest.raises(ValueError):
        Replayer(speed=0)
