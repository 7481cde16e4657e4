"""The recorder: raw frames + normalized Parquet behind bounded queues; a live session
recorded against the simulators replays to the very tops the live engine saw."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from arbwire.model import BookUpdate, Opportunity, OpportunityEvent, Quote, Side, Trade
from arbwire.record.rawfile import RawReader
from arbwire.record.recorder import Recorder, RecorderOptions, attach_recorder
from arbwire.record.replay import Emitter, Replayer

NS = 1_723_161_254_024_619_568  # 2024-08-08T23:54:14Z
DATE = "2024-08-08"


def _events():
    return [
        Trade("binance", "ETH-USDT", "2683.80000000", "0.0031", Side.SELL, "7", NS - 5_000_000, NS),
        Quote("okx", "ETH-USDT", "2683.7", "1.5", "2683.9", "0.25", 42, NS - 1_000_000, NS + 1),
        BookUpdate("binance", "ETH-USDT", [("2683.80000000", "3.0292"), ("2683.7", "1")], [("2683.81", "31.4395")],
                   10, 10, -1, True, None, 0, NS + 2),
        BookUpdate("binance", "ETH-USDT", [("2683.7", "0")], [], 11, 11, -1, False, None, NS, NS + 3),
        Opportunity(OpportunityEvent.OPENED, "ETH-USDT", "okx", "binance", "2683.9", "2684.5", "0.25",
                    2.2, 0.1, "0.0001", 10, 20, NS + 4, NS + 4),
    ]


async def test_parquet_columns_partitions_and_exact_values(tmp_path):
    rec = Recorder(tmp_path)
    rec.start()
    for event in _events():
        rec.put(event)
    await rec.close()
    root = tmp_path / "parquet"
    kinds = sorted(p.name for p in root.iterdir())
    assert kinds == ["type=book", "type=opportunity", "type=quote", "type=trade"]
    trade_dir = root / "type=trade" / "venue=binance" / "symbol=ETH-USDT" / f"date={DATE}"
    assert len(list(trade_dir.glob("*.parquet"))) == 1

    trades = ds.dataset(root / "type=trade", format="parquet", partitioning="hive").to_table()
    assert trades.column_names == ["timestamp", "local_timestamp", "side", "price", "size", "trade_id",
                                   "venue", "symbol", "date"]
    assert str(trades.schema.field("timestamp").type) == "timestamp[ns, tz=UTC]"
    assert trades.column("local_timestamp").cast("int64").to_pylist() == [NS]
    assert trades.column("timestamp").cast("int64").to_pylist() == [NS - 5_000_000]
    assert trades.column("price").to_pylist() == [Decimal("2683.8")]
    assert trades.column("size").to_pylist() == [Decimal("0.0031")]
    assert trades.column("side").to_pylist() == ["sell"]
    assert trades.column("venue").to_pylist() == ["binance"] and trades.column("date").to_pylist() == [DATE]

    quotes = ds.dataset(root / "type=quote", format="parquet", partitioning="hive").to_table()
    assert quotes.column_names[:7] == ["timestamp", "local_timestamp", "bid_price", "bid_size", "ask_price",
                                      "ask_size", "update_id"]
    assert quotes.column("ask_size").to_pylist() == [Decimal("0.25")]

    book = ds.dataset(root / "type=book", format="parquet", partitioning="hive").to_table()
    assert book.column_names[:8] == ["timestamp", "local_timestamp", "is_snapshot", "side", "price", "size",
                                    "first_id", "last_id"]
    rows = list(zip(*(book.column(c).to_pylist() for c in ("is_snapshot", "side", "price", "size", "last_id")),
                    strict=True))
    assert rows == [
        (True, "bid", Decimal("2683.8"), Decimal("3.0292"), 10),
        (True, "bid", Decimal("2683.7"), Decimal("1"), 10),
        (True, "ask", Decimal("2683.81"), Decimal("31.4395"), 10),
        (False, "bid", Decimal("2683.7"), Decimal("0"), 11),
    ]
    assert book.column("timestamp").null_count == 3  # the snapshot carried no venue time

    opps = ds.dataset(root / "type=opportunity", format="parquet", partitioning="hive").to_table()
    assert opps.column("venue").to_pylist() == ["okx_binance"]
    assert opps.column("event").to_pylist() == ["opened"] and opps.column("profit").to_pylist() == [
        Decimal("0.0001")
    ]
    # one file read alone is plain Parquet too
    (one,) = trade_dir.glob("*.parquet")
    assert pq.read_table(one).num_rows == 1
    manifest = json.loads((tmp_path / "recording.json").read_text())
    assert manifest["events"]["parquet_rows"] == 7 and manifest["dropped"] == 0


async def test_full_queues_drop_oldest_and_the_holes_are_counted_and_recorded(tmp_path):
    opts = RecorderOptions(raw_queue=10, event_queue=3)
    rec = Recorder(tmp_path, opts)
    tap = rec.add_venue("binance", "binance", ["ETH-USDT"])
    rec.start()
    for i in range(25):  # the consumer can't run before we yield: 15 fall out of the queue
        tap("recv", b'{"n":%d}' % i, NS + i, "")
    for event in _events() * 2:
        rec.put(event)
    await asyncio.sleep(0.05)
    await rec.close()
    stats = rec.stats()
    assert stats["raw"]["binance"]["dropped"] == 15
    assert stats["events"]["dropped"] == 7
    assert stats["dropped"] == 22
    (path,) = stats["raw"]["binance"]["files"]
    records = list(RawReader(path))
    assert records[0].kind.name == "DROP" and records[0].payload == b"15"
    assert [r.payload for r in records[1:]] == [b'{"n":%d}' % i for i in range(15, 25)]
    assert json.loads((tmp_path / "recording.json").read_text())["dropped"] == 22
    r = Replayer()
    r.add_paths([path])
    assert r.run()["venues"]["binance"]["recorder_drops"] == 15


async def test_live_session_against_the_simulators_replays_to_identical_tops(tmp_path):
    runner = pytest.importorskip("arbwire.sim.runner")
    from arbwire.demo import demo_config
    from arbwire.engine import Engine

    sims = await runner.start_simulators(venues=("binance", "okx"), symbols=("BTC-USDT", "ETH-USDT"), seed=5)
    live: list[dict] = []
    try:
        engine = Engine(demo_config(sims.endpoints))
        recorder = attach_recorder(engine, tmp_path, RecorderOptions(block_records=64, flush_s=0.2))
        assert recorder in engine.sinks
        assert all(link.tap is not None for link in engine.links.values())
        for feed in engine.feeds.values():  # what the live engine's books said, after every update
            inner = feed.on_book

            def on_book(sync, upd, inner=inner):
                inner(sync, upd)
                bid, ask = sync.book.top()
                live.append({"type": "top", "venue": sync.venue, "symbol": sync.symbol, "seq": sync.last_id,
                             "bid": bid[0] if bid else None, "bid_size": bid[1] if bid else None,
                             "ask": ask[0] if ask else None, "ask_size": ask[1] if ask else None,
                             "recv_ns": upd.recv_ns})

            feed.on_book = on_book
        await engine.run(2.5)
    finally:
        await sims.close()
    stats = recorder.stats()
    assert stats["dropped"] == 0 and stats["errors"] == []
    assert set(stats["raw"]) == {"binance", "okx"}
    paths = [p for v in stats["raw"].values() for p in v["files"]]
    headers = {RawReader(p).header.venue: RawReader(p).header for p in paths}
    assert headers["okx"].ws_url.startswith("ws://127.0.0.1:") and headers["okx"].symbols == ["BTC-USDT", "ETH-USDT"]
    kinds = {r.kind.name for p in paths for r in RawReader(p)}
    assert {"OPEN", "RECV", "SENT", "HTTP"} <= kinds  # okx subscribes, binance fetches snapshots

    out = tmp_path / "replayed.jsonl"
    r = Replayer(emit=["tops"], out=Emitter(out))
    r.add_paths(paths)
    summary = r.run()
    replayed = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(live) > 20
    key = lambda t: (t["recv_ns"], t["venue"], t["symbol"], t["seq"])  # noqa: E731
    assert sorted(replayed, key=key) == sorted(live, key=key)
    for venue in ("binance", "okx"):
        assert all(b["state"] == "SYNCED" for b in summary["venues"][venue]["books"].values())
    assert summary["opportunities"]["opened"] == engine.opened

    book = ds.dataset(tmp_path / "parquet" / "type=book", format="parquet", partitioning="hive").to_table()
    assert set(book.column("venue").to_pylist()) == {"binance", "okx"}
    assert book.filter(ds.field("is_snapshot")).num_rows > 0
    assert json.loads((tmp_path / "recording.json").read_text())["raw"]["okx"]["records"] > 0


async def test_htx_books_and_companion_link_record_and_replay_to_identical_tops(tmp_path):
    """HTX runs two connections (mbp books on /feed, bbo and trades on /ws); both land in
    one recording, and replaying it rebuilds the same books with nothing left over."""
    runner = pytest.importorskip("arbwire.sim.runner")
    from arbwire.demo import demo_config
    from arbwire.engine import Engine
    from arbwire.model import Quote, Trade

    sims = await runner.start_simulators(venues=("htx",), symbols=("BTC-USDT", "ETH-USDT"), seed=6)
    live: list[tuple] = []
    seen: list[object] = []
    try:
        engine = Engine(demo_config(sims.endpoints))
        attach_recorder(engine, tmp_path, RecorderOptions(block_records=64, flush_s=0.2))
        engine.listeners.append(seen.append)
        feed = engine.feeds["htx"]
        inner = feed.on_book

        def on_book(sync, upd):
            inner(sync, upd)
            bid, ask = sync.book.top()
            live.append((upd.recv_ns, sync.symbol, sync.last_id, bid[0] if bid else None, ask[0] if ask else None))

        feed.on_book = on_book
        await engine.run(2.5)
    finally:
        await sims.close()
    assert len(engine.links["htx"].shards) == 2
    assert any(isinstance(e, Quote) for e in seen) and any(isinstance(e, Trade) for e in seen)
    paths = [p for p in (tmp_path / "raw").rglob("*") if p.is_file()]
    out = tmp_path / "replayed.jsonl"
    r = Replayer(emit=["tops", "trades", "quotes"], out=Emitter(out))
    r.add_paths(paths)
    summary = r.run()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    replayed = [(t["recv_ns"], t["symbol"], t["seq"], t["bid"], t["ask"]) for t in lines if t["type"] == "top"]
    assert len(live) > 20
    assert sorted(replayed) == sorted(live)
    assert {t["type"] for t in lines} >= {"top", "trade", "quote"}
    htx = summary["venues"]["htx"]
    assert all(b["state"] == "SYNCED" for b in htx["books"].values())
    assert (htx["opens"], htx["companion_opens"]) == (1, 1)
    assert htx["bad_frames"] == 0  # and the venue's own refusals, if any, exactly as seen live:
    assert htx["venue_errors"] == [f"{e.symbol}: {e.code} {e.message}" for e in engine.errors]


async def test_binance_over_sbe_records_and_replays_to_identical_tops_without_its_key(tmp_path):
    """Binary SBE frames, JSON replies and REST snapshots land in one recording; the key
    the session used is not written anywhere, and replay needs none."""
    runner = pytest.importorskip("arbwire.sim.runner")
    from arbwire.config import Config, VenueConfig
    from arbwire.engine import Engine

    key = "sbe-secret-key"
    sims = await runner.start_simulators(
        venues=("binance",), symbols=("BTC-USDT", "ETH-USDT"), seed=8, tick_ms=20,
        venue_options={"binance": {"sbe": True, "sbe_api_keys": (key,)}},
    )
    live: list[tuple] = []
    try:
        ep = sims.endpoints["binance"]
        engine = Engine(Config(venues={"binance": VenueConfig(
            symbols=["BTC-USDT", "ETH-USDT"], ws_url=ep.ws_url, rest_url=ep.rest_url,
            options={"encoding": "sbe", "api_key": key},
        )}))  # fmt: skip
        attach_recorder(engine, tmp_path, RecorderOptions(block_records=64, flush_s=0.2))
        feed = engine.feeds["binance"]
        inner = feed.on_book

        def on_book(sync, upd):
            inner(sync, upd)
            bid, ask = sync.book.top()
            live.append((upd.recv_ns, sync.symbol, sync.last_id, bid, ask))

        feed.on_book = on_book
        await engine.run(2.0)
    finally:
        await sims.close()
    paths = [p for p in (tmp_path / "raw").rglob("*") if p.is_file()]
    header = RawReader(paths[0]).header
    assert header.options == {"encoding": "sbe"}
    assert not any(key.encode() in p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    binary = [r for p in paths for r in RawReader(p) if r.kind.name == "RECV" and r.payload[:1] != b"{"]
    assert len(binary) > 50
    out = tmp_path / "replayed.jsonl"
    r = Replayer(emit=["tops"], out=Emitter(out))
    r.add_paths(paths)
    summary = r.run()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    replayed = [(t["recv_ns"], t["symbol"], t["seq"], (t["bid"], t["bid_size"]) if t["bid"] else None,
                 (t["ask"], t["ask_size"]) if t["ask"] else None) for t in lines]  # fmt: skip
    assert len(live) > 20 and sorted(replayed) == sorted(live)
    books = summary["venues"]["binance"]["books"]
    assert set(books) == {"BTC-USDT", "ETH-USDT"} and all(b["state"] == "SYNCED" for b in books.values())
    assert summary["venues"]["binance"]["bad_frames"] == 0
