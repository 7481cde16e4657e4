"""An independent oracle for the arbitrage the simulators' model opens, and the checks that
the detector found each model episode (and nothing outside them)."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_DOWN, Decimal, localcontext

from arbwire.model import Opportunity, OpportunityEvent
from arbwire.sim.market import BookCopy, instrument_for

FEE = Decimal("0.001")  # 10 bps, the base-tier taker fee of both simulated venues
MIN_EDGE = Decimal("0.001")
MAX_NOTIONAL = Decimal(10_000)
LOT = Decimal("0.00000001")
SLACK_NS = 50_000_000  # an opportunity may be seen this long after its episode ended


def _walk(levels: list[tuple[Decimal, Decimal]], size: Decimal) -> Decimal | None:
    """Cost of taking ``size`` from ``levels`` (best first), None if too thin."""
    left, cost = size, Decimal(0)
    for price, qty in levels:
        take = min(left, qty)
        cost += take * price
        left -= take
        if not left:
            return cost
    return None


def oracle_size(buy: BookCopy, sell: BookCopy) -> Decimal:
    """Largest size (to 1e-8) whose average prices clear the minimum net edge, by bisection."""
    asks, bids = buy.sorted_asks(), sell.sorted_bids()

    def clears(q: Decimal) -> bool:
        cost, proceeds = _walk(asks, q), _walk(bids, q)
        if cost is None or proceeds is None or cost > MAX_NOTIONAL:
            return False
        return proceeds * (1 - FEE) >= cost * (1 + FEE) * (1 + MIN_EDGE)

    with localcontext() as ctx:
        ctx.prec = 60
        lo, hi = Decimal(0), sum(q for _, q in asks)
        while hi - lo > LOT:
            mid = ((lo + hi) / 2).quantize(LOT)
            if mid in (lo, hi):
                break
            lo, hi = (mid, hi) if clears(mid) else (lo, mid)
        return hi if clears(hi) else lo


def assert_episodes_found(episodes: Iterable, seen: list[Opportunity], *, check_buy_price: bool = False) -> None:
    """Every finished model episode was seen with the oracle's size on the right venue pair and
    closed after it ended; no opportunity opened outside an episode (venues never look crossed
    after fees). ``check_buy_price``: also the best sighting's buy price is the model's."""
    episodes = list(episodes)
    finished = [ep for ep in episodes if ep.start_ns and ep.end_ns]
    assert len(finished) >= 2, "the model should have opened and closed arbitrage by now"
    for ep in finished:
        during = [
            o
            for o in seen
            if o.symbol == ep.symbol
            and o.event is not OpportunityEvent.CLOSED
            and ep.start_ns <= o.recv_ns <= ep.end_ns + SLACK_NS
        ]
        assert during, f"episode {ep.id} ({ep.symbol} buy {ep.buy_venue} sell {ep.sell_venue}) not found"
        assert {(o.buy_venue, o.sell_venue) for o in during} == {(ep.buy_venue, ep.sell_venue)}
        best = max(during, key=lambda o: Decimal(o.size))
        # the detector rounds down to the venues' lot, which it learned from their instrument
        # lists (or, over the bus, from the published size decimals)
        lot = Decimal(str(instrument_for(ep.symbol).lot))
        expected = oracle_size(ep.buy_book, ep.sell_book).quantize(lot, rounding=ROUND_DOWN)
        assert Decimal(best.size) == expected, (ep.id, best.size, expected)
        if check_buy_price:
            assert Decimal(best.buy_price) <= ep.buy_price * (1 + Decimal("0.0001"))
        closed = [
            o
            for o in seen
            if o.event is OpportunityEvent.CLOSED
            and (o.symbol, o.buy_venue, o.sell_venue) == (ep.symbol, ep.buy_venue, ep.sell_venue)
            and o.recv_ns >= ep.end_ns
        ]
        assert closed and closed[0].lifetime_ns > 0
    # outside the episodes the venues never look crossed after fees
    windows = [(ep.start_ns, (ep.end_ns or 1 << 62) + SLACK_NS) for ep in episodes if ep.start_ns]
    for o in seen:
        if o.event is OpportunityEvent.OPENED:
            assert any(start <= o.recv_ns <= end for start, end in windows), o
