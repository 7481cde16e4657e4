"""End to end: the HTX simulator on loopback against the real client code.

An ``Engine`` built from ``Config`` (as ``arbwire run`` does) runs in a task against
``HtxServer``; books rebuilt by the client are compared exactly with the model's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from arbwire.book import L2Book
from arbwire.engine import Engine
from arbwire.feed import VenueFeed
from arbwire.model import FeedState, Quote, SyncState, Trade, VenueError
from arbwire.sim.market import Instrument
from arbwire.sim.runner import Simulators, start_simulators
from arbwire.venues.base import Output, Send
from arbwire.venues.htx import HtxSession
from helpers.engine import fast_link, running, sim_config
from helpers.engine import until as wait_until

TICK_MS = 25
PEPE = Instrument("PEPE-USDT", Decimal("0.00001234"), Decimal("3000000"), tick=Decimal("0.00000001"),
                  lot=Decimal("1"))


@pytest.fixture
def pongs(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """``pongs["mute"] = True`` makes every HtxSession swallow its ``{"pong":..}`` answers
    (patched on the class: the link may clone sessions per connection)."""
    flag = {"mute": False}
    original = HtxSession.on_frame

    def on_frame(self: HtxSession, payload: bytes, recv_ns: int) -> list[Output]:
        out = original(self, payload, recv_ns)
        if flag["mute"]:
            out = [o for o in out if not (isinstance(o, Send) and o.text.startswith('{"pong"'))]
        return out

    monkeypatch.setattr(HtxSession, "on_frame", on_frame)
    return flag


class Running:
    def __init__(self, engine: Engine, events: list[Any]) -> None:
        self.engine = engine
        self.events = events

    @property
    def feed(self) -> VenueFeed:
        return self.engine.feeds["htx"]

    def state(self, symbol: str) -> SyncState:
        return self.feed.syncs[symbol].state


@contextlib.asynccontextmanager
async def engine_on(
    sims: Simulators, symbols: list[str], cache: Path, *, check_instruments: bool = True, **options: Any
) -> AsyncIterator[Running]:
    # The client spaces reqs by exactly HTX's 100 ms limit (measured at its end: the sim
    # saw 100.7 ms), so jitter can draw a "429 too many request"; keep a margin here.
    options.setdefault("req_interval_s", 0.12)
    engine = Engine(sim_config(
        sims, cache, venues=["htx"], symbols=symbols, options={"htx": options},
        link=fast_link(backoff_cap_s=0.1), check_instruments=check_instruments,
    ))
    async with running(engine) as events:
        yield Running(engine, events)


until = functools.partial(wait_until, timeout=4.0)


def levels(book: L2Book) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    return (
        {Decimal(p): Decimal(s) for p, s in book.bids.text_levels(10_000)},
        {Decimal(p): Decimal(s) for p, s in book.asks.text_levels(10_000)},
    )


def model_top(sims: Simulators, symbol: str, n: int = 150) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    book = sims.model.book("htx", symbol)
    bids = sorted(book.bids, reverse=True)[:n]
    asks = sorted(book.asks)[:n]
    return {p: book.bids[p] for p in bids}, {p: book.asks[p] for p in asks}


async def books_match_model(sims: Simulators, c: Running, symbols: list[str]) -> None:
    """Freeze the symbols, let the last increments land, compare exactly."""
    for symbol in symbols:
        sims.model.freeze(symbol)
    await asyncio.sleep(0.15)
    for symbol in symbols:
        assert c.state(symbol) is SyncState.SYNCED, (symbol, c.feed.syncs[symbol].reason)
        assert levels(c.feed.syncs[symbol].book) == model_top(sims, symbol), symbol
    for symbol in symbols:
        sims.model.freeze(symbol, False)


def synced(c: Running, symbols: list[str]) -> Callable[[], bool]:
    return lambda: "htx" in c.engine.feeds and all(c.state(s) is SyncState.SYNCED for s in symbols)


async def test_books_sync_with_late_reps_and_match_the_model(tmp_path: Path) -> None:
    symbols = ["BTC-USDT", "ETH-USDT", "PEPE-USDT"]
    opts = {"htx": {"rep_delay_s": 0.12}}  # every rep is older than increments already sent
    async with (
        await start_simulators(("htx",), ("BTC-USDT", "ETH-USDT", PEPE), tick_ms=TICK_MS,  # type: ignore[arg-type]
                               seed=4, venue_options=opts) as sims,
        engine_on(sims, symbols, tmp_path) as c,
    ):
        await until(synced(c, symbols), what="all books synced")
        await asyncio.sleep(0.3)
        await books_match_model(sims, c, symbols)
        for symbol in symbols:
            sync = c.feed.syncs[symbol]
            assert sync.gaps == 0 and sync.resyncs == 0 and sync.applied > 3, symbol
        assert c.feed.session.stats.bad_frames == 0 and c.feed.session.stats.venue_errors == 0
        # mbp books on /feed, and a companion /ws link for bbo and trades of the same symbols
        assert c.engine.links["htx"].stats.connects == 2
        assert sorted(link.state.path for link in sims.venue("htx").links.values()) == ["/feed", "/ws"]
        quotes = [e for e in c.events if isinstance(e, Quote)]
        trades = [e for e in c.events if isinstance(e, Trade)]
        assert {q.symbol for q in quotes} == set(symbols) and {t.venue for t in trades} == {"htx"}
        assert not c.engine.unlisted  # the simulator's /v1/common/symbols lists them all
        assert c.engine.instruments is not None
        pepe = c.engine.instruments.get("htx", "PEPE-USDT")
        assert pepe is not None and pepe.venue_symbol == "pepeusdt" and pepe.tick_size == "0.00000001"


async def test_a_stricter_req_limit_is_learned_and_every_book_syncs_without_errors(tmp_path: Path) -> None:
    """The venue allows one req per 300 ms, the client starts at 120 ms: the 429s widen its
    spacing until the reqs pass, and no VenueError reaches the trader."""
    symbols = ["BTC-USDT", "ETH-USDT", "PEPE-USDT", "LTC-USDT"]
    async with (
        await start_simulators(("htx",), ("BTC-USDT", "ETH-USDT", PEPE, "LTC-USDT"), tick_ms=TICK_MS,  # type: ignore[arg-type]
                               seed=5, venue_options={"htx": {"req_interval_s": 0.3}}) as sims,
        engine_on(sims, symbols, tmp_path) as c,
    ):
        await until(synced(c, symbols), what="all books synced", timeout=8.0)
        session = c.feed.session
        assert isinstance(session, HtxSession)
        assert session.req_throttled >= 1 and session.req_gap_ns > session.req_interval_ns
        assert session.stats.venue_errors == 0
        assert not [e for e in c.events if isinstance(e, VenueError)]
        await books_match_model(sims, c, symbols)


async def test_a_skipped_sequence_resyncs_only_that_symbol(tmp_path: Path) -> None:
    symbols = ["BTC-USDT", "ETH-USDT"]
    async with (
        await start_simulators(("htx",), symbols, tick_ms=TICK_MS, seed=8) as sims,
        engine_on(sims, symbols, tmp_path) as c,
    ):
        await until(synced(c, symbols), what="all books synced")
        await asyncio.sleep(0.1)
        mark = len(c.events)
        sims.venue("htx").skip_sequence("BTC-USDT")
        btc, eth = c.feed.syncs["BTC-USDT"], c.feed.syncs["ETH-USDT"]
        await until(lambda: btc.gaps == 1, what="the gap seen")
        await until(synced(c, symbols), what="BTC resynced")
        await asyncio.sleep(0.2)
        assert btc.gaps == 1 and btc.resyncs == 1 and eth.gaps == 0 and eth.resyncs == 0
        states = [(e.symbol, e.state, e.reason) for e in c.events[mark:] if isinstance(e, FeedState)]
        assert states == [("BTC-USDT", SyncState.RESYNCING, "gap"), ("BTC-USDT", SyncState.SYNCED, "snapshot")]
        await books_match_model(sims, c, symbols)
        assert c.engine.links["htx"].stats.connects == 2


async def test_unanswered_pings_get_the_link_dropped_then_it_reconnects_and_resyncs(
    tmp_path: Path, pongs: dict[str, bool]
) -> None:
    symbols = ["BTC-USDT", "ETH-USDT"]
    opts = {"htx": {"ping_interval_s": 0.2}}
    async with (
        await start_simulators(("htx",), symbols, tick_ms=TICK_MS, seed=9, venue_options=opts) as sims,
        engine_on(sims, symbols, tmp_path) as c,
    ):
        link = c.engine.links["htx"]
        await until(synced(c, symbols), what="all books synced")
        await asyncio.sleep(0.7)  # answered pings keep the link up
        assert link.stats.connects == 2 and c.feed.session.pings >= 2
        pongs["mute"] = True
        mark = len(c.events)
        await until(lambda: link.stats.connects >= 4, timeout=3, what="both connections back")
        pongs["mute"] = False
        assert "closed by venue" in link.stats.last_error  # the server hung up, not the client
        lost = {e.symbol for e in c.events[mark:] if isinstance(e, FeedState) and e.reason == "link lost"}
        assert lost == set(symbols)
        await until(synced(c, symbols), what="books resynced on the new link")
        await asyncio.sleep(0.8)  # four ping intervals: the new link, answering, stays
        assert link.stats.connects == 4 and len(sims.venue("htx").links) == 2
        await books_match_model(sims, c, symbols)


async def test_an_unknown_symbol_is_reported_and_the_others_carry_on(tmp_path: Path) -> None:
    symbols = ["BTC-USDT", "NOPE-USDT", "ETH-USDT"]
    async with (
        await start_simulators(("htx",), ["BTC-USDT", "ETH-USDT"], tick_ms=TICK_MS, seed=10) as sims,
        # with the instrument check the client would drop NOPE-USDT itself: let the venue refuse it
        engine_on(sims, symbols, tmp_path, check_instruments=False) as c,
    ):
        await until(synced(c, ["BTC-USDT", "ETH-USDT"]), what="the known books synced")
        await asyncio.sleep(0.2)
        errors = [e for e in c.events if isinstance(e, VenueError)]
        # one per refused subscription: the book on /feed, bbo and trades on the /ws companion
        assert {(e.venue, e.symbol, e.code) for e in errors} == {("htx", "NOPE-USDT", "bad-request")}
        assert all(e.message.startswith("invalid symbol nopeusdt") for e in errors)
        topics = sorted(e.message.rsplit(".", 1)[-1].rstrip(")") for e in errors)
        assert [e.message.split("(sub ")[1].rstrip(")") for e in errors if "mbp" in e.message] == [
            "market.nopeusdt.mbp.150"]
        assert len(errors) == 3 and topics == ["150", "bbo", "detail"]
        assert list(c.engine.errors) == errors
        assert c.state("NOPE-USDT") is SyncState.INIT
        await asyncio.sleep(0.2)
        await books_match_model(sims, c, ["BTC-USDT", "ETH-USDT"])
        assert c.engine.links["htx"].stats.connects == 2


async def test_the_companion_link_drops_alone_and_the_books_never_notice(tmp_path: Path) -> None:
    """The /ws link (bbo, trades) goes down: it reconnects and its data comes back, while
    the mbp books on /feed stay synced and are never resynced."""
    symbols = ["BTC-USDT", "ETH-USDT"]
    async with (
        await start_simulators(("htx",), symbols, tick_ms=TICK_MS, seed=13) as sims,
        engine_on(sims, symbols, tmp_path) as c,
    ):
        link = c.engine.links["htx"]
        await until(synced(c, symbols), what="all books synced")
        await until(lambda: any(isinstance(e, Trade) for e in c.events), what="trades from /ws")
        server = sims.venue("htx")
        (ws,) = [lk for lk in server.links.values() if lk.state.path == "/ws"]
        ws.transport.disconnect()
        await until(lambda: link.stats.connects >= 3, what="the /ws link reconnected")
        mark = len(c.events)
        await until(lambda: any(isinstance(e, Quote) for e in c.events[mark:]), what="quotes again")
        assert [e for e in c.events if isinstance(e, FeedState) and e.reason == "link lost"] == []
        for symbol in symbols:
            sync = c.feed.syncs[symbol]
            assert sync.state is SyncState.SYNCED and sync.resyncs == 0, symbol
        assert sorted(lk.state.path for lk in server.links.values()) == ["/feed", "/ws"]
        await books_match_model(sims, c, symbols)


async def test_no_companion_when_turned_off(tmp_path: Path) -> None:
    symbols = ["BTC-USDT"]
    async with (
        await start_simulators(("htx",), symbols, tick_ms=TICK_MS, seed=14) as sims,
        engine_on(sims, symbols, tmp_path, ws_companion=False) as c,
    ):
        await until(synced(c, symbols), what="the book synced")
        await asyncio.sleep(0.3)
        assert c.engine.links["htx"].stats.connects == 1 and len(c.engine.links["htx"].shards) == 1
        assert not any(isinstance(e, Quote | Trade) for e in c.events)


async def test_ws_link_depth_books_quotes_and_trades(tmp_path: Path) -> None:
    symbols = ["BTC-USDT", "PEPE-USDT"]
    opts = {"htx": {"depth_interval_s": 0.2}}
    async with (
        await start_simulators(("htx",), ("BTC-USDT", PEPE), tick_ms=TICK_MS,  # type: ignore[arg-type]
                               seed=12, venue_options=opts) as sims,
        engine_on(sims, symbols, tmp_path, book_channel="depth") as c,
    ):
        await until(synced(c, symbols), what="depth books")
        assert c.feed.session.url().endswith("/ws")
        await asyncio.sleep(0.6)
        for symbol in symbols:
            sims.model.freeze(symbol)
        await asyncio.sleep(0.45)  # two depth pushes after the freeze
        for symbol in symbols:
            assert levels(c.feed.syncs[symbol].book) == model_top(sims, symbol), symbol
        quotes = [e for e in c.events if isinstance(e, Quote)]
        trades = [e for e in c.events if isinstance(e, Trade)]
        assert {q.symbol for q in quotes} == set(symbols) and trades
        book = sims.model.book("htx", "PEPE-USDT")
        last = [q for q in quotes if q.symbol == "PEPE-USDT"][-1]
        assert (Decimal(last.bid), Decimal(last.ask)) == (max(book.bids), min(book.asks))
        assert all(Decimal(t.size) > 0 and t.trade_id.isdigit() for t in trades)
        assert c.feed.session.stats.bad_frames == 0
