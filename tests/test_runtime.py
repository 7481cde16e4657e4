"""The engine's process settings: frozen start-up objects, busy polling, both given back on stop."""

from __future__ import annotations

import asyncio
import gc

import pytest

from arbwire.config import ConfigError, RuntimeConfig, load_config
from arbwire.engine import Engine
from arbwire.runtime import BusyPoll, GcFreeze
from arbwire.sim.runner import start_simulators
from helpers.engine import all_synced, running, sim_config, until


@pytest.fixture(autouse=True)
def _unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_freeze_moves_live_objects_out_of_reach_and_stop_gives_them_back():
    policy = GcFreeze()
    policy.start()
    at_start = gc.get_freeze_count()
    assert at_start == policy.frozen > 1000  # the interpreter's own objects at least
    keep = [[i] for i in range(500)]  # long-lived objects made after start, as connections are
    policy.settle()
    assert policy.settled and gc.get_freeze_count() >= at_start + 500 - 50
    assert len(keep) == 500
    policy.settle()  # once only
    frozen = policy.frozen
    policy.stop()
    assert gc.get_freeze_count() == 0 and policy.frozen == 0 and frozen > 0
    # a cycle made after the freeze is still collected
    policy.start()
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
    policy.stop()


def test_freeze_off_touches_nothing():
    policy = GcFreeze(enabled=False)
    policy.start()
    policy.settle()
    assert gc.get_freeze_count() == 0 and not policy.settled
    policy.stop()


async def test_engine_freezes_once_books_sync_and_unfreezes_on_stop(tmp_path):
    sims = await start_simulators(venues=("binance", "okx"), seed=3, tick_ms=50)
    try:
        engine = Engine(sim_config(sims, tmp_path))
        async with running(engine):
            await until(lambda: all_synced(engine), 10, "books synced")
            await until(lambda: engine.gc.settled, 2, "gc settled")
            assert engine.gc.frozen > 10_000 and gc.get_freeze_count() > 10_000
        assert gc.get_freeze_count() == 0
    finally:
        await sims.close()


async def test_busy_poll_keeps_the_loop_spinning_while_frames_flow(tmp_path):
    sims = await start_simulators(venues=("binance",), seed=4, tick_ms=50)
    try:
        config = sim_config(sims, tmp_path, runtime=RuntimeConfig(busy_poll=True))
        engine = Engine(config)
        assert engine.busy_poll is not None
        async with running(engine):
            await until(lambda: all_synced(engine), 10, "books synced")
            spins0, frames0 = engine.busy_poll.spins, engine.links["binance"].stats.frames
            await asyncio.sleep(0.3)
            # thousands of loop turns in 0.3 s: it never waited in epoll for a frame
            assert engine.busy_poll.spins - spins0 > 3000
            assert engine.links["binance"].stats.frames > frames0  # and frames still came in
        spins = engine.busy_poll.spins
        await asyncio.sleep(0.05)
        assert engine.busy_poll.spins == spins  # stopped with the engine
    finally:
        await sims.close()


def test_busy_poll_stop_before_start_is_harmless():
    BusyPoll().stop()


def test_runtime_config_errors_name_the_key(tmp_path):
    path = tmp_path / "arbwire.toml"
    path.write_text('[runtime]\nbusy_poll = "yes"\n')
    with pytest.raises(ConfigError, match=r"arbwire.toml.*runtime\.busy_poll"):
        load_config(path)
    path.write_text("[runtime]\nbusy_poll = true\nfreeze_gc = false\n")
    assert load_config(path).runtime == RuntimeConfig(busy_poll=True, freeze_gc=False)
