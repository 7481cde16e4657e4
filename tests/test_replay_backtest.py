"""Backtest: several venues' recordings merged by receive time report the opportunities found."""

from __future__ import annotations

import json
from decimal import Decimal

import msgspec

from arbwire.cli import main
from arbwire.record.importers import Kind, Record
from arbwire.record.rawfile import RawHeader, write_recording
from arbwire.record.replay import Emitter, Replayer

T0 = 1_700_000_000_000_000_000
MS = 1_000_000


def _depth(ns: int, first: int, last: int, bids, asks, pu: int | None = None) -> Record:
    data = {"e": "depthUpdate", "E": ns // MS, "s": "BTCUSDT", "U": first, "u": last, "b": bids, "a": asks}
    if pu is not None:
        data["pu"] = pu
    return Record(Kind.RECV, ns, msgspec.json.encode({"stream": "btcusdt@depth@100ms", "data": data}))


def _snapshot(ns: int, url: str, last_id: int, bids, asks) -> Record:
    return Record(Kind.HTTP, ns, msgspec.json.encode({"lastUpdateId": last_id, "bids": bids, "asks": asks}), url)


def _recordings(tmp_path):
    spot = [
        Record(Kind.OPEN, T0, b"", "wss://stream.binance.com:9443/stream?streams=btcusdt@depth@100ms"),
        _depth(T0 + 1 * MS, 100, 100, [["99.00", "5"]], []),
        _snapshot(T0 + 5 * MS, "https://api.binance.com/api/v3/depth?symbol=BTCUSDT&limit=1000", 100,
                  [["99.00", "5"]], [["100.00", "5"], ["100.50", "1"]]),
        _depth(T0 + 900 * MS, 101, 101, [], [["100.00", "4"]]),  # a book update after the episode
    ]
    usdm = [
        Record(Kind.OPEN, T0 + 2 * MS, b"", "wss://fstream.binance.com/stream?streams=btcusdt@depth@100ms"),
        _depth(T0 + 3 * MS, 499, 500, [], [], pu=498),
        _snapshot(T0 + 10 * MS, "https://fapi.binance.com/fapi/v1/depth?symbol=BTCUSDT&limit=1000", 500,
                  [["101.00", "5"]], [["102.00", "5"]]),
        # 500 ms later the bid that made the edge is gone
        _depth(T0 + 510 * MS, 501, 501, [["101.00", "0"], ["99.90", "3"]], [], pu=500),
    ]
    a = tmp_path / "spot.raw.zst"
    b = tmp_path / "usdm.raw.zst"
    write_recording(a, RawHeader(venue="binance", registry="binance", symbols=["BTC-USDT"]), spot)
    write_recording(
        b, RawHeader(venue="binance-usdm", registry="binance", symbols=["BTC-USDT"], options={"futures": True}), usdm
    )
    return a, b


def test_merged_venues_report_opportunities_with_lifetime_and_profit(tmp_path):
    a, b = _recordings(tmp_path)
    r = Replayer(emit=["opportunities", "tops"], out=Emitter(tmp_path / "out.jsonl"))
    r.add_paths([a, b])
    s = r.run()
    assert s["ok"] and set(s["venues"]) == {"binance", "binance-usdm"}
    o = s["opportunities"]
    assert (o["opened"], o["closed"], o["open_at_end"]) == (1, 1, 0)
    (ep,) = o["episodes"]
    assert (ep["symbol"], ep["buy_venue"], ep["sell_venue"]) == ("BTC-USDT", "binance", "binance-usdm")
    assert ep["opened_ns"] == T0 + 10 * MS and ep["closed_ns"] == T0 + 510 * MS
    assert ep["lifetime_ns"] == 500 * MS
    # buy 5 at 100.00 paying 10 bps, sell 5 at 101.00 paying 5 bps
    expected = Decimal(5) * Decimal("101.00") * (1 - Decimal("0.0005")) - Decimal(5) * Decimal("100.00") * (
        1 + Decimal("0.001")
    )
    assert Decimal(ep["profit"]) == expected == Decimal(o["expected_profit"])
    assert Decimal(ep["size"]) == 5 and ep["net_bps"] > 80
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    events = [(x["event"], x["recv_ns"]) for x in lines if x["type"] == "opportunity"]
    assert events == [("opened", T0 + 10 * MS), ("closed", T0 + 510 * MS)]
    # merged by receive time: the lines come out in time order across both venues
    times = [x["recv_ns"] for x in lines]
    assert times == sorted(times)
    assert [x["venue"] for x in lines if x["type"] == "top"] == ["binance", "binance-usdm", "binance-usdm", "binance"]


def test_backtest_from_the_command_line(tmp_path, capsys):
    a, b = _recordings(tmp_path)
    assert main(["replay", str(a), str(b), "--json", "--emit", "opportunities", "--out", str(tmp_path / "o.parquet")]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["opportunities"]["episodes"][0]["lifetime_ns"] == 500 * MS
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "o.parquet")
    assert table.column("event").to_pylist() == ["opened", "closed"]
    assert table.column("lifetime_ns").to_pylist() == [0, 500 * MS]
    assert {"symbol", "buy_venue", "sell_venue", "profit", "net_bps", "local_timestamp"} <= set(table.column_names)


def test_venue_filter_replays_one_venue(tmp_path, capsys):
    a, b = _recordings(tmp_path)
    assert main(["replay", str(a), str(b), "--venue", "binance-usdm", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert list(summary["venues"]) == ["binance-usdm"] and summary["opportunities"]["opened"] == 0


def test_paper_trades_in_recorded_time_meet_the_books_as_they_were_after_the_latency(tmp_path):
    a, b = _recordings(tmp_path)
    from arbwire.config import PaperConfig

    def paper(latency_us: float) -> dict:
        r = Replayer(paper=PaperConfig(latency_us=latency_us))
        r.add_paths([a, b])
        return r.run()["paper"]

    # as detected: the fill is the detector's promise to the last digit
    p = paper(0)
    assert (p["trades"], p["filled"], p["missed"], p["pending"]) == (1, 1, 0, 0)
    assert Decimal(p["pnl"]["USDT"]) == Decimal(p["expected_pnl"]["USDT"]) > 0
    # 1 ms later nothing has changed in the recording: the same fill
    assert paper(1_000)["pnl"] == p["pnl"]
    # 600 ms later the 101.00 bid was gone (taken out at +510 ms): 3 sold at 99.90, at a loss
    late = paper(600_000)
    assert (late["trades"], late["partial"], late["filled"]) == (1, 1, 0)
    buy = Decimal(3) * Decimal("100.00")
    sell = Decimal(3) * Decimal("99.90")
    assert Decimal(late["pnl"]["USDT"]) == sell - buy - (buy * Decimal("0.001") + sell * Decimal("0.0005"))
    assert late["positions"] == {"binance:BTC": "3", "binance-usdm:BTC": "-3"}
    # 2 s later the recording has ended: the trade is still pending, never guessed
    assert (paper(2_000_000)["pending"], paper(2_000_000)["trades"]) == (1, 0)


def test_paper_trading_from_the_command_line(tmp_path, capsys):
    a, b = _recordings(tmp_path)
    assert main(["replay", str(a), str(b), "--json", "--paper-latency-us", "600000"]) == 0
    summary = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert summary["paper"]["latency_us"] == 600_000 and summary["paper"]["partial"] == 1
    assert main(["replay", str(a), str(b), "--json", "--no-paper"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["paper"] is None
    assert main(["replay", str(a), str(b)]) == 0
    assert "paper (1000 µs): 1 trades (1 filled, 0 partial, 0 missed), pnl USDT" in capsys.readouterr().err
    assert main(["replay", str(a), "--paper-latency-us", "-1"]) == 2


def test_paper_fills_are_emitted_as_lines_and_as_parquet(tmp_path):
    a, b = _recordings(tmp_path)
    from arbwire.config import PaperConfig

    r = Replayer(emit=["opportunities", "fills"], out=Emitter(tmp_path / "out.jsonl"),
                 paper=PaperConfig(latency_us=600_000))
    r.add_paths([a, b])
    r.run()
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [x["type"] for x in lines] == ["opportunity", "opportunity", "fill"]
    (fill,) = [x for x in lines if x["type"] == "fill"]
    assert (fill["status"], fill["reason"], fill["size"], fill["sell_price"]) == ("partial", "sell side thin", "3", "99.9")
    assert fill["detected_ns"] == T0 + 10 * MS and fill["executed_ns"] == T0 + 900 * MS
    assert fill["latency_ns"] == 890 * MS  # the first frame after the latency: the books it met
    assert Decimal(fill["pnl"]) == Decimal(r.summary()["paper"]["pnl"]["USDT"]) < 0
    assert main(["replay", str(a), str(b), "--emit", "fills,opportunities", "--paper-latency-us", "0",
                 "--out", str(tmp_path / "o.parquet")]) == 0
    import pyarrow.parquet as pq

    fills = pq.read_table(tmp_path / "o.fill.parquet")
    assert fills.column("status").to_pylist() == ["filled"] and fills.column("latency_ns").to_pylist() == [0]
    assert pq.read_table(tmp_path / "o.opportunity.parquet").num_rows == 2
