"""The simulators' market model: deterministic, realistic enough, and honest about episodes."""

from __future__ import annotations

from decimal import Decimal

import pytest

from arbwire.sim.market import Book, MarketConfig, MarketModel

VENUES = ("binance", "okx")
SYMBOLS = ("BTC-USDT", "ETH-USDT")


def snapshot(model: MarketModel) -> dict[tuple[str, str], tuple[Book, Book]]:
    return {
        (v, s): (dict(model.book(v, s).bids), dict(model.book(v, s).asks))
        for v in model.venues
        for s in model.symbols
    }


def run(model: MarketModel, steps: int) -> list:
    return [model.step() for _ in range(steps)]


def test_same_seed_same_market_after_same_steps() -> None:
    a = MarketModel(VENUES, SYMBOLS, seed=7)
    b = MarketModel(VENUES, SYMBOLS, seed=7)
    steps_a, steps_b = run(a, 120), run(b, 120)
    assert snapshot(a) == snapshot(b)
    assert [(t.venue, t.price, t.size) for s in steps_a for t in s.trades] == [
        (t.venue, t.price, t.size) for s in steps_b for t in s.trades
    ]
    assert [e.to_dict() for e in a.episodes] == [e.to_dict() for e in b.episodes]
    assert a.episodes, "120 steps of 100 ms must contain an episode"


def test_different_seed_different_market() -> None:
    a = MarketModel(VENUES, SYMBOLS, seed=1)
    b = MarketModel(VENUES, SYMBOLS, seed=2)
    run(a, 5)
    run(b, 5)
    assert snapshot(a) != snapshot(b)


def test_diffs_replayed_on_the_start_books_give_the_live_books() -> None:
    model = MarketModel(VENUES, SYMBOLS, seed=3)
    books = snapshot(model)
    for step in run(model, 200):
        for (venue, symbol), diff in step.diffs.items():
            bids, asks = books[(venue, symbol)]
            for side, changes in ((bids, diff.bids), (asks, diff.asks)):
                for price, size in changes.items():
                    if size == 0:
                        assert price in side, "a delete must name a level that exists"
                        del side[price]
                    else:
                        assert side.get(price) != size, "a diff carries only real changes"
                        side[price] = size
    assert books == snapshot(model)


def test_books_look_like_a_market_at_every_step() -> None:
    model = MarketModel(VENUES, SYMBOLS, seed=4)
    for _ in range(300):
        model.step()
        for venue in VENUES:
            for symbol in SYMBOLS:
                inst = model.instruments[symbol]
                book = model.book(venue, symbol)
                assert 40 <= len(book.bids) <= 60 and 40 <= len(book.asks) <= 60
                assert max(book.bids) < min(book.asks), f"{venue} {symbol} crossed"
                for side in (book.bids, book.asks):
                    for price, size in side.items():
                        assert price % inst.tick == 0 and size % inst.lot == 0
                        assert size > 0
                mid = model.mid(symbol)
                assert abs(max(book.bids) - mid) / mid < Decimal("0.01")


def test_no_cross_venue_edge_outside_episodes() -> None:
    """Venue offsets and spreads alone never pay 20 bps fees + 10 bps min edge."""
    model = MarketModel(VENUES, SYMBOLS, seed=5)
    worst = -1e9
    for _ in range(400):
        model.step()
        busy = {e.symbol for e in model.active_episodes()}
        for symbol in SYMBOLS:
            if symbol in busy:
                continue
            for buy in VENUES:
                for sell in VENUES:
                    if buy == sell:
                        continue
                    ask = min(model.book(buy, symbol).asks)
                    bid = max(model.book(sell, symbol).bids)
                    worst = max(worst, float((bid - ask) / ask) * 1e4)
    assert worst < 10, f"an unintended edge of {worst:.1f} bps"


def test_first_episode_comes_early_and_exposes_a_real_edge() -> None:
    model = MarketModel(VENUES, SYMBOLS, seed=6, tick_ms=100)
    opened = []
    for _ in range(15):
        opened += model.step().opened
    assert len(opened) == 1
    ep = opened[0]
    assert ep.start_step == 10  # ~1 s at 100 ms ticks
    assert ep.buy_venue != ep.sell_venue
    assert ep.gross_bps > 50  # minus 20 bps fees leaves far more than a 10 bps min edge
    assert ep.buy_price < ep.mid < ep.sell_price
    # The copies show the strays at the touch, and the books stay uncrossed.
    assert ep.buy_book.sorted_asks()[0] == (ep.buy_price, ep.size)
    assert ep.sell_book.sorted_bids()[0] == (ep.sell_price, ep.size)
    assert ep.buy_book.sorted_bids()[0][0] < ep.buy_price
    assert ep.sell_book.sorted_asks()[0][0] > ep.sell_price
    # The copies are copies: the model moving on does not change them.
    frozen = dict(ep.buy_book.bids)
    run(model, 3)
    assert dict(ep.buy_book.bids) == frozen


def test_episode_ends_after_its_duration_and_the_strays_vanish() -> None:
    cfg = MarketConfig(episode_duration_s=0.5)
    model = MarketModel(VENUES, SYMBOLS, seed=8, tick_ms=100, config=cfg)
    steps = run(model, 20)
    ep = model.episodes[0]
    assert ep.end_step == ep.start_step + 5
    closing = steps[ep.end_step - 1]
    assert closing.closed == [ep]
    assert closing.diffs[(ep.buy_venue, ep.symbol)].asks[ep.buy_price] == 0
    assert closing.diffs[(ep.sell_venue, ep.symbol)].bids[ep.sell_price] == 0
    assert ep.buy_price not in model.book(ep.buy_venue, ep.symbol).asks
    # While it was open, nobody traded or resized the strays.
    for step in steps[ep.start_step : ep.end_step - 1]:
        diff = step.diffs.get((ep.buy_venue, ep.symbol))
        assert diff is None or ep.buy_price not in diff.asks


def test_episode_timestamps_are_stamped_by_mark_sent() -> None:
    model = MarketModel(VENUES, SYMBOLS, seed=9)
    for _ in range(30):
        step = model.step()
        model.mark_sent(step, 1000 + step.index)
    ep = model.episodes[0]
    assert ep.start_ns == 1000 + ep.start_step
    assert ep.end_ns == 1000 + ep.end_step


def test_any_venue_names_work() -> None:
    venues = ("binance", "okx", "bybit", "gateio", "htx")
    model = MarketModel(venues, ("BTC-USDT", "SOL-USDT", "DOGE-USDT"), seed=10)
    run(model, 40)
    for venue in venues:
        assert max(model.book(venue, "DOGE-USDT").bids) < min(model.book(venue, "DOGE-USDT").asks)
    assert all(e.buy_venue in venues and e.sell_venue in venues for e in model.episodes)


def test_one_venue_gets_no_episodes() -> None:
    model = MarketModel(("binance",), SYMBOLS, seed=11)
    assert not any(s.opened for s in run(model, 50))


def test_frozen_symbol_stops_changing() -> None:
    model = MarketModel(VENUES, SYMBOLS, seed=12)
    model.freeze("ETH-USDT")
    for step in run(model, 30):
        assert all(sym != "ETH-USDT" for _, sym in step.diffs)
        assert all(t.symbol != "ETH-USDT" for t in step.trades)
        assert all(e.symbol != "ETH-USDT" for e in step.opened)
    model.freeze("ETH-USDT", False)
    assert any(sym == "ETH-USDT" for s in run(model, 3) for _, sym in s.diffs)


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        MarketModel((), SYMBOLS)
    with pytest.raises(ValueError):
        MarketModel(("a", "a"), SYMBOLS)
    with pytest.raises(ValueError):
        MarketModel(VENUES, ("BTCUSDT",))
