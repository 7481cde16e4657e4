"""Cross-venue detector: exact sizes against a brute-force Decimal oracle, on real and random books."""

from __future__ import annotations

import json
from decimal import Decimal, localcontext

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arbwire.arb.detector import ArbDetector
from arbwire.arb.fees import DEFAULT_TAKER_BPS, FeeError, FeeSchedule, bps_to_units
from arbwire.arb.walk import walk_edge
from arbwire.model import BookUpdate, OpportunityEvent
from arbwire.numbers import to_units
from arbwire.record.importers import read_cryptofeed
from arbwire.sync import BookSync, SequenceRule

MS = 1_000_000
T0 = 1_633_998_512_320_639_000

# ---------------------------------------------------------------- helpers


def make_sync(venue: str, symbol: str, bids, asks, recv_ns: int = T0) -> BookSync:
    sync = BookSync(venue, symbol, SequenceRule())
    sync.on_update(BookUpdate(venue, symbol, list(bids), list(asks), 1, 1, is_snapshot=True, recv_ns=recv_ns))
    assert sync.synced
    return sync


def diff(sync: BookSync, bids=(), asks=(), recv_ns: int = T0) -> None:
    nxt = sync.last_id + 1
    sync.on_update(BookUpdate(sync.venue, sync.symbol, list(bids), list(asks), nxt, nxt, recv_ns=recv_ns))
    assert sync.synced, sync.reason


def shifted(levels, delta: str) -> list[tuple[str, str]]:
    d = Decimal(delta)
    return [(f"{Decimal(p) + d:.8f}", s) for p, s in levels]


def real_snapshot(real_data, symbol: str = "NKNUSDT"):
    for rec in read_cryptofeed(real_data / "cryptofeed" / "BINANCE.http.0.0"):
        if f"symbol={symbol}&" in rec.url:
            body = json.loads(rec.payload)
            return body["bids"], body["asks"]
    raise AssertionError(f"no {symbol} snapshot in the capture")


def _D(x) -> Decimal:
    return x if isinstance(x, Decimal) else Decimal(str(x))


def _walk(levels, q: Decimal):
    """Notional of taking q from levels (Decimal), or None if the side is too thin."""
    left, total = q, Decimal(0)
    for p, s in levels:
        if left <= 0:
            break
        take = min(left, s)
        total += take * p
        left -= take
    return None if left > 0 else total


def _clears(asks, bids, q, fb, fs, m, cap) -> bool:
    cost = _walk(asks, q)
    proceeds = _walk(bids, q)
    if cost is None or proceeds is None:
        return False
    if cap is not None and cost > cap:
        return False
    return proceeds * (1 - fs) >= cost * (1 + fb) * (1 + m)


def oracle(asks, bids, fee_buy_bps, fee_sell_bps, min_bps, cap, decimals, *, linear=False, strict_top=False):
    """Largest size on the 10**-decimals grid whose walked averages clear min edge.

    Plain Decimal at high precision. ``linear`` steps every grid point (no monotonicity
    assumed); otherwise bisection over the grid. Returns (size, cost, proceeds).
    """
    with localcontext() as ctx:
        ctx.prec = 120
        asks = [(_D(p), _D(s)) for p, s in asks]
        bids = [(_D(p), _D(s)) for p, s in bids]
        fb, fs = _D(fee_buy_bps) / 10_000, _D(fee_sell_bps) / 10_000
        m = _D(min_bps) / 10_000
        cap = None if cap is None else _D(cap)
        step = Decimal(1).scaleb(-decimals)
        if strict_top and not bids[0][0] * (1 - fs) > asks[0][0] * (1 + fb) * (1 + m):
            return Decimal(0), Decimal(0), Decimal(0)
        depth = min(sum(s for _, s in asks), sum(s for _, s in bids))
        kmax = int(depth / step)
        if linear:
            best = 0
            for k in range(1, kmax + 1):
                if _clears(asks, bids, k * step, fb, fs, m, cap):
                    best = k
        else:
            lo, hi = 0, kmax  # lo clears (or is 0), answer in [lo, hi]
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if _clears(asks, bids, mid * step, fb, fs, m, cap):
                    lo = mid
                else:
                    hi = mid - 1
            best = lo
        q = best * step
        return q, _walk(asks, q) or Decimal(0), _walk(bids, q) or Decimal(0)


def check_against_oracle(opp, asks, bids, fb, fs, min_bps, cap, decimals):
    q, cost, proceeds = oracle(asks, bids, fb, fs, min_bps, cap, decimals)
    assert opp is not None and q > 0
    assert Decimal(opp.size) == q
    with localcontext() as ctx:
        ctx.prec = 120
        profit = proceeds * (1 - _D(fs) / 10_000) - cost * (1 + _D(fb) / 10_000)
        assert Decimal(opp.profit) == profit.quantize(Decimal("1e-18"), rounding="ROUND_FLOOR")
        assert Decimal(opp.buy_price) == (cost / q).quantize(Decimal("1e-18"), rounding="ROUND_CEILING")
        assert Decimal(opp.sell_price) == (proceeds / q).quantize(Decimal("1e-18"), rounding="ROUND_FLOOR")
        net = proceeds * (1 - _D(fs) / 10_000) / (cost * (1 + _D(fb) / 10_000)) - 1
        assert opp.net_bps == pytest.approx(float(net * 10_000), abs=1e-9)
        assert opp.gross_bps == pytest.approx(float((proceeds / cost - 1) * 10_000), abs=1e-9)
    assert opp.net_bps >= min_bps - 1e-9


# ---------------------------------------------------------------- fees


def test_fee_defaults_are_base_tier_and_configurable():
    fees = FeeSchedule()
    assert fees.bps("binance") == 10 and fees.bps("htx") == 20
    assert set(DEFAULT_TAKER_BPS) >= {"binance", "okx", "bybit", "gateio", "htx"}
    assert fees.units("okx") == 100_000 and fees.rate("okx") == Decimal("0.001")
    assert fees.bps("okx-swap") == 10  # prefix fallback
    custom = FeeSchedule({"binance": "7.5", "newvenue": 3})
    assert custom.bps("binance") == Decimal("7.5") and custom.bps("newvenue") == 3
    with pytest.raises(FeeError):
        custom.units("nowhere")
    assert FeeSchedule(default_bps=1).bps("nowhere") == 1
    with pytest.raises(FeeError):
        bps_to_units("0.00001")
    with pytest.raises(FeeError):
        bps_to_units(-1)
    assert bps_to_units(7.5) == 75_000


# ---------------------------------------------------------------- real books


@pytest.fixture(scope="module")
def nkn(real_data):
    return real_snapshot(real_data)


def test_real_book_shifted_up_buys_binance_sells_okx(nkn):
    bids, asks = nkn
    okx_bids, okx_asks = shifted(bids, "0.0020"), shifted(asks, "0.0020")
    binance = make_sync("binance", "NKN-USDT", bids, asks)
    okx = make_sync("okx", "NKN-USDT", okx_bids, okx_asks)
    det = ArbDetector(FeeSchedule(), min_net_bps=10, max_notional=None)
    det.register(binance)
    assert det.check(binance) == []  # alone: nothing to compare with
    events = det.check(okx)
    assert [e.event for e in events] == [OpportunityEvent.OPENED]
    opp = events[0]
    assert (opp.buy_venue, opp.sell_venue, opp.symbol) == ("binance", "okx", "NKN-USDT")
    check_against_oracle(opp, asks, okx_bids, 10, 10, 10, None, 8)
    assert opp.buy_quote_age_ns == 0 and opp.sell_quote_age_ns == 0


def test_real_book_shifted_down_buys_okx_sells_binance(nkn):
    bids, asks = nkn
    okx_bids, okx_asks = shifted(bids, "-0.0020"), shifted(asks, "-0.0020")
    binance = make_sync("binance", "NKN-USDT", bids, asks)
    okx = make_sync("okx", "NKN-USDT", okx_bids, okx_asks)
    det = ArbDetector(FeeSchedule(), min_net_bps=10, max_notional=None)
    det.register_all([binance, okx])
    (opp,) = det.check(binance)
    assert (opp.buy_venue, opp.sell_venue) == ("okx", "binance")
    check_against_oracle(opp, okx_asks, bids, 10, 10, 10, None, 8)


def test_fees_eat_the_edge(nkn):
    bids, asks = nkn
    # okx best bid 0.3537 vs binance best ask 0.3525: ~34 bps gross
    okx_bids, okx_asks = shifted(bids, "0.0016"), shifted(asks, "0.0016")
    binance = make_sync("binance", "NKN-USDT", bids, asks)
    okx = make_sync("okx", "NKN-USDT", okx_bids, okx_asks)
    # 20 bps each side + 10 bps min: the gross edge never clears
    det = ArbDetector(FeeSchedule({"binance": 20, "okx": 20}), min_net_bps=10)
    det.register_all([binance, okx])
    assert det.check(okx) == [] and det.check(binance) == []
    assert det.walks == 0  # the O(1) pre-check already said no
    # the same books with no fees and no minimum: an opportunity
    free = ArbDetector(FeeSchedule({"binance": 0, "okx": 0}), min_net_bps=0, max_notional=None)
    free.register_all([binance, okx])
    (opp,) = free.check(okx)
    assert opp.buy_venue == "binance"
    check_against_oracle(opp, asks, okx_bids, 0, 0, 0, None, 8)


def test_max_notional_caps_the_buy_side(nkn):
    bids, asks = nkn
    okx_bids, okx_asks = shifted(bids, "0.0020"), shifted(asks, "0.0020")
    binance = make_sync("binance", "NKN-USDT", bids, asks)
    okx = make_sync("okx", "NKN-USDT", okx_bids, okx_asks)
    uncapped = ArbDetector(FeeSchedule(), max_notional=None)
    uncapped.register_all([binance, okx])
    (free,) = uncapped.check(okx)
    det = ArbDetector(FeeSchedule(), max_notional=1000)
    det.register_all([binance, okx])
    (opp,) = det.check(okx)
    assert Decimal(opp.size) < Decimal(free.size)
    notional = Decimal(opp.size) * Decimal(opp.buy_price)
    assert Decimal(999) < notional <= Decimal(1000) + Decimal("1e-9")
    check_against_oracle(opp, asks, okx_bids, 10, 10, 10, 1000, 8)
    # per-symbol cap and lot precision
    det2 = ArbDetector(
        FeeSchedule(), max_notional_by_symbol={"NKN-USDT": "250.5"}, size_decimals_by_symbol={"NKN-USDT": 0}
    )
    det2.register_all([binance, okx])
    (opp2,) = det2.check(okx)
    assert "." not in opp2.size
    check_against_oracle(opp2, asks, okx_bids, 10, 10, 10, "250.5", 0)


def test_real_book_against_itself_never_crosses(real_data):
    for symbol in ("NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR"):
        bids, asks = real_snapshot(real_data, symbol)
        a = make_sync("binance", symbol, bids, asks)
        b = make_sync("okx", symbol, bids, asks)
        det = ArbDetector(FeeSchedule({"binance": 0, "okx": 0}), min_net_bps=0)
        det.register_all([a, b])
        assert det.check(a) == [] and det.check(b) == []
        assert det.walks == 0


# ---------------------------------------------------------------- gates


def _pair(bid_there="101", recv_ns=T0):
    a = make_sync("binance", "BTC-USDT", [("99", "1")], [("100", "1"), ("100.5", "2")], recv_ns)
    b = make_sync("okx", "BTC-USDT", [(bid_there, "1.5"), ("100.2", "3")], [("103", "1")], recv_ns)
    return a, b


def test_unsynced_book_never_produces_an_opportunity():
    a, b = _pair()
    b.invalidate("link lost", T0)
    det = ArbDetector(FeeSchedule())
    det.register_all([a, b])
    assert det.check(a) == [] and det.check(b) == []
    assert det.walks == 0 and det.opened == 0


def test_stale_book_never_produces_an_opportunity():
    a, b = _pair()
    det = ArbDetector(FeeSchedule(), max_age_ms=2000)
    det.register_all([a, b])
    assert det.check(a, T0 + 2001 * MS) == []
    diff(a, bids=[("99.5", "1")], recv_ns=T0 + 2001 * MS)
    assert det.check(a) == []  # a is fresh, b is 2001 ms old
    assert det.opened == 0
    assert det.check(a, T0 + 2000 * MS)  # exactly at the limit: still usable


def test_other_symbols_and_same_venue_are_not_compared():
    a, b = _pair()
    c = make_sync("okx", "ETH-USDT", [("1000", "1")], [("1001", "1")])
    det = ArbDetector(FeeSchedule())
    det.register_all([a, c])
    assert det.check(a) == [] and det.check(c) == []
    det.register(b)
    assert len(det.check(a)) == 1


def test_lifecycle_opened_changed_closed_with_lifetime():
    a, b = _pair()
    seen = []
    det = ArbDetector(FeeSchedule(), min_net_bps=10, change_ratio=0.25, change_bps=2.0, on_event=seen.append)
    det.register_all([a, b])
    (opened,) = det.check(b, T0 + 1 * MS)
    assert opened.event is OpportunityEvent.OPENED and opened.opened_ns == T0 + MS
    assert (opened.buy_venue, opened.sell_venue) == ("binance", "okx")
    # immaterial change: a tiny size elsewhere in the book does not re-emit
    diff(b, asks=[("104", "1")], recv_ns=T0 + 2 * MS)
    assert det.check(b) == []
    # material: the sell-side top grows, size changes by far more than 25 %
    diff(b, bids=[("101", "3")], recv_ns=T0 + 3 * MS)
    (changed,) = det.check(b)
    assert changed.event is OpportunityEvent.CHANGED and changed.opened_ns == T0 + MS
    assert Decimal(changed.size) > Decimal(opened.size)
    check_against_oracle(changed, [("100", "1"), ("100.5", "2")], [("101", "3"), ("100.2", "3")], 10, 10, 10, 10_000, 8)
    # the crossing goes away: CLOSED with the lifetime
    diff(b, bids=[("101", "0"), ("100.2", "0"), ("100", "1")], recv_ns=T0 + 10 * MS)
    (closed,) = det.check(b)
    assert closed.event is OpportunityEvent.CLOSED
    assert closed.lifetime_ns == 9 * MS and closed.recv_ns == T0 + 10 * MS
    assert closed.size == changed.size  # last known state
    assert seen == [opened, changed, closed]
    assert det.check(b) == []  # closed once
    s = det.summary()
    assert s["opened"] == 1 and s["closed"] == 1 and s["changed"] == 1 and s["open_now"] == 0
    assert s["best_net_bps"] == pytest.approx(max(opened.net_bps, changed.net_bps))
    assert s["mean_lifetime_ms"] == pytest.approx(9.0)


def test_close_on_unsynced_and_on_expire():
    a, b = _pair()
    det = ArbDetector(FeeSchedule(), max_age_ms=100)
    det.register_all([a, b])
    assert det.check(b)[0].event is OpportunityEvent.OPENED
    b.invalidate("gap", T0 + 5 * MS)
    (closed,) = det.on_unsynced(b, T0 + 5 * MS)
    assert closed.event is OpportunityEvent.CLOSED and closed.lifetime_ns == 5 * MS
    assert det.on_unsynced(b, T0 + 6 * MS) == []
    # re-open on a fresh snapshot, then let it go stale
    b.on_update(
        BookUpdate("okx", "BTC-USDT", [("101", "1.5")], [("103", "1")], 9, 9, is_snapshot=True, recv_ns=T0 + 10 * MS)
    )
    assert det.check(b)[0].event is OpportunityEvent.OPENED
    assert det.expire(T0 + 100 * MS) == []  # a is exactly 100 ms old: still fresh
    (gone,) = det.expire(T0 + 101 * MS)
    assert gone.event is OpportunityEvent.CLOSED and gone.lifetime_ns == 91 * MS
    assert det.active() == []
    # an update on a stale peer closes too (seen through check)
    diff(b, bids=[("101", "2")], recv_ns=T0 + 102 * MS)
    assert det.check(b) == []  # a stale: nothing opens


def test_check_on_unsynced_book_closes_its_pairs():
    a, b = _pair()
    det = ArbDetector(FeeSchedule())
    det.register_all([a, b])
    assert det.check(a)
    a.invalidate("crossed", T0 + MS)
    (closed,) = det.check(a, T0 + MS)
    assert closed.event is OpportunityEvent.CLOSED


def test_register_replaces_and_unregister_closes():
    a, b = _pair()
    det = ArbDetector(FeeSchedule())
    det.register_all([a, b])
    assert det.check(a)
    b2 = make_sync("okx", "BTC-USDT", [("99", "1")], [("103", "1")])
    det.register(b2)  # same venue+symbol: the old book's opportunity closes
    assert det.active() == [] and det.closed == 1
    assert det.check(a) == []
    assert set(det.syncs("BTC-USDT")) == {"binance", "okx"}
    det.unregister(b2)
    assert set(det.syncs("BTC-USDT")) == {"binance"}


def test_threshold_strict_at_top_inclusive_for_size():
    # zero fees, min 0: equal top prices are no opportunity
    a = make_sync("x", "S-Q", [("9", "1")], [("10", "1")])
    b = make_sync("y", "S-Q", [("10", "1")], [("11", "1")])
    det = ArbDetector(FeeSchedule({"x": 0, "y": 0}), min_net_bps=0)
    det.register_all([a, b])
    assert det.check(a) == []
    # bid 10.1 x1 then 9.9: the size stops where the average edge hits exactly 0
    diff(b, bids=[("10", "0"), ("10.1", "1"), ("9.9", "5")])
    diff(a, asks=[("10", "10")])
    (opp,) = det.check(b)
    assert Decimal(opp.size) == 2 and Decimal(opp.profit) == 0 and opp.net_bps == 0.0


# ---------------------------------------------------------------- property: solver == brute force

prices = st.integers(min_value=9_000, max_value=11_000)  # cents
sizes = st.integers(min_value=1, max_value=300)  # hundredths


@st.composite
def books(draw):
    def side(descending: bool):
        ps = draw(st.lists(prices, min_size=1, max_size=4, unique=True))
        ps.sort(reverse=descending)
        return [(f"{p / 100:.2f}", f"{draw(sizes) / 100:.2f}") for p in ps]

    asks = side(False)
    bids = side(True)
    fb = draw(st.integers(0, 30))
    fs = draw(st.integers(0, 30))
    m = draw(st.sampled_from([0, 1, 5, 10, 25, 2.5]))
    cap = draw(st.one_of(st.none(), st.integers(50, 600)))
    return asks, bids, fb, fs, m, cap


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(books())
def test_segment_solver_matches_brute_force(case):
    asks, bids, fb, fs, m, cap = case
    scale = 10**8
    buy_k = (scale + bps_to_units(fb)) * (scale + bps_to_units(m))
    sell_k = (scale - bps_to_units(fs)) * scale
    ask_levels = [(to_units(p), s) for p, s in asks]
    bid_levels = [(to_units(p), s) for p, s in bids]
    cap_units = None if cap is None else to_units(str(cap)) * 10**18
    size, cost, proceeds = walk_edge(ask_levels, bid_levels, buy_k, sell_k, cap_units, 10**16)
    q, c, p = oracle(asks, bids, fb, fs, m, cap, 2, linear=True)
    assert Decimal(size) / 10**18 == q
    assert Decimal(cost) / 10**36 == c and Decimal(proceeds) / 10**36 == p


@settings(max_examples=100, deadline=None)
@given(books())
def test_detector_matches_brute_force(case):
    asks, bids, fb, fs, m, cap = case
    buy = make_sync("x", "S-Q", [("1", "1")], asks)
    sell = make_sync("y", "S-Q", bids, [("200", "1")])
    det = ArbDetector(FeeSchedule({"x": fb, "y": fs}), min_net_bps=m, max_notional=cap, size_decimals=2)
    det.register_all([buy, sell])
    events = det.check(sell)
    q, _, _ = oracle(asks, bids, fb, fs, m, cap, 2, strict_top=True)
    if q == 0:
        assert events == []
    else:
        (opp,) = events
        assert (opp.buy_venue, opp.sell_venue) == ("x", "y")
        check_against_oracle(opp, asks, bids, fb, fs, m, cap, 2)


# ---------------------------------------------------------------- inline on a real replay


def test_inline_on_real_binance_replay(real_data, nkn):
    from arbwire.feed import VenueFeed
    from arbwire.record.replay import merge, query_symbol, replay
    from arbwire.venues.binance import BinanceSession

    bids, asks = nkn
    # a second venue frozen at the first snapshot, shifted up: the live Binance book
    # drifts against it, so opportunities open, change and close as the replay runs
    okx = make_sync("okx", "NKN-USDT", shifted(bids, "0.0014"), shifted(asks, "0.0014"))
    events = []
    det = ArbDetector(FeeSchedule(), min_net_bps=10, max_age_ms=1e12, on_event=events.append)
    det.register(okx)
    checked = []

    def on_book(sync, upd):
        checked.append(sync.symbol)
        det.check(sync, upd.recv_ns)

    session = BinanceSession(["NKN-USDT", "BLZ-ETH", "LRC-BTC", "RUNE-EUR"])
    feed = VenueFeed(session, on_book=on_book)
    base = real_data / "cryptofeed"
    replay(
        feed,
        merge(read_cryptofeed(base / "BINANCE.ws.1.0"), read_cryptofeed(base / "BINANCE.http.0.0")),
        lambda r: session.names.to_common(query_symbol(r, "symbol").lower()),
    )
    assert "NKN-USDT" in checked and det.opened >= 1
    state: dict[tuple[str, str, str], str] = {}
    for e in events:
        key = (e.symbol, e.buy_venue, e.sell_venue)
        prev = state.get(key, OpportunityEvent.CLOSED)
        if e.event is OpportunityEvent.OPENED:
            assert prev is OpportunityEvent.CLOSED
        else:
            assert prev is not OpportunityEvent.CLOSED
        state[key] = e.event
        assert e.symbol == "NKN-USDT" and e.net_bps >= 10 - 1e-9
        if e.event is OpportunityEvent.CLOSED:
            assert e.lifetime_ns >= 0
    # the last event's size is what the oracle finds on the books as they stand now
    live = feed.syncs["NKN-USDT"].book
    now = det.active()
    for opp in now:
        if opp.buy_venue == "binance":
            buy, sell = live.asks.text_levels(10**6), okx.book.bids.text_levels(10**6)
        else:
            buy, sell = okx.book.asks.text_levels(10**6), live.bids.text_levels(10**6)
        q, _, _ = oracle(buy, sell, 10, 10, 10, 10_000, 8)
        assert Decimal(opp.size) == q
