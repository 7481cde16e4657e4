"""A seeded, venue-agnostic market: one common mid per symbol and one L2 book per venue.

The simulators' venue servers turn what this model does into wire frames; the model
itself knows nothing of any protocol. Its books are plain ``dict[Decimal, Decimal]``
(price -> size) on purpose: the client under test keeps its books in its own
representation, and an independent, obviously-exact one here means a bug on one side
cannot hide in shared code.

Every random choice comes from one ``random.Random(seed)`` consumed in a fixed order
(venues, then symbols, as given), so two models with the same seed, venues, symbols
and config are identical after the same number of ``step()`` calls. The wall clock is
never read here; the runner stamps episodes with the time their frames went out.

Arbitrage episodes: a large seller sweeps one venue's bids and leaves a stray ask well
below the common mid; at the same time a large buyer on another venue leaves a stray
bid well above it. Both books stay uncrossed (the swept levels are deleted, as a real
matching engine would), so only a cross-venue detector can see the edge.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType
from typing import Any

Book = dict[Decimal, Decimal]
"""price -> size; a price absent from the dict has no resting size."""


@dataclass(frozen=True, slots=True)
class Instrument:
    """What the model needs to know about one symbol (common ``BASE-QUOTE`` form)."""

    symbol: str
    start_mid: Decimal
    typical_size: Decimal  # median size resting on one level, in base units
    tick: Decimal = Decimal("0.01")
    lot: Decimal = Decimal("0.0001")

    @property
    def base(self) -> str:
        return self.symbol.partition("-")[0]

    @property
    def quote(self) -> str:
        return self.symbol.partition("-")[2]


DEFAULT_INSTRUMENTS: Mapping[str, Instrument] = MappingProxyType({
    "BTC-USDT": Instrument("BTC-USDT", Decimal("60000"), Decimal("0.25")),
    "ETH-USDT": Instrument("ETH-USDT", Decimal("3000"), Decimal("4")),
    "SOL-USDT": Instrument("SOL-USDT", Decimal("150"), Decimal("60")),
})


def instrument_for(symbol: str) -> Instrument:
    """The default instrument for a symbol; unknown symbols get a generic one near 100."""
    if symbol in DEFAULT_INSTRUMENTS:
        return DEFAULT_INSTRUMENTS[symbol]
    if "-" not in symbol:
        raise ValueError(f"symbol {symbol!r} is not in BASE-QUOTE form, e.g. BTC-USDT")
    return Instrument(symbol, Decimal("100"), Decimal("50"))


@dataclass(frozen=True, slots=True)
class MarketConfig:
    """Knobs of the model. Defaults look like a calm, liquid spot market."""

    levels: int = 50  # target levels per side per venue
    top_gap_bps: float = 0.3  # gap between the first two levels; gaps widen with depth
    half_spread_bps: float = 0.4
    venue_offset_bps: float = 2.0  # each venue's mid sits within +-this of the common mid
    volatility_bps: float = 0.3  # std of the common mid's move per step
    mean_reversion: float = 0.002  # pull per step back to the start mid (keeps long runs sane)
    changes_per_step: tuple[int, int] = (2, 6)  # random add/resize/delete ops per venue+symbol
    trade_probability: float = 0.3  # per venue+symbol+step
    episode_first_s: float = 1.0
    episode_every_s: float = 3.0  # mean gap between episode starts (uniform 0.5x..1.5x)
    episode_duration_s: float = 1.0
    episode_edge_bps: float = 30.0  # each stray sits this far from the common mid
    episodes: bool = True
    # "random": any two venues each time; "cycle": every venue pair in turn (direction
    # random), so a short run with many venues shows every pair
    episode_pairs: str = "random"


@dataclass(frozen=True, slots=True)
class BookCopy:
    """A frozen copy of one venue's book, for test oracles."""

    bids: Mapping[Decimal, Decimal]
    asks: Mapping[Decimal, Decimal]

    def sorted_bids(self) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.bids.items(), reverse=True)

    def sorted_asks(self) -> list[tuple[Decimal, Decimal]]:
        return sorted(self.asks.items())


@dataclass(slots=True)
class Episode:
    """One injected cross-venue arbitrage: buy the stray ask on ``buy_venue``, sell the
    stray bid on ``sell_venue``, ``size`` each.

    ``start_ns``/``end_ns`` are ``time.time_ns()`` when the frames exposing/removing it
    were sent (0 until then); ``start_step``/``end_step`` are model steps. The book
    copies are both venues' full books right after the strays appeared.
    """

    id: int
    symbol: str
    buy_venue: str
    sell_venue: str
    buy_price: Decimal  # the stray ask on buy_venue
    sell_price: Decimal  # the stray bid on sell_venue
    size: Decimal
    start_step: int
    planned_end_step: int
    buy_book: BookCopy
    sell_book: BookCopy
    mid: Decimal  # common mid when it opened
    start_ns: int = 0
    end_ns: int = 0
    end_step: int = -1

    @property
    def gross_bps(self) -> float:
        return float((self.sell_price - self.buy_price) / self.buy_price) * 1e4

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form; prices and sizes as decimal text."""

        def levels(pairs: Iterable[tuple[Decimal, Decimal]]) -> list[list[str]]:
            return [[str(p), str(s)] for p, s in pairs]

        return {
            "id": self.id,
            "symbol": self.symbol,
            "buy_venue": self.buy_venue,
            "sell_venue": self.sell_venue,
            "buy_price": str(self.buy_price),
            "sell_price": str(self.sell_price),
            "size": str(self.size),
            "gross_bps": round(self.gross_bps, 3),
            "mid": str(self.mid),
            "start_step": self.start_step,
            "end_step": self.end_step,
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "buy_book": {
                "bids": levels(self.buy_book.sorted_bids()),
                "asks": levels(self.buy_book.sorted_asks()),
            },
            "sell_book": {
                "bids": levels(self.sell_book.sorted_bids()),
                "asks": levels(self.sell_book.sorted_asks()),
            },
        }


@dataclass(frozen=True, slots=True)
class SimTrade:
    """A taker order that hit one venue's best level during a step."""

    venue: str
    symbol: str
    price: Decimal
    size: Decimal
    taker_side: str  # "buy" lifted the best ask, "sell" hit the best bid


@dataclass(slots=True)
class BookDiff:
    """Net level changes of one venue+symbol in one step: absolute new sizes, 0 deletes."""

    venue: str
    symbol: str
    bids: dict[Decimal, Decimal] = field(default_factory=dict)
    asks: dict[Decimal, Decimal] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.bids) + len(self.asks)


@dataclass(slots=True)
class Step:
    """Everything that happened in one model step, for the venue servers to publish."""

    index: int
    diffs: dict[tuple[str, str], BookDiff]  # (venue, symbol) -> diff; only non-empty ones
    trades: list[SimTrade]
    opened: list[Episode]
    closed: list[Episode]


class VenueBook:
    """One venue's book for one symbol, with the bookkeeping a step needs.

    ``pinned`` holds the stray episode levels: random activity never touches them.
    Changes are recorded against the size at the start of the step so the published
    diff is the net change (a level added and removed within a step never shows).
    """

    __slots__ = ("bids", "asks", "pinned_bids", "pinned_asks", "_before_bids", "_before_asks")

    def __init__(self) -> None:
        self.bids: Book = {}
        self.asks: Book = {}
        self.pinned_bids: set[Decimal] = set()
        self.pinned_asks: set[Decimal] = set()
        self._before_bids: dict[Decimal, Decimal] = {}
        self._before_asks: dict[Decimal, Decimal] = {}

    def side(self, is_bid: bool) -> Book:
        return self.bids if is_bid else self.asks

    def set(self, is_bid: bool, price: Decimal, size: Decimal) -> None:
        book = self.bids if is_bid else self.asks
        before = self._before_bids if is_bid else self._before_asks
        if price not in before:
            before[price] = book.get(price, Decimal(0))
        if size > 0:
            book[price] = size
        else:
            book.pop(price, None)

    def take_diff(self, venue: str, symbol: str) -> BookDiff:
        diff = BookDiff(venue, symbol)
        for before, book, out in (
            (self._before_bids, self.bids, diff.bids),
            (self._before_asks, self.asks, diff.asks),
        ):
            for price, old in before.items():
                new = book.get(price, Decimal(0))
                if new != old:
                    out[price] = new
            before.clear()
        return diff

    def copy(self) -> BookCopy:
        return BookCopy(dict(self.bids), dict(self.asks))

    def best_bid(self) -> Decimal | None:
        return max(self.bids) if self.bids else None

    def best_ask(self) -> Decimal | None:
        return min(self.asks) if self.asks else None

    def top(self) -> tuple[Decimal, Decimal, Decimal, Decimal] | None:
        """``(bid, bid size, ask, ask size)`` of the best levels; None while a side is empty."""
        if not (self.bids and self.asks):
            return None
        bb, ba = max(self.bids), min(self.asks)
        return bb, self.bids[bb], ba, self.asks[ba]


@dataclass(slots=True)
class _Constraint:
    """While an episode runs: bids on the cheap venue stay below ``bid_below``; asks on
    the rich venue stay above ``ask_above``."""

    bid_below: Decimal | None = None
    ask_above: Decimal | None = None


class MarketModel:
    """The shared market. Call ``step()`` once per tick; read ``book(venue, symbol)``."""

    def __init__(
        self,
        venues: Sequence[str],
        symbols: Sequence[str | Instrument],
        *,
        seed: int = 1,
        tick_ms: int = 100,
        config: MarketConfig | None = None,
    ) -> None:
        if not venues:
            raise ValueError("the market needs at least one venue")
        if len(set(venues)) != len(venues):
            raise ValueError(f"duplicate venue in {venues!r}")
        self.venues: tuple[str, ...] = tuple(venues)
        self.instruments: dict[str, Instrument] = {}
        for s in symbols:
            inst = s if isinstance(s, Instrument) else instrument_for(s)
            self.instruments[inst.symbol] = inst
        self.symbols: tuple[str, ...] = tuple(self.instruments)
        self.seed = seed
        self.tick_ms = tick_ms
        self.config = config or MarketConfig()
        self.step_index = 0
        self.episodes: list[Episode] = []
        self._rng = random.Random(seed)
        self._frozen: set[str] = set()
        self._log_mid = {s: math.log(float(i.start_mid)) for s, i in self.instruments.items()}
        self._offset_bps = {
            (v, s): self._rng.uniform(-self.config.venue_offset_bps, self.config.venue_offset_bps)
            for v in self.venues
            for s in self.symbols
        }
        self._books = {(v, s): VenueBook() for v in self.venues for s in self.symbols}
        self._constraints = {(v, s): _Constraint() for v in self.venues for s in self.symbols}
        self._active: dict[str, Episode] = {}  # symbol -> open episode
        self._pair_turn = 0  # next venue pair when episode_pairs == "cycle"
        self._next_episode_step = self._steps(self.config.episode_first_s)
        for venue in self.venues:
            for symbol in self.symbols:
                self._seed_book(venue, symbol)

    # ----- reading -----

    def book(self, venue: str, symbol: str) -> VenueBook:
        """The live book (do not mutate; copy it if you keep it)."""
        return self._books[(venue, symbol)]

    def mid(self, symbol: str) -> Decimal:
        """The common mid, rounded to the tick."""
        inst = self.instruments[symbol]
        return self._ticks_to_price(inst, round(math.exp(self._log_mid[symbol]) / float(inst.tick)))

    def active_episodes(self) -> list[Episode]:
        return list(self._active.values())

    # ----- control -----

    def freeze(self, symbol: str, frozen: bool = True) -> None:
        """Make a symbol quiet: its books stop changing (no trades, no episodes) until
        unfrozen. Lets tests reach the venues' no-change heartbeats and idle timeouts."""
        if symbol not in self.instruments:
            raise KeyError(f"unknown symbol {symbol!r}")
        if frozen:
            self._frozen.add(symbol)
        else:
            self._frozen.discard(symbol)

    def mark_sent(self, step: Step, now_ns: int) -> None:
        """Stamp the step's opened/closed episodes with the time their frames went out."""
        for ep in step.opened:
            ep.start_ns = now_ns
        for ep in step.closed:
            ep.end_ns = now_ns

    # ----- stepping -----

    def step(self) -> Step:
        self.step_index += 1
        rng = self._rng
        cfg = self.config
        trades: list[SimTrade] = []
        closed = self._close_due_episodes()
        for symbol in self.symbols:
            self._walk_mid(symbol)
        for venue in self.venues:
            for symbol in self.symbols:
                if symbol in self._frozen:
                    continue
                self._tidy(venue, symbol)
                for _ in range(rng.randint(*cfg.changes_per_step)):
                    self._random_change(venue, symbol)
                self._keep_depth(venue, symbol)
                if rng.random() < cfg.trade_probability:
                    trade = self._trade(venue, symbol)
                    if trade is not None:
                        trades.append(trade)
        opened = self._maybe_open_episode()
        diffs: dict[tuple[str, str], BookDiff] = {}
        for key, book in self._books.items():
            diff = book.take_diff(*key)
            if diff:
                diffs[key] = diff
        for ep in opened:
            # Copy after take_diff: the copies are exactly what the step's frames expose.
            ep.buy_book = self._books[(ep.buy_venue, ep.symbol)].copy()
            ep.sell_book = self._books[(ep.sell_venue, ep.symbol)].copy()
        return Step(self.step_index, diffs, trades, opened, closed)

    # ----- internals: prices -----

    def _steps(self, seconds: float) -> int:
        return max(1, round(seconds * 1000 / self.tick_ms))

    @staticmethod
    def _ticks_to_price(inst: Instrument, ticks: int) -> Decimal:
        return ticks * inst.tick

    def _fair_ticks(self, venue: str, symbol: str) -> float:
        inst = self.instruments[symbol]
        mid = math.exp(self._log_mid[symbol]) * (1 + self._offset_bps[(venue, symbol)] / 1e4)
        return mid / float(inst.tick)

    def _limits(self, venue: str, symbol: str) -> tuple[int, int]:
        """Highest allowed bid and lowest allowed ask, in ticks, for ordinary levels."""
        fair = self._fair_ticks(venue, symbol)
        half = max(1.0, fair * self.config.half_spread_bps / 1e4)
        bid_top = math.floor(fair - half)
        ask_top = math.ceil(fair + half)
        inst = self.instruments[symbol]
        c = self._constraints[(venue, symbol)]
        # Behind an episode's stray, liquidity rests a normal spread away from it.
        if c.bid_below is not None:
            bid_top = min(bid_top, math.floor(int(c.bid_below / inst.tick) - 2 * half))
        if c.ask_above is not None:
            ask_top = max(ask_top, math.ceil(int(c.ask_above / inst.tick) + 2 * half))
        return bid_top, ask_top

    def _gap_ticks(self, symbol: str, depth_index: int) -> int:
        """A random gap between neighbouring levels; wider deeper in the book."""
        inst = self.instruments[symbol]
        fair = math.exp(self._log_mid[symbol]) / float(inst.tick)
        mean = fair * self.config.top_gap_bps / 1e4 * (1 + depth_index / 10)
        return max(1, round(self._rng.expovariate(1 / mean)))

    def _random_size(self, symbol: str) -> Decimal:
        inst = self.instruments[symbol]
        size = float(inst.typical_size) * self._rng.lognormvariate(0, 0.9)
        lots = max(1, round(size / float(inst.lot)))
        return lots * inst.lot

    def _walk_mid(self, symbol: str) -> None:
        inst = self.instruments[symbol]
        start = math.log(float(inst.start_mid))
        x = self._log_mid[symbol]
        x += -self.config.mean_reversion * (x - start)
        x += self._rng.gauss(0, self.config.volatility_bps / 1e4)
        self._log_mid[symbol] = x

    # ----- internals: books -----

    def _seed_book(self, venue: str, symbol: str) -> None:
        inst = self.instruments[symbol]
        book = self._books[(venue, symbol)]
        bid_top, ask_top = self._limits(venue, symbol)
        for is_bid, top, sign in ((True, bid_top, -1), (False, ask_top, 1)):
            ticks = top
            for i in range(self.config.levels):
                book.side(is_bid)[self._ticks_to_price(inst, ticks)] = self._random_size(symbol)
                ticks += sign * self._gap_ticks(symbol, i)
        book.take_diff(venue, symbol)  # the seed is the starting state, not a change

    def _tidy(self, venue: str, symbol: str) -> None:
        """Drop ordinary levels the moving mid (or an episode constraint) has crossed."""
        inst = self.instruments[symbol]
        book = self._books[(venue, symbol)]
        bid_top, ask_top = self._limits(venue, symbol)
        max_bid = self._ticks_to_price(inst, bid_top)
        min_ask = self._ticks_to_price(inst, ask_top)
        for price in [p for p in book.bids if p > max_bid and p not in book.pinned_bids]:
            book.set(True, price, Decimal(0))
        for price in [p for p in book.asks if p < min_ask and p not in book.pinned_asks]:
            book.set(False, price, Decimal(0))

    def _ordinary(self, book: VenueBook, is_bid: bool) -> list[Decimal]:
        pinned = book.pinned_bids if is_bid else book.pinned_asks
        return sorted(
            (p for p in book.side(is_bid) if p not in pinned), reverse=is_bid
        )

    def _new_level_price(self, venue: str, symbol: str, is_bid: bool) -> Decimal:
        inst = self.instruments[symbol]
        bid_top, ask_top = self._limits(venue, symbol)
        fair = self._fair_ticks(venue, symbol)
        # Distance from the top, exponential: most new orders land near the touch.
        mean = fair * self.config.top_gap_bps / 1e4 * self.config.levels / 2
        dist = min(round(self._rng.expovariate(1 / mean)), round(mean * 8))
        ticks = bid_top - dist if is_bid else ask_top + dist
        return self._ticks_to_price(inst, max(1, ticks))

    def _random_change(self, venue: str, symbol: str) -> None:
        rng = self._rng
        book = self._books[(venue, symbol)]
        is_bid = rng.random() < 0.5
        r = rng.random()
        levels = self._ordinary(book, is_bid)
        if r < 0.5 and levels:  # resize, mostly near the touch
            price = levels[min(int(rng.expovariate(1 / 8)), len(levels) - 1)]
            book.set(is_bid, price, self._random_size(symbol))
        elif r < 0.8 or not levels:  # add (or resize if the price is taken)
            price = self._new_level_price(venue, symbol, is_bid)
            pinned = book.pinned_bids if is_bid else book.pinned_asks
            if price not in pinned:
                book.set(is_bid, price, self._random_size(symbol))
        else:  # cancel
            book.set(is_bid, levels[rng.randrange(len(levels))], Decimal(0))

    def _keep_depth(self, venue: str, symbol: str) -> None:
        """Refill a thin side near the touch; trim a fat one from the far end."""
        book = self._books[(venue, symbol)]
        target = self.config.levels
        for is_bid in (True, False):
            side = book.side(is_bid)
            pinned = book.pinned_bids if is_bid else book.pinned_asks
            tries = 0
            while len(side) < target - 3 and tries < target:
                tries += 1
                price = self._new_level_price(venue, symbol, is_bid)
                if price not in side and price not in pinned:
                    book.set(is_bid, price, self._random_size(symbol))
            if len(side) > target + 3:
                levels = self._ordinary(book, is_bid)
                for price in levels[target:]:
                    book.set(is_bid, price, Decimal(0))

    def _trade(self, venue: str, symbol: str) -> SimTrade | None:
        rng = self._rng
        inst = self.instruments[symbol]
        book = self._books[(venue, symbol)]
        taker_buys = rng.random() < 0.5
        is_bid = not taker_buys  # a taker buy lifts the ask side
        side = book.side(is_bid)
        if not side:
            return None
        price = max(side) if is_bid else min(side)
        if price in (book.pinned_bids if is_bid else book.pinned_asks):
            return None  # the stray levels of an episode stay whole
        resting = side[price]
        lots = max(1, round(float(resting) / float(inst.lot) * rng.uniform(0.05, 1.2)))
        size = min(resting, lots * inst.lot)
        book.set(is_bid, price, resting - size)
        return SimTrade(venue, symbol, price, size, "buy" if taker_buys else "sell")

    # ----- internals: episodes -----

    def _maybe_open_episode(self) -> list[Episode]:
        cfg = self.config
        if not cfg.episodes or len(self.venues) < 2 or self.step_index < self._next_episode_step:
            return []
        rng = self._rng
        gap = cfg.episode_every_s * rng.uniform(0.5, 1.5)
        self._next_episode_step = self.step_index + self._steps(gap)
        free = [s for s in self.symbols if s not in self._active and s not in self._frozen]
        if not free:
            return []
        symbol = rng.choice(free)
        if cfg.episode_pairs == "cycle":
            pairs = list(itertools.combinations(self.venues, 2))
            a, b = pairs[self._pair_turn % len(pairs)]
            self._pair_turn += 1
            buy_venue, sell_venue = (a, b) if rng.random() < 0.5 else (b, a)
        else:
            buy_venue, sell_venue = rng.sample(self.venues, 2)
        inst = self.instruments[symbol]
        mid = math.exp(self._log_mid[symbol]) / float(inst.tick)
        edge = cfg.episode_edge_bps / 1e4
        buy_price = self._ticks_to_price(inst, math.floor(mid * (1 - edge)))
        sell_price = self._ticks_to_price(inst, math.ceil(mid * (1 + edge)))
        size = self._random_size(symbol) * 2

        cheap = self._books[(buy_venue, symbol)]
        for price in [p for p in cheap.bids if p >= buy_price]:
            cheap.set(True, price, Decimal(0))  # swept by the big seller
        cheap.set(False, buy_price, size)
        cheap.pinned_asks.add(buy_price)
        self._constraints[(buy_venue, symbol)].bid_below = buy_price

        rich = self._books[(sell_venue, symbol)]
        for price in [p for p in rich.asks if p <= sell_price]:
            rich.set(False, price, Decimal(0))  # lifted by the big buyer
        rich.set(True, sell_price, size)
        rich.pinned_bids.add(sell_price)
        self._constraints[(sell_venue, symbol)].ask_above = sell_price
        # Resting liquidity reappears behind the strays in the same step, so the books
        # the episode exposes keep their usual depth.
        self._keep_depth(buy_venue, symbol)
        self._keep_depth(sell_venue, symbol)

        empty = BookCopy({}, {})
        ep = Episode(
            id=len(self.episodes) + 1,
            symbol=symbol,
            buy_venue=buy_venue,
            sell_venue=sell_venue,
            buy_price=buy_price,
            sell_price=sell_price,
            size=size,
            start_step=self.step_index,
            planned_end_step=self.step_index + self._steps(cfg.episode_duration_s),
            buy_book=empty,
            sell_book=empty,
            mid=self.mid(symbol),
        )
        self.episodes.append(ep)
        self._active[symbol] = ep
        return [ep]

    def _close_due_episodes(self) -> list[Episode]:
        closed = []
        for symbol, ep in list(self._active.items()):
            if self.step_index < ep.planned_end_step:
                continue
            cheap = self._books[(ep.buy_venue, symbol)]
            cheap.pinned_asks.discard(ep.buy_price)
            cheap.set(False, ep.buy_price, Decimal(0))
            self._constraints[(ep.buy_venue, symbol)].bid_below = None
            rich = self._books[(ep.sell_venue, symbol)]
            rich.pinned_bids.discard(ep.sell_price)
            rich.set(True, ep.sell_price, Decimal(0))
            self._constraints[(ep.sell_venue, symbol)].ask_above = None
            self._refill_touch(ep.buy_venue, symbol, is_bid=True)
            self._refill_touch(ep.sell_venue, symbol, is_bid=False)
            ep.end_step = self.step_index
            del self._active[symbol]
            closed.append(ep)
        return closed

    def _refill_touch(self, venue: str, symbol: str, *, is_bid: bool) -> None:
        """After an episode, liquidity returns near the touch (the swept side refills)."""
        inst = self.instruments[symbol]
        book = self._books[(venue, symbol)]
        bid_top, ask_top = self._limits(venue, symbol)
        side = book.side(is_bid)
        stop = (max(side) if side else None) if is_bid else (min(side) if side else None)
        ticks = bid_top if is_bid else ask_top
        sign = -1 if is_bid else 1
        for i in range(self.config.levels):
            price = self._ticks_to_price(inst, ticks)
            if stop is not None and (price <= stop if is_bid else price >= stop):
                break
            book.set(is_bid, price, self._random_size(symbol))
            ticks += sign * self._gap_ticks(symbol, i)
        levels = self._ordinary(book, is_bid)
        for price in levels[self.config.levels :]:
            book.set(is_bid, price, Decimal(0))
