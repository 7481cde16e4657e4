"""Paper trading: fills at detection, latency haircut against the books at execution, misses."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from arbwire.arb.detector import ArbDetector
from arbwire.arb.fees import FeeSchedule
from arbwire.arb.paper import PaperTrader
from arbwire.model import BookUpdate, OpportunityEvent
from arbwire.record.importers import read_cryptofeed
from arbwire.sync import BookSync, SequenceRule

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def make_sync(venue, symbol, bids, asks, recv_ns=T0) -> BookSync:
    sync = BookSync(venue, symbol, SequenceRule())
    sync.on_update(BookUpdate(venue, symbol, list(bids), list(asks), 1, 1, is_snapshot=True, recv_ns=recv_ns))
    return sync


def diff(sync, bids=(), asks=(), recv_ns=T0) -> None:
    nxt = sync.last_id + 1
    sync.on_update(BookUpdate(sync.venue, sync.symbol, list(bids), list(asks), nxt, nxt, recv_ns=recv_ns))
    assert sync.synced, sync.reason


def setup(latency_us=0.0, min_net_bps=None):
    a = make_sync("binance", "BTC-USDT", [("99", "1")], [("100", "1"), ("100.5", "2")])
    b = make_sync("okx", "BTC-USDT", [("101", "1.5"), ("100.2", "3")], [("103", "1")])
    fees = FeeSchedule()
    det = ArbDetector(fees, min_net_bps=10)
    det.register_all([a, b])
    paper = PaperTrader(fees, latency_us=latency_us, min_net_bps=min_net_bps)
    return a, b, det, paper


def test_zero_latency_fills_at_detected_prices():
    a, b, det, paper = setup()
    (opp,) = det.check(b)
    fill = paper.on_opportunity(opp)
    assert fill is not None and fill.status == "filled"
    assert fill.size == opp.size and fill.buy_price == opp.buy_price and fill.sell_price == opp.sell_price
    # averages are rounded against us, so the paper pnl is at most the detected profit, within 1e-15
    assert Decimal(opp.profit) - Decimal("1e-15") <= Decimal(fill.pnl) <= Decimal(opp.profit)
    assert paper.on_opportunity(opp) is not None  # each OPENED is a trade
    closed = det.on_unsynced(a, T0 + MS)
    assert paper.on_opportunity(closed[0]) is None  # CLOSED/CHANGED are not traded
    s = paper.summary()
    assert s["trades"] == 2 and s["missed"] == 0
    assert Decimal(s["pnl"]["USDT"]) > 0
    assert s["positions"] == {"binance:BTC": str(2 * Decimal(opp.size)), "okx:BTC": str(-2 * Decimal(opp.size))}
    # fees: 10 bps of each leg's notional
    size = Decimal(opp.size)
    expected_fees = 2 * size * (Decimal(opp.buy_price) + Decimal(opp.sell_price)) / 1000
    assert Decimal(s["fees"]["USDT"]) == pytest.approx(expected_fees, abs=Decimal("1e-12"))


def test_latency_uses_books_at_execution_time():
    a, b, det, paper = setup(latency_us=500)
    (opp,) = det.check(b, T0)
    assert paper.on_opportunity(opp) is None
    assert paper.due(T0 + 499_000) == []
    # while the order is in flight the okx top bid is gone
    diff(b, bids=[("101", "0")], recv_ns=T0 + 200_000)
    fills = paper.run_due(T0 + 500_000, det.syncs)
    (fill,) = fills
    assert fill.executed_ns - fill.detected_ns == 500_000 == fill.latency_ns
    assert fill.status == "filled" and fill.size == opp.size
    assert Decimal(fill.sell_price) == Decimal("100.2")
    assert Decimal(fill.pnl) < 0 < Decimal(opp.profit)
    assert paper.pending == []
    s = paper.summary()
    assert Decimal(s["pnl"]["USDT"]) < 0 and Decimal(s["expected_pnl"]["USDT"]) > 0


def test_edge_gone_is_a_miss_with_min_net():
    a, b, det, paper = setup(latency_us=1000, min_net_bps=0)
    (opp,) = det.check(b, T0)
    paper.on_opportunity(opp)
    diff(b, bids=[("101", "0")], recv_ns=T0 + 10)
    (fill,) = paper.run_due(T0 + MS, det.syncs)
    assert fill.status == "missed" and fill.reason == "edge gone"
    assert paper.summary()["misses"] == {"edge gone": 1}
    assert paper.summary()["pnl"] == {}


def test_unsynced_book_at_execution_is_a_miss():
    a, b, det, paper = setup(latency_us=1)
    (opp,) = det.check(b, T0)
    paper.on_opportunity(opp)
    b.invalidate("gap", T0 + 1)
    (fill,) = paper.run_due(T0 + 1000, det.syncs)
    assert fill.status == "missed" and fill.reason == "sell book unavailable"
    assert paper.execute(opp, {}, T0).reason == "buy book unavailable"


def test_thin_book_fills_partially():
    a, b, det, paper = setup(latency_us=1)
    (opp,) = det.check(b, T0)
    # execute against plain L2Books where the buy side has only 0.5 left
    thin = make_sync("binance", "BTC-USDT", [("99", "1")], [("100", "0.5")]).book
    fill = paper.execute(opp, {"binance": thin, "okx": b.book}, T0 + 5)
    assert fill.status == "partial" and fill.reason == "buy side thin"
    assert Decimal(fill.size) == Decimal("0.5") and fill.wanted == opp.size
    assert Decimal(fill.buy_price) == 100 and Decimal(fill.sell_price) == 101
    # 0.5 * (101 - 100) - fees 0.5 * (100 + 101) / 1000
    assert Decimal(fill.pnl) == Decimal("0.5") - Decimal("0.1005")


def test_pending_queue_kept_in_due_order():
    paper = PaperTrader(FeeSchedule(), latency_us=10)
    a, b, det, _ = setup()
    (opp,) = det.check(b, T0 + 50)
    import msgspec

    early = msgspec.structs.replace(opp, recv_ns=T0)
    paper.on_opportunity(opp)
    paper.on_opportunity(early)
    assert [o.recv_ns for o in paper.due(T0 + 10_000)] == [T0]
    assert [o.recv_ns for o in paper.due(T0 + 10_050)] == [T0 + 50]
    assert opp.event is OpportunityEvent.OPENED


def test_a_full_queue_turns_new_opportunities_into_misses_and_memory_stays_bounded():
    paper = PaperTrader(FeeSchedule(), latency_us=10, max_pending=2, keep_fills=3)
    _, b, det, _ = setup()
    (opp,) = det.check(b, T0 + 50)
    assert paper.on_opportunity(opp) is None and paper.on_opportunity(opp) is None
    missed = [paper.on_opportunity(opp) for _ in range(5)]
    assert all(f is not None and f.status == "missed" and f.reason == "paper queue full" for f in missed)
    assert len(paper.pending) == 2 and len(paper.fills) == 3  # only the latest fills are kept
    assert paper.summary()["misses"] == {"paper queue full": 5} and paper.missed == 5


def test_paper_on_real_book(real_data):
    for rec in read_cryptofeed(real_data / "cryptofeed" / "BINANCE.http.0.0"):
        if "symbol=RUNEEUR&" in rec.url:
            body = json.loads(rec.payload)
            break
    else:
        raise AssertionError("no RUNEEUR snapshot")
    bids, asks = body["bids"], body["asks"]
    up = [(f"{Decimal(p) + Decimal('0.08'):.8f}", s) for p, s in bids]
    a = make_sync("binance", "RUNE-EUR", bids, asks)
    b = make_sync("gateio", "RUNE-EUR", up, [(f"{Decimal(p) + Decimal('0.08'):.8f}", s) for p, s in asks])
    fees = FeeSchedule()
    det = ArbDetector(fees, max_notional=500)
    paper = PaperTrader(fees)
    det.on_event = paper.on_opportunity
    det.register_all([a, b])
    (opp,) = det.check(b)
    assert (opp.buy_venue, opp.sell_venue) == ("binance", "gateio")
    assert Decimal(opp.size) * Decimal(opp.buy_price) <= 500
    fill = paper.fills[0]
    assert fill.status == "filled" and Decimal(fill.pnl) > 0
    # executing later against the unchanged books gives the same trade (exact, where the
    # detected fill used averages rounded to 1e-18 against us)
    later = paper.execute(opp, det.syncs("RUNE-EUR"), T0)
    assert later.size == fill.size
    assert Decimal(fill.pnl) <= Decimal(later.pnl) <= Decimal(fill.pnl) + Decimal("1e-15")
    assert Decimal(later.pnl) - Decimal(opp.profit) < Decimal("1e-17")
