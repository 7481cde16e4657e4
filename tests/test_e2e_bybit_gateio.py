"""End to end: the real client (Engine -> Link -> VenueFeed -> session -> BookSync) against
the Bybit and Gate simulators on loopback.

For each venue: the books sync and equal the model's; a skipped sequence resyncs that
one symbol while the others carry on; a client that misses its heartbeats is cut by
the server, reconnects and resyncs (and stays up once it pings); an unknown symbol is
reported as a ``VenueError`` and the other symbols are unaffected.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from arbwire.engine import Engine
from arbwire.feed import VenueFeed
from arbwire.model import Event, FeedState, SyncState
from arbwire.sim.runner import Simulators, start_simulators
from helpers.engine import fast_link, running, sim_config
from helpers.engine import until as wait_until

TICK_MS = 20
SYMBOLS = ("BTC-USDT", "ETH-USDT", "SOL-USDT")


@contextlib.asynccontextmanager
async def engine_on(
    sims: Simulators, venue: str, symbols: list[str], options: Mapping[str, Any], cache: Path, *,
    check_instruments: bool,
) -> AsyncIterator[tuple[Engine, list[Event]]]:
    engine = Engine(sim_config(
        sims, cache, venues=[venue], symbols=symbols, options={venue: options}, link=fast_link(),
        check_instruments=check_instruments,  # True: the sim's instrument list drops unknowns first
    ))
    async with running(engine) as events:
        yield engine, events


until = functools.partial(wait_until, timeout=3.0)


def synced(feed: VenueFeed, *symbols: str) -> bool:
    return all(feed.syncs[s].state is SyncState.SYNCED for s in symbols)


async def assert_books_exact(sims: Simulators, venue: str, feed: VenueFeed, symbols: tuple[str, ...],
                             depth: int) -> None:
    """Quiet the market, let the last frames land, and compare with the model's books."""
    for s in symbols:
        sims.model.freeze(s)
    await asyncio.sleep(0.25)
    for s in symbols:
        book = sims.model.book(venue, s)
        want_bids = sorted(book.bids.items(), reverse=True)[:depth]
        want_asks = sorted(book.asks.items())[:depth]
        client = feed.syncs[s].book
        got_bids = [(Decimal(p), Decimal(q)) for p, q in client.bids.text_levels(10_000)]
        got_asks = [(Decimal(p), Decimal(q)) for p, q in client.asks.text_levels(10_000)]
        assert (got_bids, got_asks) == (want_bids, want_asks), s
    for s in symbols:
        sims.model.freeze(s, False)


async def gap_and_unknown_symbol(venue: str, options: Mapping[str, Any], depth: int,
                                 expected_errors: int, fresh_book_fault: str, cache: Path) -> None:
    sims = await start_simulators((venue,), SYMBOLS, tick_ms=TICK_MS, seed=21)
    try:
        # No instrument check: NOPE-USDT goes to the venue, whose WS refuses it.
        async with engine_on(sims, venue, [*SYMBOLS, "NOPE-USDT"], options, cache,
                             check_instruments=False) as (engine, events):
            feed, link = engine.feeds[venue], engine.links[venue]
            await until(lambda: synced(feed, *SYMBOLS), what="books synced")
            await until(lambda: len(engine.errors) >= expected_errors, what="error reported")
            assert {e.symbol for e in engine.errors} == {"NOPE-USDT"}
            assert all("NOPE" in e.message and e.code != "unlisted" for e in engine.errors)
            assert feed.syncs["NOPE-USDT"].state is SyncState.INIT  # never any data
            await assert_books_exact(sims, venue, feed, SYMBOLS, depth)

            mark = len(events)
            sims.inject(venue, "skip_sequence", symbol="BTC-USDT")
            btc = feed.syncs["BTC-USDT"]
            await until(lambda: btc.gaps == 1 and btc.synced, what="BTC resynced after the gap")
            await asyncio.sleep(0.2)
            states = [e for e in events[mark:] if isinstance(e, FeedState)]
            assert {e.symbol for e in states} == {"BTC-USDT"}, states  # nobody else noticed
            assert [e.state for e in states][:1] == [SyncState.RESYNCING] and states[-1].state is SyncState.SYNCED
            for s in ("ETH-USDT", "SOL-USDT"):
                assert feed.syncs[s].gaps == 0 and feed.syncs[s].resyncs == 0 and feed.syncs[s].synced
            assert link.stats.connects == 1 and feed.session.stats.bad_frames == 0
            assert len(engine.errors) == expected_errors  # the unknown symbol was reported once
            await assert_books_exact(sims, venue, feed, SYMBOLS, depth)

            # A book pushed anew in the stream (Bybit's u=1 restart snapshot, Gate's extra
            # full:true) replaces the book: no gap, no resync.
            mark = len(events)
            sims.inject(venue, fresh_book_fault, symbol="ETH-USDT")
            await asyncio.sleep(0.3)
            states = [(e.symbol, e.state, e.reason) for e in events[mark:] if isinstance(e, FeedState)]
            assert states == [("ETH-USDT", SyncState.SYNCED, "snapshot")]  # the new book arrived
            eth = feed.syncs["ETH-USDT"]
            assert eth.synced and eth.gaps == 0 and eth.resyncs == 0
            assert link.stats.connects == 1 and feed.session.stats.bad_frames == 0
            await assert_books_exact(sims, venue, feed, SYMBOLS, depth)
    finally:
        await sims.close()


async def missed_heartbeat(venue: str, server: Mapping[str, Any], client: Mapping[str, Any],
                           start_pinging: Callable[[Any], None], depth: int, cache: Path) -> None:
    symbols = SYMBOLS[:2]
    sims = await start_simulators((venue,), symbols, tick_ms=TICK_MS, seed=4,
                                  venue_options={venue: dict(server)})
    try:
        # The instrument check (the sim's REST list, parsed by the client) drops NOPE-USDT.
        async with engine_on(sims, venue, [*symbols, "NOPE-USDT"], client, cache,
                             check_instruments=True) as (engine, events):
            await until(lambda: engine.instruments is not None, what="instrument lists loaded")
            assert [(e.symbol, e.code) for e in engine.errors] == [("NOPE-USDT", "unlisted")]
            feed, link = engine.feeds[venue], engine.links[venue]
            assert list(feed.syncs) == list(symbols)
            await until(lambda: synced(feed, *symbols), what="books synced")
            await until(lambda: link.stats.connects >= 2, timeout=4.0, what="server cut the silent link")
            assert link.stats.last_error.startswith("closed by venue"), link.stats.last_error
            lost = [e for e in events if isinstance(e, FeedState) and e.reason == "link lost"]
            assert {e.symbol for e in lost} == set(symbols)
            await until(lambda: synced(feed, *symbols), what="books resynced after the reconnect")
            await assert_books_exact(sims, venue, feed, symbols, depth)
            # With its heartbeat on, the client keeps the link.
            start_pinging(feed.session)
            await asyncio.sleep(1.2)  # a link already past its deadline is replaced meanwhile
            connects = link.stats.connects
            await asyncio.sleep(1.5)
            assert link.stats.connects == connects and synced(feed, *symbols)
    finally:
        await sims.close()


def ping_every_200ms(session: Any) -> None:
    session.ping_interval_ns = 200_000_000


async def test_bybit_gap_resyncs_one_symbol_and_unknown_symbol_is_reported(tmp_path: Path) -> None:
    # One request per symbol, one success:false reply for NOPE's whole request.
    await gap_and_unknown_symbol("bybit", {}, 50, 1, "restart", tmp_path)


@pytest.mark.parametrize("book_channel", ["obu", "order_book_update"])
async def test_gateio_gap_resyncs_one_symbol_and_unknown_symbol_is_reported(
    book_channel: str, tmp_path: Path
) -> None:
    # NOPE_USDT is refused three times: its book, book_ticker and trades requests.
    depth = 50 if book_channel == "obu" else 100
    await gap_and_unknown_symbol("gateio", {"book_channel": book_channel}, depth, 3, "full_snapshot",
                                 tmp_path)


async def test_bybit_missed_pings_get_the_link_cut_then_it_reconnects_and_resyncs(tmp_path: Path) -> None:
    await missed_heartbeat(
        "bybit",
        {"idle_timeout_s": 1.0, "idle_counts_pushes": False},  # only JSON pings keep a link
        {"ping_interval_s": 1000.0},
        ping_every_200ms,
        50,
        tmp_path,
    )


async def test_gateio_missed_pings_get_the_link_cut_then_it_reconnects_and_resyncs(tmp_path: Path) -> None:
    await missed_heartbeat(
        "gateio",
        # The client's transport answers ping frames by itself: only spot.ping counts here.
        {"ping_interval_s": 0.2, "ping_timeout_s": 1.0, "pongs_count": False},
        {"ping_interval_s": 1000.0},
        ping_every_200ms,
        50,
        tmp_path,
    )
