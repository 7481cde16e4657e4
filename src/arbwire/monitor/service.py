"""``Monitor``: the alert loop and the /metrics server beside one engine.

    async with Monitor(engine):          # rules and port from engine.config.monitor
        await engine.run()

Everything runs on the engine's loop but off its hot path: one task evaluates the
rules every ``interval_s`` (a few dict walks and, every latency window, one copy of
each latency histogram's buckets); the metrics are read only when scraped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, ProcessCollector

from arbwire.config import MonitorConfig
from arbwire.monitor.actions import Actions
from arbwire.monitor.alerts import AlertManager, MonitorEvent, build_rules
from arbwire.monitor.metrics import EngineCollector, MetricsServer
from arbwire.monitor.quantiles import LatencyWindows

if TYPE_CHECKING:
    from arbwire.engine import Engine

log = logging.getLogger("arbwire.monitor")

_UNSET: Any = object()


class Monitor:
    def __init__(self, engine: Engine, config: MonitorConfig | None = None, *, metrics_port: int | None = _UNSET) -> None:
        self.engine = engine
        cfg = config if config is not None else getattr(engine.config, "monitor", None) or MonitorConfig()
        self.config = cfg
        self.metrics_port = cfg.metrics_port if metrics_port is _UNSET or metrics_port is None else metrics_port
        self.events: deque[MonitorEvent] = deque(maxlen=500)
        self.listeners: list[Callable[[MonitorEvent], None]] = []
        self.windows = LatencyWindows()
        self.actions = Actions(engine)
        self.alerts = AlertManager(
            engine, build_rules(cfg.rules) if cfg.enabled else [],
            actions=self.actions if cfg.actions else None, emit=self._emit, windows=self.windows,
        )
        self.latency_window_s = next((r.window_s for r in self.alerts.rules if r.metric == "latency_p99"), 10.0)
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(EngineCollector(engine, self))
        ProcessCollector(registry=self.registry)
        self.server: MetricsServer | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def metrics_url(self) -> str | None:
        return f"{self.server.url}/metrics" if self.server is not None else None

    # -- life cycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self.metrics_port is not None and self.server is None:
            self.server = MetricsServer(self.registry, self.config.metrics_host, self.metrics_port, self.summary)
            await self.server.start()
        if self.config.enabled and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.server is not None:
            await self.server.close()
            self.server = None

    async def __aenter__(self) -> Monitor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.interval_s)
            try:
                self.tick()
            except Exception:  # the monitor must never take the engine down
                log.exception("monitor evaluation failed")

    def tick(self, now_ns: int | None = None) -> None:
        """One evaluation: roll the latency windows, evaluate every rule, act."""
        now = now_ns if now_ns is not None else time.time_ns()
        for venue, latency in list(self.engine.latency.items()):
            for kind in LatencyWindows.KINDS:
                self.windows.get(venue, kind, getattr(latency, kind), self.latency_window_s, now)
        self.alerts.evaluate(now)

    def _emit(self, event: MonitorEvent) -> None:
        self.events.append(event)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("monitor listener failed")

    # -- state ----------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """Firing alerts, counts and recent events, as plain data (``/alerts``, demo --json)."""
        return {
            "firing": [a.as_dict() for a in self.alerts.firing()],
            "fired": dict(self.alerts.fired),
            "actions": [{"action": a, "venue": v, "count": n} for (a, v), n in sorted(self.actions.counts.items())],
            "events": [
                {"type": type(e).__name__, **{f: getattr(e, f) for f in e.__struct_fields__}}
                for e in list(self.events)[-50:]
            ],
        }
