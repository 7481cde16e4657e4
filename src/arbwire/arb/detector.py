"""Cross-venue arbitrage detector, run inline on the hot path for the symbol that changed.

For every pair of venues quoting a symbol, in both directions (buy on one venue's
asks, sell into the other's bids), ``ArbDetector.check`` does:

1. **Gate**: both books SYNCED and fresher than ``max_age_ms`` (``now_ns -
   sync.last_recv_ns``); otherwise any open opportunity of the pair closes.
2. **Pre-check**, O(1), exact: with integer fee/edge multipliers fixed per pair at
   registration, ``best_bid(sell) * (1-fs) > best_ask(buy) * (1+fb) * (1+min_net)``
   is two integer products and one compare. It fails in the common case, and then
   the pair costs a few attribute loads and no allocation.
3. **Walk** (only when the pre-check passes): ``walk.walk_edge`` finds the largest
   size whose walked-book *average* prices still give ``net >= min_net_bps``,
   capped by ``max_notional`` (buy-side notional, quote currency) and both books'
   depth, solved exactly segment by segment, rounded down to the symbol's lot
   precision (``size_decimals``, default 8).

The threshold is strict at the top of the book (the first unit must beat
``min_net_bps``) and inclusive for the size (the last unit may bring the average
down to exactly ``min_net_bps``).

Each (symbol, buy venue, sell venue) has a lifecycle: ``OPENED`` when it appears,
``CHANGED`` when size or net edge move materially against the last *emitted*
state (``change_ratio`` of size, ``change_bps`` of net edge), ``CLOSED`` with
``lifetime_ns`` when it disappears or either book goes unsynced/stale
(``on_unsynced`` / ``expire`` close those without waiting for an update).

Prices/sizes are exact decimal text. Average prices are rounded to 1e-18 against
the trader (buy up, sell down); profit is net of both taker fees, rounded down.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from math import gcd
from typing import Any, NamedTuple

import msgspec

from arbwire.arb.fees import FEE_SCALE, FeeSchedule, bps_to_units
from arbwire.arb.walk import walk_edge
from arbwire.config import ArbConfig
from arbwire.model import Opportunity, OpportunityEvent, SyncState
from arbwire.numbers import SCALE, SCALE_DIGITS, to_units, units_to_text
from arbwire.sync import BookSync

OpportunityCallback = Callable[[Opportunity], None]

_SYNCED = SyncState.SYNCED
_OPENED = OpportunityEvent.OPENED
_CHANGED = OpportunityEvent.CHANGED
_CLOSED = OpportunityEvent.CLOSED
_NS_PER_MS = 1_000_000


def _quote_units(value: Decimal | str | int | float) -> int:
    text = repr(value) if isinstance(value, float) else str(value)
    return to_units(format(Decimal(text), "f"))


class _Pair:
    """One direction: buy on ``buy``'s asks, sell into ``sell``'s bids."""

    __slots__ = (
        "symbol", "buy", "sell", "buy_k", "sell_k", "fee_buy", "fee_sell",
        "active", "opened_ns", "emitted", "latest", "key",
    )

    def __init__(self, buy: BookSync, sell: BookSync, fees: FeeSchedule, min_edge: int) -> None:
        self.symbol = buy.symbol
        self.buy = buy
        self.sell = sell
        self.fee_buy = fees.units(buy.venue)
        self.fee_sell = fees.units(sell.venue)
        # proceeds * (1-fs) >= cost * (1+fb) * (1+m), all over FEE_SCALE**2
        sell_k = (FEE_SCALE - self.fee_sell) * FEE_SCALE
        buy_k = (FEE_SCALE + self.fee_buy) * (FEE_SCALE + min_edge)
        g = gcd(sell_k, buy_k)  # smaller factors, cheaper products on the hot path
        self.sell_k = sell_k // g
        self.buy_k = buy_k // g
        self.active = False
        self.opened_ns = 0
        self.emitted: Opportunity | None = None  # last OPENED/CHANGED sent out
        self.latest: Opportunity | None = None  # last computed state (for CLOSED)
        self.key = (buy.symbol, buy.venue, sell.venue)


class _Link(NamedTuple):
    """``sync`` against one ``other`` venue of the same symbol, both directions.

    A flat tuple so the hot loop unpacks it in one step. ``bids``/``asks`` are the
    other book's ``BookSide.order`` lists (stable objects: a book is cleared in place).
    """

    other: BookSync
    bids: list[int]  # other's bid keys, best last
    asks: list[int]  # other's negated ask keys, best last
    buy_here: _Pair  # buy on sync's asks, sell on other's bids
    sell_here: _Pair  # buy on other's asks, sell on sync's bids
    bh_sell_k: int
    bh_buy_k: int
    sh_sell_k: int
    sh_buy_k: int


def _link(other: BookSync, buy_here: _Pair, sell_here: _Pair) -> _Link:
    return _Link(
        other, other.book.bids.order, other.book.asks.order, buy_here, sell_here,
        buy_here.sell_k, buy_here.buy_k, sell_here.sell_k, sell_here.buy_k,
    )


class ArbDetector:
    """Finds cross-venue opportunities for one symbol at a time, inline after a book update.

    ``fees``: taker fees per venue. ``min_net_bps``: minimum net edge after both
    fees (>= 0). ``max_notional``: cap on the buy-side notional in the quote currency,
    ``max_notional_by_symbol`` overrides it per symbol (``None`` means no cap).
    ``max_age_ms``: a book whose last update is older than this is ignored.
    ``size_decimals``: lot precision the size is rounded down to (per symbol in
    ``size_decimals_by_symbol``). ``change_ratio`` / ``change_bps``: what counts as
    a material CHANGE (relative size move, absolute net-edge move).
    ``on_event``: called with every OPENED/CHANGED/CLOSED, in addition to the
    events being returned.
    """

    def __init__(
        self,
        fees: FeeSchedule | None = None,
        *,
        min_net_bps: float | Decimal | str = 10.0,
        max_notional: float | Decimal | str | int | None = 10_000,
        max_notional_by_symbol: Mapping[str, float | Decimal | str | int | None] | None = None,
        max_age_ms: float = 2000.0,
        size_decimals: int = 8,
        size_decimals_by_symbol: Mapping[str, int] | None = None,
        change_ratio: float = 0.25,
        change_bps: float = 2.0,
        on_event: OpportunityCallback | None = None,
    ) -> None:
        self.fees = fees if fees is not None else FeeSchedule()
        self.min_net_bps = float(min_net_bps)
        self._min_edge = bps_to_units(min_net_bps)
        self._default_cap = None if max_notional is None else _quote_units(max_notional) * SCALE
        self._caps = {
            s: None if v is None else _quote_units(v) * SCALE
            for s, v in (max_notional_by_symbol or {}).items()
        }
        self.max_age_ns = int(max_age_ms * _NS_PER_MS)
        for d in (size_decimals, *(size_decimals_by_symbol or {}).values()):
            if not 0 <= d <= SCALE_DIGITS:
                raise ValueError(f"size decimals must be 0..{SCALE_DIGITS}: {d}")
        self._default_lot = 10 ** (SCALE_DIGITS - size_decimals)
        self._lots = {s: 10 ** (SCALE_DIGITS - d) for s, d in (size_decimals_by_symbol or {}).items()}
        self.change_ratio = change_ratio
        self.change_bps = change_bps
        self.on_event = on_event
        self._syncs: dict[tuple[str, str], BookSync] = {}  # (venue, symbol) -> sync
        self._links: dict[BookSync, list[_Link]] = {}
        self._active: dict[tuple[str, str, str], _Pair] = {}
        # running stats
        self.checks = 0
        self.walks = 0
        self.opened = 0
        self.changed = 0
        self.closed = 0
        self.best_net_bps = float("-inf")
        self.best: Opportunity | None = None
        self.total_lifetime_ns = 0
        self.by_route: dict[tuple[str, str, str], int] = {}

    # -- wiring ---------------------------------------------------------------

    def set_size_decimals(self, symbol: str, decimals: int) -> None:
        """Round ``symbol``'s sizes down to ``decimals`` (the venues' coarsest lot)."""
        if not 0 <= decimals <= SCALE_DIGITS:
            raise ValueError(f"size decimals must be 0..{SCALE_DIGITS}: {decimals}")
        self._lots[symbol] = 10 ** (SCALE_DIGITS - decimals)

    def register(self, sync: BookSync, now_ns: int | None = None) -> list[Opportunity]:
        """Add a venue+symbol book; a new sync for a known venue+symbol replaces the old.

        Returns the CLOSED events of the replaced book's opportunities, if any.
        """
        key = (sync.venue, sync.symbol)
        old = self._syncs.get(key)
        if old is sync:
            return []
        out = []
        if old is not None:
            out = self.unregister(old, sync.last_recv_ns if now_ns is None else now_ns)
        for other in self._syncs.values():
            if other.symbol != sync.symbol:
                continue
            buy_here = _Pair(sync, other, self.fees, self._min_edge)
            sell_here = _Pair(other, sync, self.fees, self._min_edge)
            self._links.setdefault(sync, []).append(_link(other, buy_here, sell_here))
            self._links.setdefault(other, []).append(_link(sync, sell_here, buy_here))
        self._links.setdefault(sync, [])
        self._syncs[key] = sync
        return out

    def register_all(self, syncs: Iterable[BookSync]) -> None:
        for sync in syncs:
            self.register(sync)

    def unregister(self, sync: BookSync, now_ns: int | None = None) -> list[Opportunity]:
        """Drop a book; its open opportunities close (at ``now_ns``, default its last update)."""
        out = self.on_unsynced(sync, sync.last_recv_ns if now_ns is None else now_ns)
        if self._syncs.get((sync.venue, sync.symbol)) is sync:
            del self._syncs[(sync.venue, sync.symbol)]
        for link in self._links.pop(sync, []):
            others = self._links.get(link.other, [])
            others[:] = [lk for lk in others if lk.other is not sync]
        return out

    def syncs(self, symbol: str) -> dict[str, BookSync]:
        """The registered books of ``symbol`` by venue (e.g. for ``PaperTrader.execute``)."""
        return {v: s for (v, sym), s in self._syncs.items() if sym == symbol}

    def active(self) -> list[Opportunity]:
        """Latest state of every open opportunity."""
        return [p.latest for p in self._active.values() if p.latest is not None]

    # -- hot path -------------------------------------------------------------

    def check(self, sync: BookSync, now_ns: int | None = None) -> list[Opportunity]:
        """Re-check ``sync``'s symbol against every other venue; returns the events emitted.

        Call it right after ``sync``'s book changed (``VenueFeed(on_book=...)``).
        ``now_ns`` defaults to ``sync.last_recv_ns`` (the update's receive stamp).
        """
        links = self._links.get(sync)
        if links is None:
            self.register(sync)
            links = self._links[sync]
        if now_ns is None:
            now_ns = sync.last_recv_ns
        self.checks += 1
        out: list[Opportunity] = []
        max_age = self.max_age_ns
        if sync.state is not _SYNCED or now_ns - sync.last_recv_ns > max_age:
            for link in links:
                if link.buy_here.active:
                    self._close(link.buy_here, now_ns, out)
                if link.sell_here.active:
                    self._close(link.sell_here, now_ns, out)
            return out
        book = sync.book
        bids = book.bids.order
        asks = book.asks.order
        my_bid = bids[-1] if bids else 0
        my_ask = -asks[-1] if asks else 0
        cutoff = now_ns - max_age
        for other, obids, oasks, p, q, p_sell_k, p_buy_k, q_sell_k, q_buy_k in links:
            if other.state is not _SYNCED or other.last_recv_ns < cutoff:
                if p.active:
                    self._close(p, now_ns, out)
                if q.active:
                    self._close(q, now_ns, out)
                continue
            # buy here, sell there
            if my_ask and obids and obids[-1] * p_sell_k > my_ask * p_buy_k:
                self._walk(p, now_ns, out)
            elif p.active:
                self._close(p, now_ns, out)
            # buy there, sell here
            if my_bid and oasks and my_bid * q_sell_k > -oasks[-1] * q_buy_k:
                self._walk(q, now_ns, out)
            elif q.active:
                self._close(q, now_ns, out)
        return out

    def on_unsynced(self, sync: BookSync, now_ns: int) -> list[Opportunity]:
        """``sync`` stopped being usable (resync, link lost): close its opportunities now."""
        out: list[Opportunity] = []
        for link in self._links.get(sync, ()):
            if link.buy_here.active:
                self._close(link.buy_here, now_ns, out)
            if link.sell_here.active:
                self._close(link.sell_here, now_ns, out)
        return out

    def expire(self, now_ns: int) -> list[Opportunity]:
        """Sweep: close open opportunities whose either book is unsynced or stale at ``now_ns``."""
        out: list[Opportunity] = []
        max_age = self.max_age_ns
        for p in list(self._active.values()):
            for s in (p.buy, p.sell):
                if s.state is not _SYNCED or now_ns - s.last_recv_ns > max_age:
                    self._close(p, now_ns, out)
                    break
        return out

    # -- rare path ------------------------------------------------------------

    def _walk(self, p: _Pair, now_ns: int, out: list[Opportunity]) -> None:
        self.walks += 1
        buy, sell = p.buy, p.sell
        symbol = p.symbol
        cap = self._caps.get(symbol, self._default_cap) if self._caps else self._default_cap
        lot = self._lots.get(symbol, self._default_lot) if self._lots else self._default_lot
        size, cost, proceeds = walk_edge(
            buy.book.asks.levels(), sell.book.bids.levels(), p.buy_k, p.sell_k, cap, lot
        )
        if size <= 0 or cost <= 0:
            if p.active:
                self._close(p, now_ns, out)
            return
        buy_mult = FEE_SCALE + p.fee_buy
        net_num = proceeds * (FEE_SCALE - p.fee_sell) - cost * buy_mult
        gross_bps = (proceeds - cost) * 10_000 / cost
        net_bps = net_num * 10_000 / (cost * buy_mult)
        opp = Opportunity(
            _CHANGED if p.active else _OPENED,
            symbol,
            buy.venue,
            sell.venue,
            units_to_text(-(-cost // size)),  # average buy, rounded up
            units_to_text(proceeds // size),  # average sell, rounded down
            units_to_text(size),
            gross_bps,
            net_bps,
            units_to_text(net_num // (FEE_SCALE * SCALE)),
            now_ns - buy.last_recv_ns,
            now_ns - sell.last_recv_ns,
            p.opened_ns if p.active else now_ns,
            now_ns,
        )
        p.latest = opp
        if net_bps > self.best_net_bps:
            self.best_net_bps = net_bps
            self.best = opp
        if not p.active:
            p.active = True
            p.opened_ns = now_ns
            self._active[p.key] = p
            self.opened += 1
            self.by_route[p.key] = self.by_route.get(p.key, 0) + 1
            self._emit(p, opp, out)
            return
        last = p.emitted
        if last is None or self._material(last, opp):
            self.changed += 1
            self._emit(p, opp, out)

    def _material(self, last: Opportunity, now: Opportunity) -> bool:
        if abs(now.net_bps - last.net_bps) >= self.change_bps:
            return True
        old = to_units(last.size)
        return abs(to_units(now.size) - old) >= old * self.change_ratio

    def _emit(self, p: _Pair, opp: Opportunity, out: list[Opportunity]) -> None:
        p.emitted = opp
        out.append(opp)
        if self.on_event is not None:
            self.on_event(opp)

    def _close(self, p: _Pair, now_ns: int, out: list[Opportunity]) -> None:
        p.active = False
        self._active.pop(p.key, None)
        last = p.latest
        p.latest = p.emitted = None
        if last is None:
            return
        lifetime = now_ns - p.opened_ns
        self.closed += 1
        self.total_lifetime_ns += lifetime
        opp = msgspec.structs.replace(last, event=_CLOSED, recv_ns=now_ns, lifetime_ns=lifetime)
        out.append(opp)
        if self.on_event is not None:
            self.on_event(opp)

    # -- reporting ------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        best = self.best
        return {
            "books": len(self._syncs),
            "checks": self.checks,
            "walks": self.walks,
            "opened": self.opened,
            "changed": self.changed,
            "closed": self.closed,
            "open_now": len(self._active),
            "best_net_bps": None if best is None else self.best_net_bps,
            "best": None
            if best is None
            else {
                "symbol": best.symbol,
                "buy_venue": best.buy_venue,
                "sell_venue": best.sell_venue,
                "size": best.size,
                "net_bps": best.net_bps,
                "profit": best.profit,
            },
            "mean_lifetime_ms": (self.total_lifetime_ns / self.closed / _NS_PER_MS)
            if self.closed
            else None,
            "by_route": {f"{s} {b}->{x}": n for (s, b, x), n in sorted(self.by_route.items())},
            "min_net_bps": self.min_net_bps,
            "fees_bps": {v: str(b) for v, b in self.fees.as_bps().items()},
        }


def detector_from_config(arb: ArbConfig, taker_bps: Mapping[str, float] | None = None) -> ArbDetector:
    """The detector every front end builds (live engine, replay, remote bus detector):
    thresholds from ``[arb]``, fee overrides by venue on top of the base-tier defaults."""
    return ArbDetector(
        FeeSchedule(dict(taker_bps or {})),
        min_net_bps=arb.min_net_bps,
        max_notional=arb.max_notional,
        max_age_ms=arb.max_age_ms,
        change_bps=arb.change_bps,
        change_ratio=arb.change_size_pct / 100,
    )
