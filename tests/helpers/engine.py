"""Scaffolding for running the real ``Engine`` against the venue simulators on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from arbwire.config import Config, LinkConfig, VenueConfig
from arbwire.engine import Engine
from arbwire.model import Opportunity
from arbwire.sim.runner import Simulators

SYMBOLS = ["BTC-USDT", "ETH-USDT"]


def fast_link(**options: Any) -> LinkConfig:
    """Reconnect quickly: a lost link is back within a fraction of a second."""
    return LinkConfig(**{"backoff_base_s": 0.05, "backoff_cap_s": 0.2, **options})


def sim_config(
    sims: Simulators,
    cache: Path | None = None,
    *,
    venues: Iterable[str] | None = None,
    symbols: Sequence[str] = SYMBOLS,
    ws_urls: Mapping[str, str] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    backups: Mapping[str, list[str]] | None = None,
    **config: Any,
) -> Config:
    """A ``Config`` whose venues (all the simulators', or ``venues``) point at the simulators.

    ``cache`` is the instrument cache directory; ``ws_urls``, ``options`` and ``backups`` are per
    venue; the rest (``link=``, ``check_instruments=``...) goes to ``Config`` as it is.
    """
    names = list(sims.endpoints) if venues is None else list(venues)
    if cache is not None:
        config["instrument_cache_dir"] = str(cache)
    return Config(
        venues={
            name: VenueConfig(
                symbols=list(symbols),
                ws_url=(ws_urls or {}).get(name, sims.endpoints[name].ws_url),
                rest_url=sims.endpoints[name].rest_url,
                backup_ws_urls=(backups or {}).get(name),
                options=dict((options or {}).get(name, {})),
            )
            for name in names
        },
        **config,
    )


async def cancel(task: asyncio.Task[Any]) -> None:
    """Cancel ``task`` and wait for it to end."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


@contextlib.asynccontextmanager
async def running(engine: Engine) -> AsyncIterator[list[Any]]:
    """Run ``engine`` in a task for the block; yields every event it emits, as they come."""
    events: list[Any] = []
    engine.listeners.append(events.append)
    task = asyncio.create_task(engine.run())
    try:
        yield events
    finally:
        await cancel(task)


def collect_opportunities(source: Any) -> list[Opportunity]:
    """A list that fills with the ``Opportunity`` events of ``source`` (an engine or a detector)."""
    seen: list[Opportunity] = []
    source.listeners.append(lambda e: seen.append(e) if isinstance(e, Opportunity) else None)
    return seen


def sync_states(engine: Engine) -> dict[tuple[str, str], Any]:
    """``{(venue, symbol): state}`` of every book."""
    return {(v, s): sync.state for v, f in engine.feeds.items() for s, sync in f.syncs.items()}


def all_synced(engine: Engine, venue: str | None = None) -> bool:
    """Every book (of ``venue``, or of every venue) is synced."""
    feeds = [engine.feeds[venue]] if venue else list(engine.feeds.values())
    return all(s.synced for f in feeds for s in f.syncs.values())


async def until(
    pred: Callable[[], object], timeout: float = 5.0, what: str = "condition", *, interval: float = 0.02
) -> None:
    """Poll ``pred`` until it holds; AssertionError after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(interval)
