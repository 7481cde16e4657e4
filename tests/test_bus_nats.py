"""The bus with a real ``nats-server`` on loopback: publishers on the simulators, a remote detector.

Every test starts its own ``nats-server`` on a free 127.0.0.1 port (``.ci/run``
installs the Debian package when it is missing).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from arbwire.bus import BusDetector, BusPublisher, attach_publisher
from arbwire.config import Config, VenueConfig
from arbwire.engine import Engine
from arbwire.model import FeedState, Opportunity, OpportunityEvent, SyncState
from arbwire.sim.market import MarketConfig
from arbwire.sim.runner import Simulators, start_simulators
from helpers.engine import collect_opportunities, sim_config, until
from helpers.oracle import assert_episodes_found

NATS_SERVER = shutil.which("nats-server")
pytestmark = pytest.mark.skipif(
    NATS_SERVER is None, reason="nats-server not installed (apt-get install nats-server; .ci/run does it)"
)
SYMBOLS = ["BTC-USDT", "ETH-USDT"]
BOOKS = [(v, s) for v in ("binance", "okx") for s in SYMBOLS]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NatsServer:
    """One ``nats-server`` process on 127.0.0.1; ``kill()`` and ``start()`` again on the same port."""

    def __init__(self, log_path: Path) -> None:
        self.port = _free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert NATS_SERVER is not None
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                [NATS_SERVER, "-a", "127.0.0.1", "-p", str(self.port)], stdout=out, stderr=out
            )
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.02)
        raise RuntimeError("nats-server did not start listening within 5 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)
        self.proc = None


@pytest.fixture
def nats_server(tmp_path: Path):
    server = NatsServer(tmp_path / "nats-server.log")
    server.start()
    try:
        yield server
    finally:
        server.kill()


# -- helpers ------------------------------------------------------------------------------------


def _config(sims: Simulators, venues: tuple[str, ...], cache: Path) -> Config:
    return sim_config(sims, cache, venues=venues, symbols=SYMBOLS)


def _detector_config() -> Config:
    return Config(venues={v: VenueConfig(symbols=list(SYMBOLS)) for v in ("binance", "okx")})


class Publishers:
    """Engines (one per venue group), each with a publisher, running as tasks."""

    def __init__(self) -> None:
        self.engines: list[Engine] = []
        self.publishers: list[BusPublisher] = []
        self.tasks: list[asyncio.Task[None]] = []

    def add(self, config: Config, url: str, **options) -> BusPublisher:
        engine = Engine(config)
        options.setdefault("reconnect_wait_s", 0.1)
        publisher = attach_publisher(engine, url, **options)
        self.engines.append(engine)
        self.publishers.append(publisher)
        self.tasks.append(asyncio.create_task(engine.run()))
        return publisher

    def find(self, venue: str) -> tuple[Engine, BusPublisher]:
        for engine, publisher in zip(self.engines, self.publishers, strict=True):
            if venue in engine.feeds:
                return engine, publisher
        raise KeyError(venue)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def books_equal(pubs: Publishers, det: BusDetector, venue: str, symbol: str) -> bool | None:
    """None while not comparable (not both synced at the same bus sequence), else equality."""
    engine, publisher = pubs.find(venue)
    mine = engine.feeds[venue].syncs[symbol]
    theirs = det.syncs.get((venue, symbol))
    if theirs is None or not (mine.synced and theirs.synced) or theirs.last_id != publisher.seq(venue, symbol):
        return None
    a, b = mine.book, theirs.book
    return a.text_levels() == b.text_levels()


wait_for = functools.partial(until, interval=0.01)


@contextlib.asynccontextmanager
async def running(det: BusDetector) -> AsyncIterator[BusDetector]:
    await det.start()
    try:
        yield det
    finally:
        await det.close()


# -- tests ----------------------------------------------------------------------------------


async def test_two_publishers_one_remote_detector_find_the_model_episodes(nats_server, tmp_path):
    market = MarketConfig(episode_first_s=0.8, episode_every_s=1.6, episode_duration_s=0.6)
    sims = await start_simulators(venues=("binance", "okx"), seed=11, tick_ms=50, market=market)
    pubs = Publishers()
    det = BusDetector(nats_server.url, config=_detector_config(), reconnect_wait_s=0.1)
    seen = collect_opportunities(det)
    compared: dict[tuple[str, str], int] = dict.fromkeys(BOOKS, 0)
    try:
        async with running(det):
            pubs.add(_config(sims, ("binance",), tmp_path), nats_server.url, snapshot_every_s=1.0)
            pubs.add(_config(sims, ("okx",), tmp_path), nats_server.url, snapshot_every_s=1.0)
            end = time.monotonic() + 4.5
            while time.monotonic() < end:
                for venue, symbol in BOOKS:  # the remote books are the publishers' books, level for level
                    same = books_equal(pubs, det, venue, symbol)
                    assert same is not False, (venue, symbol)
                    compared[(venue, symbol)] += same is True
                await asyncio.sleep(0.005)
            remote = {key: sync.state for key, sync in det.syncs.items()}
            stats = [p.stats() for p in pubs.publishers]
    finally:
        await pubs.close()
        await sims.close()

    assert remote == dict.fromkeys(BOOKS, SyncState.SYNCED), remote
    assert all(n >= 10 for n in compared.values()), compared
    assert all(s["dropped"] == 0 and s["publish_errors"] == 0 and s["published"] > 50 for s in stats), stats
    assert det.bad_messages == 0 and all(s.gaps == 0 for s in det.syncs.values())
    # each publisher alone sees one venue: no local opportunities; the remote detector sees both
    assert all(e.opened == 0 for e in pubs.engines)
    assert_episodes_found(sims.model.episodes, seen)
    # the remote detector paper trades what it finds, on the books it rebuilt
    assert det.paper is not None and det.opened >= 1
    assert len(det.paper.fills) + len(det.paper.pending) == det.opened
    assert all(f.latency_ns >= det.paper.latency_ns for f in det.paper.fills)


async def test_a_lost_bus_message_unsyncs_the_book_until_a_snapshot_repairs_it(nats_server, tmp_path):
    market = MarketConfig(episodes=False)
    sims = await start_simulators(venues=("binance", "okx"), seed=3, tick_ms=50, market=market)
    pubs = Publishers()
    asking = BusDetector(nats_server.url, config=_detector_config())
    waiting = BusDetector(nats_server.url, config=_detector_config(), request_snapshots=False)
    events: dict[str, list[tuple[int, FeedState]]] = {"asking": [], "waiting": []}
    for name, det in (("asking", asking), ("waiting", waiting)):
        det.listeners.append(
            lambda e, log=events[name]: log.append((time.monotonic_ns(), e))
            if isinstance(e, FeedState) and (e.venue, e.symbol) == ("okx", "ETH-USDT")
            else None
        )
    key = ("okx", "ETH-USDT")
    try:
        async with running(asking), running(waiting):
            publisher = pubs.add(_config(sims, ("binance", "okx"), tmp_path), nats_server.url, snapshot_every_s=2.0)
            await wait_for(lambda: all(d.syncs.get(k) and d.syncs[k].synced for d in (asking, waiting) for k in BOOKS),
                           5, "remote books synced")
            await asyncio.sleep(0.1)
            snapshots_before = publisher.snapshots
            publisher.drop_next(*key)  # the next okx ETH-USDT delta never reaches the bus
            dropped_at = time.monotonic_ns()
            await wait_for(lambda: asking.syncs[key].gaps == 1 and waiting.syncs[key].gaps == 1, 2, "the gap seen")
            # the asking detector repairs at once from the publisher's live book...
            await wait_for(lambda: asking.syncs[key].synced, 1, "snapshot by request")
            assert asking.snapshot_requests >= 1
            await wait_for(lambda: books_equal(pubs, asking, *key) is True, 2, "repaired book equal")
            # ...the other waits, unsynced, for the next periodic snapshot
            assert not waiting.syncs[key].synced and waiting.snapshot_requests == 0
            await wait_for(lambda: waiting.syncs[key].synced, 2.5, "periodic snapshot")
            assert publisher.snapshots > snapshots_before
            await wait_for(lambda: books_equal(pubs, waiting, *key) is True, 2, "repaired book equal")
            others = {k: (asking.syncs[k].gaps, waiting.syncs[k].gaps) for k in BOOKS if k != key}
    finally:
        await pubs.close()
        await sims.close()

    assert publisher.skipped == 1
    assert others == {k: (0, 0) for k in others}, "a loss on one book leaves the others alone"
    for name, log in events.items():
        after = [(t, s.state, s.reason) for t, s in log if t >= dropped_at]
        assert [(st, r) for _, st, r in after] == [(SyncState.RESYNCING, "gap"), (SyncState.SYNCED, "snapshot")], (
            name, after,
        )  # fmt: skip
    unsynced_ms = {name: (log[-1][0] - log[-2][0]) / 1e6 for name, log in events.items()}
    assert unsynced_ms["asking"] < 500 < unsynced_ms["waiting"], unsynced_ms


async def test_nats_server_killed_and_restarted_both_sides_recover(nats_server, tmp_path):
    market = MarketConfig(episode_first_s=0.5, episode_every_s=1.0, episode_duration_s=0.5)
    sims = await start_simulators(venues=("binance", "okx"), seed=5, tick_ms=50, market=market)
    pubs = Publishers()
    det = BusDetector(nats_server.url, config=_detector_config(), reconnect_wait_s=0.1, request_timeout_s=0.5)
    seen = collect_opportunities(det)
    try:
        async with running(det):
            pub_a = pubs.add(_config(sims, ("binance",), tmp_path), nats_server.url, snapshot_every_s=5.0)
            pub_b = pubs.add(_config(sims, ("okx",), tmp_path), nats_server.url, snapshot_every_s=5.0)
            synced = lambda: len(det.syncs) == 4 and all(s.synced for s in det.syncs.values())  # noqa: E731
            await wait_for(synced, 5, "remote books synced")
            nats_server.kill()
            await wait_for(lambda: det.disconnects >= 1 and pub_a.disconnects >= 1 and pub_b.disconnects >= 1,
                           2, "everyone disconnected")
            assert {s.reason for s in det.syncs.values()} == {"bus disconnected"}
            assert not any(s.synced for s in det.syncs.values())
            await asyncio.sleep(0.3)  # the venues go on; the publishers keep their books
            await asyncio.to_thread(nats_server.start)
            restarted = time.time_ns()
            await wait_for(lambda: det.connects >= 2 and pub_a.connects >= 2 and pub_b.connects >= 2,
                           3, "everyone reconnected")
            await wait_for(synced, 3, "remote books synced again")
            await wait_for(lambda: all(books_equal(pubs, det, *k) is True for k in BOOKS), 3, "books equal again")
            await wait_for(lambda: any(o.event is OpportunityEvent.OPENED and o.recv_ns > restarted for o in seen),
                           3, "an opportunity after the restart")
            assert all(e.opened == 0 for e in pubs.engines)
    finally:
        await pubs.close()
        await sims.close()


async def test_cli_publish_sim_and_detect_json(nats_server, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "arbwire.cli"]
    detect = await asyncio.create_subprocess_exec(
        *cmd, "detect", "--nats", nats_server.url, "--json", "--duration", "4.5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    publish = await asyncio.create_subprocess_exec(
        *cmd, "publish", "--sim", "--nats", nats_server.url, "--duration", "4",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    (d_out, d_err), (_, p_err) = await asyncio.wait_for(
        asyncio.gather(detect.communicate(), publish.communicate()), 9
    )
    assert detect.returncode == 0 and publish.returncode == 0, (d_err[-2000:], p_err[-2000:])
    events = [msgspec.json.decode(line, type=Opportunity) for line in d_out.splitlines()]
    assert any(o.event is OpportunityEvent.OPENED for o in events), d_err[-2000:]
    summary = msgspec.json.decode(d_err.splitlines()[-1])
    assert summary["opportunities"]["opened"] >= 1 and summary["bad_messages"] == 0
    paper = summary["paper"]
    assert paper["trades"] + paper["missed"] + paper["pending"] == summary["opportunities"]["opened"]
    assert set(summary["books"]) == {f"{v} {s}" for v, s in BOOKS}, summary["books"]
    assert all(book["gaps"] == 0 for book in summary["books"].values()), summary["books"]
    published = msgspec.json.decode(p_err.splitlines()[-1])
    assert published["bus"]["published"] > 0 and published["bus"]["dropped"] == 0
