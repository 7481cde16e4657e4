"""End to end over SBE: the real client (Engine -> Link -> VenueFeed -> BinanceSbeSession ->
BookSync) against the Binance simulator speaking SBE on loopback, with its API key.

The books sync from the REST snapshot and equal the model's; quotes and trades flow;
a skipped sequence resyncs that one symbol; a wrong key is refused at the upgrade with
the venue's 401, reported with its hint, and nothing else breaks."""

from __future__ import annotations

import asyncio
import functools
from decimal import Decimal

from arbwire.engine import Engine
from arbwire.model import Quote, SyncState, Trade
from arbwire.sim.runner import Simulators, start_simulators
from helpers.engine import fast_link, running, sim_config
from helpers.engine import until as wait_until

TICK_MS = 20
SYMBOLS = ("BTC-USDT", "ETH-USDT")
KEY = "test-ed25519-key"
until = functools.partial(wait_until, timeout=4.0)


async def _sims() -> Simulators:
    return await start_simulators(
        ("binance",), SYMBOLS, tick_ms=TICK_MS, seed=31, venue_options={"binance": {"sbe": True, "sbe_api_keys": (KEY,)}}
    )


def _engine(sims: Simulators, cache, key: str) -> Engine:  # type: ignore[no-untyped-def]
    options = {"binance": {"encoding": "sbe", "api_key": key}}
    return Engine(sim_config(sims, cache, venues=["binance"], symbols=list(SYMBOLS), options=options, link=fast_link()))


def _synced(engine: Engine) -> bool:
    return all(s.state is SyncState.SYNCED for s in engine.feeds["binance"].syncs.values()) and len(
        engine.feeds["binance"].syncs
    ) == len(SYMBOLS)


async def _assert_books_exact(sims: Simulators, engine: Engine) -> None:
    for s in SYMBOLS:
        sims.model.freeze(s)
    await asyncio.sleep(0.25)
    for s in SYMBOLS:
        book = sims.model.book("binance", s)
        client = engine.feeds["binance"].syncs[s].book
        got = (
            [(Decimal(p), Decimal(q)) for p, q in client.bids.text_levels(10_000)],
            [(Decimal(p), Decimal(q)) for p, q in client.asks.text_levels(10_000)],
        )
        assert got == (sorted(book.bids.items(), reverse=True), sorted(book.asks.items())), s
    for s in SYMBOLS:
        sims.model.freeze(s, False)


async def test_books_quotes_and_trades_over_sbe_and_a_gap_resyncs_one_symbol(tmp_path):
    sims = await _sims()
    try:
        engine = _engine(sims, tmp_path, KEY)
        session = engine.feeds["binance"].session
        assert type(session).__name__ == "BinanceSbeSession"
        async with running(engine) as events:
            await until(lambda: _synced(engine), what="books synced over SBE")
            await until(lambda: any(isinstance(e, Quote) for e in events) and any(isinstance(e, Trade) for e in events),
                        what="quotes and trades")  # fmt: skip
            await _assert_books_exact(sims, engine)
            resyncs = {s: y.resyncs for s, y in engine.feeds["binance"].syncs.items()}
            sims.venue("binance").skip_sequence("ETH-USDT")
            await until(lambda: engine.feeds["binance"].syncs["ETH-USDT"].resyncs == resyncs["ETH-USDT"] + 1,
                        what="ETH resync")  # fmt: skip
            await until(lambda: _synced(engine), what="synced again")
            await _assert_books_exact(sims, engine)
            after = {s: y.resyncs for s, y in engine.feeds["binance"].syncs.items()}
            quotes = [e for e in events if isinstance(e, Quote)]
            trades = [e for e in events if isinstance(e, Trade)]
    finally:
        await sims.close()
    assert after["BTC-USDT"] == resyncs["BTC-USDT"]  # the other book never noticed
    assert session.stats.bad_frames == 0 and session.stats.frames > 0
    assert {q.symbol for q in quotes} == set(SYMBOLS) and {t.symbol for t in trades} <= set(SYMBOLS)
    assert all(q.venue_ts_ns > 0 and q.update_id > 0 for q in quotes)  # SBE bestBidAsk carries both
    for q in quotes:
        assert Decimal(q.bid) < Decimal(q.ask)


async def test_a_wrong_key_is_refused_with_the_venues_401(tmp_path):
    sims = await _sims()
    try:
        engine = _engine(sims, tmp_path, "not-the-key")
        link = engine.links["binance"]
        async with running(engine):
            await until(lambda: link.stats.failures >= 1, what="refused")
            failure = link.stats.last_failure
    finally:
        await sims.close()
    assert failure is not None and failure.kind == "http" and failure.status == 401
    assert "-2015" in str(failure) and "unauthorised" in failure.hint
    assert not link.stats.connected and link.stats.connects == 0
