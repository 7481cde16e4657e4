"""Paper trading: take every OPENED opportunity on paper and keep an exact ledger.

Two modes, by ``latency_us``:

* ``0``: fill at once at the detected average prices and size (what the detector
  promised, the upper bound).
* ``> 0``: the opportunity is queued; once ``latency_us`` has passed (``due`` /
  ``run_due``) the caller hands it to ``execute`` with the books as they are *then*,
  and both legs are walked again at the detected size (two taker orders). The
  shortfall against the detected profit is the latency haircut. With
  ``min_net_bps`` set, a trade whose re-walked net edge fell below it counts as a
  miss (IOC orders that would not have filled); otherwise it fills, loss or not.

Books are read, never consumed: a paper fill takes nothing out of the live book.
Fees are charged in the quote currency at each venue's taker rate. PnL is kept
exact per quote asset (``"USDT"``, ``"BTC"``) since symbols quote in different ones.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from arbwire.arb.fees import FEE_SCALE, FeeSchedule
from arbwire.arb.walk import walk_size
from arbwire.book import L2Book
from arbwire.model import Opportunity, OpportunityEvent, SyncState
from arbwire.numbers import SCALE, to_units, units_to_text
from arbwire.sync import BookSync

if TYPE_CHECKING:
    from arbwire.config import PaperConfig

BookLike = BookSync | L2Book
BooksBySymbol = Callable[[str], Mapping[str, BookLike]]


class Fill(msgspec.Struct, frozen=True):
    """One paper trade (or miss) of an opportunity. Amounts are exact decimal text."""

    symbol: str
    buy_venue: str
    sell_venue: str
    status: str  # "filled" | "partial" | "missed"
    reason: str  # why missed or partial, "" when filled in full
    wanted: str  # size the opportunity offered
    size: str  # size filled on both legs
    buy_price: str  # average, rounded up
    sell_price: str  # average, rounded down
    fees: str  # both legs' taker fees, quote currency
    pnl: str  # proceeds - cost - fees, quote currency
    expected: str  # the opportunity's own profit figure
    net_bps: float
    detected_ns: int
    executed_ns: int

    @property
    def latency_ns(self) -> int:
        return self.executed_ns - self.detected_ns


def _units2_text(value: int) -> str:
    """Text for a units**2 amount, rounded toward minus infinity to 1e-18."""
    return units_to_text(value // SCALE)


class PaperTrader:
    """Paper ledger fed with the detector's events (``on_opportunity``)."""

    def __init__(
        self,
        fees: FeeSchedule | None = None,
        *,
        latency_us: float = 0.0,
        min_net_bps: float | None = None,
        on_fill: Callable[[Fill], None] | None = None,
        keep_fills: int | None = None,
        max_pending: int = 100_000,
    ) -> None:
        self.fees = fees if fees is not None else FeeSchedule()
        self.latency_ns = int(latency_us * 1000)
        self.min_net_bps = min_net_bps
        self.on_fill = on_fill
        self.pending: list[tuple[int, Opportunity]] = []  # (due ns, opportunity), due order
        # bounded memory whoever drives it: past this many waiting, a new one is a miss
        self.max_pending = max_pending
        # the latest fills (all of them when keep_fills is None); the totals below count every one
        self.fills: deque[Fill] = deque(maxlen=keep_fills)
        self.pnl: dict[str, int] = {}  # quote asset -> units**2
        self.expected: dict[str, int] = {}  # quote asset -> units
        self.fees_paid: dict[str, int] = {}  # quote asset -> units**2
        self.volume: dict[str, int] = {}  # quote asset -> buy notional, units**2
        self.positions: dict[tuple[str, str], int] = {}  # (venue, base asset) -> units
        self.filled = 0
        self.partial = 0
        self.missed = 0
        self.misses: dict[str, int] = {}  # reason -> count

    # -- intake ---------------------------------------------------------------

    def on_opportunity(self, opp: Opportunity) -> Fill | None:
        """Feed every detector event; acts on OPENED only.

        With no latency it fills at the detected prices and returns the fill;
        otherwise it queues the opportunity until ``recv_ns + latency`` and returns None
        (or, with ``max_pending`` already waiting, returns it as a miss).
        """
        if opp.event is not OpportunityEvent.OPENED:
            return None
        if self.latency_ns <= 0:
            return self.fill_detected(opp)
        due = opp.recv_ns + self.latency_ns
        pending = self.pending
        if len(pending) >= self.max_pending:
            return self._miss(opp, "paper queue full", opp.recv_ns)
        if pending and pending[-1][0] > due:  # out of order: keep the queue sorted
            pending.append((due, opp))
            pending.sort(key=lambda item: item[0])
        else:
            pending.append((due, opp))
        return None

    def due(self, now_ns: int) -> list[Opportunity]:
        """Queued opportunities whose latency has elapsed at ``now_ns`` (removed from the queue)."""
        pending = self.pending
        n = 0
        while n < len(pending) and pending[n][0] <= now_ns:
            n += 1
        if not n:
            return []
        ready = [opp for _, opp in pending[:n]]
        del pending[:n]
        return ready

    def run_due(self, now_ns: int, books_for: BooksBySymbol) -> list[Fill]:
        """Execute every due opportunity against ``books_for(symbol)`` (e.g. ``ArbDetector.syncs``)."""
        return [self.execute(opp, books_for(opp.symbol), now_ns) for opp in self.due(now_ns)]

    # -- fills ----------------------------------------------------------------

    def fill_detected(self, opp: Opportunity, now_ns: int | None = None) -> Fill:
        """Fill exactly at the detected average prices and size."""
        size = to_units(opp.size)
        cost = to_units(opp.buy_price) * size
        proceeds = to_units(opp.sell_price) * size
        return self._book(opp, size, cost, proceeds, "", now_ns if now_ns is not None else opp.recv_ns)

    def execute(self, opp: Opportunity, books: Mapping[str, BookLike], now_ns: int | None = None) -> Fill:
        """Take ``opp`` against ``books`` (venue -> book of ``opp.symbol``) as they are now.

        A ``BookSync`` that is not SYNCED counts as absent. Both legs are walked at the
        opportunity's size; if either side is thinner, both legs shrink to what both
        can fill (``partial``).
        """
        executed = opp.recv_ns + self.latency_ns if now_ns is None else now_ns
        buy_book = self._usable(books.get(opp.buy_venue))
        sell_book = self._usable(books.get(opp.sell_venue))
        if buy_book is None:
            return self._miss(opp, "buy book unavailable", executed)
        if sell_book is None:
            return self._miss(opp, "sell book unavailable", executed)
        wanted = to_units(opp.size)
        bought, cost, _ = walk_size(buy_book.asks.levels(), wanted)
        sold, proceeds, _ = walk_size(sell_book.bids.levels(), wanted)
        size = min(bought, sold)
        if size <= 0:
            return self._miss(opp, "no depth", executed)
        reason = ""
        if size < wanted:
            reason = "buy side thin" if bought < sold else "sell side thin"
            _, cost, _ = walk_size(buy_book.asks.levels(), size)
            _, proceeds, _ = walk_size(sell_book.bids.levels(), size)
        if self.min_net_bps is not None:
            net = self._net_bps(opp, cost, proceeds)
            if net < self.min_net_bps:
                return self._miss(opp, "edge gone", executed)
        return self._book(opp, size, cost, proceeds, reason, executed)

    @staticmethod
    def _usable(book: BookLike | None) -> L2Book | None:
        if book is None:
            return None
        if isinstance(book, BookSync):
            return book.book if book.state is SyncState.SYNCED else None
        return book

    def _net_bps(self, opp: Opportunity, cost: int, proceeds: int) -> float:
        fb = self.fees.units(opp.buy_venue)
        fs = self.fees.units(opp.sell_venue)
        paid = cost * (FEE_SCALE + fb)
        return (proceeds * (FEE_SCALE - fs) - paid) * 10_000 / paid

    def _miss(self, opp: Opportunity, reason: str, executed: int) -> Fill:
        self.missed += 1
        self.misses[reason] = self.misses.get(reason, 0) + 1
        fill = Fill(
            opp.symbol, opp.buy_venue, opp.sell_venue, "missed", reason, opp.size, "0",
            "0", "0", "0", "0", opp.profit, 0.0, opp.recv_ns, executed,
        )
        self.fills.append(fill)
        if self.on_fill is not None:
            self.on_fill(fill)
        return fill

    def _book(
        self, opp: Opportunity, size: int, cost: int, proceeds: int, reason: str, executed: int
    ) -> Fill:
        fb = self.fees.units(opp.buy_venue)
        fs = self.fees.units(opp.sell_venue)
        # fees in units**2, rounded up (against us) to whole units**2
        fee = -(-(cost * fb + proceeds * fs) // FEE_SCALE)
        pnl = proceeds - cost - fee
        quote = opp.symbol.partition("-")[2] or opp.symbol
        base = opp.symbol.partition("-")[0]
        self.pnl[quote] = self.pnl.get(quote, 0) + pnl
        self.expected[quote] = self.expected.get(quote, 0) + to_units(opp.profit)
        self.fees_paid[quote] = self.fees_paid.get(quote, 0) + fee
        self.volume[quote] = self.volume.get(quote, 0) + cost
        buy_key, sell_key = (opp.buy_venue, base), (opp.sell_venue, base)
        self.positions[buy_key] = self.positions.get(buy_key, 0) + size
        self.positions[sell_key] = self.positions.get(sell_key, 0) - size
        if reason:
            self.partial += 1
        else:
            self.filled += 1
        net = self._net_bps(opp, cost, proceeds) if cost else 0.0
        fill = Fill(
            opp.symbol,
            opp.buy_venue,
            opp.sell_venue,
            "partial" if reason else "filled",
            reason,
            opp.size,
            units_to_text(size),
            units_to_text(-(-cost // size)),
            units_to_text(proceeds // size),
            units_to_text(-(-fee // SCALE)),  # fees rounded up
            _units2_text(pnl),
            opp.profit,
            net,
            opp.recv_ns,
            executed,
        )
        self.fills.append(fill)
        if self.on_fill is not None:
            self.on_fill(fill)
        return fill

    # -- reporting ------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The ledger as plain data: counts, and per quote asset the exact PnL (net of fees)
        against what the detector promised, fees, volume; net positions per venue."""
        dec = _units2_text

        return {
            "latency_us": self.latency_ns / 1000,
            "trades": self.filled + self.partial,
            "filled": self.filled,
            "partial": self.partial,
            "missed": self.missed,
            "misses": dict(self.misses),
            "pending": len(self.pending),
            "pnl": {q: dec(v) for q, v in sorted(self.pnl.items())},
            "expected_pnl": {q: units_to_text(v) for q, v in sorted(self.expected.items())},
            "fees": {q: dec(v) for q, v in sorted(self.fees_paid.items())},
            "volume": {q: dec(v) for q, v in sorted(self.volume.items())},
            "positions": {
                f"{v}:{a}": units_to_text(u) for (v, a), u in sorted(self.positions.items()) if u
            },
        }


def paper_from_config(cfg: PaperConfig, fees: FeeSchedule) -> PaperTrader | None:
    """The paper trader every front end builds from ``[paper]`` (None when disabled), with
    the detector's own fees."""
    if not cfg.enabled:
        return None
    return PaperTrader(fees, latency_us=cfg.latency_us, min_net_bps=cfg.min_net_bps, keep_fills=cfg.keep_fills)


class LivePaper:
    """A ``PaperTrader`` on a running event loop (the engine, the bus detector): an opened
    opportunity is executed once its latency has passed, on the books ``books_for`` gives
    then. ``run_due`` from a periodic task catches any the loop could not schedule."""

    def __init__(self, trader: PaperTrader, books_for: BooksBySymbol) -> None:
        self.trader = trader
        self.books_for = books_for

    def on_opportunity(self, opp: Opportunity) -> None:
        if self.trader.on_opportunity(opp) is not None:
            return  # no latency: filled as detected
        if opp.event is not OpportunityEvent.OPENED:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_later(self.trader.latency_ns / 1e9, self.run_due)

    def run_due(self) -> None:
        if self.trader.pending:
            self.trader.run_due(time.time_ns(), self.books_for)
