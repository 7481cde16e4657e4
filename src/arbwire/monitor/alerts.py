"""Declarative alert rules, evaluated about once a second off the hot path.

A rule names a *metric* (below), a threshold in that metric's unit, how long the
condition must hold (``for_s``), a severity and an automatic *action*. Every rule is
evaluated per venue (or per venue+symbol for books, once for the process). An alert
goes pending when the condition starts, fires when it has held ``for_s``, and
resolves as soon as it no longer holds; firing and resolving are logged
(``arbwire.monitor``) and emitted as ``AlertEvent``; actions as ``ActionEvent``.

=============== ============ ============================================================
metric          unit         condition
=============== ============ ============================================================
latency_p99     ms           p99 of ``latency`` (event_to_recv | rtt | processing) over the
                             last ``window_s`` (a tumbling window) above the threshold
throughput      frames/s     frames per second below the threshold while the link is up
reconnect_rate  per minute   reconnects in the last ``window_s`` (not counting the ones the
                             monitor caused) above the threshold: a reconnect storm
book_stale      s            no update applied to a book for longer than the threshold
                             while its link is up (counted from the connect, so a fresh
                             link gets the threshold as grace)
link_down       s            the venue link down for longer than the threshold
rss             MB           process resident memory above the threshold
clock_offset    ms           the venue's clock that far from ours (``arbwire.clock``), once
                             the estimate is tighter than half the threshold: the local
                             clock is not synchronised, or the venue's is off
=============== ============ ============================================================

Actions: ``resync`` (one book: fresh snapshot), ``reconnect`` (the venue link),
``switch_endpoint`` (next endpoint, then reconnect), ``auto`` (book_stale only: resync
the book, but reconnect when every book of the venue is stale or the same book was
resynced within ``cooldown_s``) and ``none``. An alert repeats its action at most once
per ``cooldown_s`` while it keeps firing, and the monitor forces at most one
reconnect/endpoint switch per venue per ``cooldown_s``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from arbwire.monitor.actions import Actions
from arbwire.monitor.process import rss_bytes
from arbwire.monitor.quantiles import LatencyWindows

if TYPE_CHECKING:
    from arbwire.config import AlertRuleConfig
    from arbwire.engine import Engine

log = logging.getLogger("arbwire.monitor")

SEVERITIES = ("info", "warning", "critical")
LATENCY_KINDS = LatencyWindows.KINDS
_LEVEL = {"info": logging.INFO, "warning": logging.WARNING, "critical": logging.ERROR}


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A metric rules can watch, with the defaults of a rule on it."""

    unit: str
    above: bool  # the alert is about the value being above (else below) the threshold
    scope: str  # "venue", "book" or "process"
    actions: tuple[str, ...]  # the actions that make sense on it
    threshold: float
    for_s: float
    severity: str
    action: str
    cooldown_s: float
    window_s: float = 0.0


_VENUE_ACTIONS = ("none", "reconnect", "switch_endpoint")
METRICS: Mapping[str, MetricSpec] = {
    "latency_p99": MetricSpec("ms", True, "venue", _VENUE_ACTIONS, 1000.0, 30.0, "warning", "none", 300.0, 10.0),
    "throughput": MetricSpec("frames/s", False, "venue", _VENUE_ACTIONS, 0.5, 10.0, "warning", "none", 60.0),
    "reconnect_rate": MetricSpec(
        "/min", True, "venue", _VENUE_ACTIONS, 5.0, 0.0, "critical", "switch_endpoint", 120.0, 60.0
    ),
    "book_stale": MetricSpec(
        "s", True, "book", ("none", "auto", "resync", "reconnect", "switch_endpoint"), 15.0, 0.0, "critical", "auto", 60.0
    ),
    "link_down": MetricSpec("s", True, "venue", ("none", "switch_endpoint"), 30.0, 0.0, "critical", "none", 120.0),
    "rss": MetricSpec("MB", True, "process", ("none",), 2048.0, 30.0, "warning", "none", 0.0),
    "clock_offset": MetricSpec("ms", True, "venue", ("none",), 250.0, 0.0, "warning", "none", 0.0),
}


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    metric: str
    threshold: float
    for_s: float
    severity: str
    action: str
    cooldown_s: float
    window_s: float
    latency: str
    venues: frozenset[str] | None

    @property
    def spec(self) -> MetricSpec:
        return METRICS[self.metric]

    def breached(self, value: float) -> bool:
        return value > self.threshold if self.spec.above else value < self.threshold


def build_rules(config: Mapping[str, AlertRuleConfig] | None = None) -> list[Rule]:
    """The built-in rule of every metric, overridden/extended by ``[monitor.rules.NAME]``.
    Raises ValueError naming ``monitor.rules.NAME.FIELD`` on a bad value."""
    entries: dict[str, Any] = dict.fromkeys(METRICS)
    entries.update(config or {})
    rules = []
    for name, cfg in entries.items():
        where = f"monitor.rules.{name}"
        if cfg is not None and not cfg.enabled:
            continue
        metric = (cfg.metric if cfg is not None else None) or name
        if metric not in METRICS:
            field = "metric" if cfg is not None and cfg.metric else "(name)"
            raise ValueError(f"{where}.{field}: unknown metric {metric!r} (known: {', '.join(METRICS)})")
        spec = METRICS[metric]

        def get(field: str, default: Any, cfg: Any = cfg) -> Any:
            value = getattr(cfg, field, None) if cfg is not None else None
            return default if value is None else value

        rule = Rule(
            name=name,
            metric=metric,
            threshold=float(get("threshold", spec.threshold)),
            for_s=float(get("for_s", spec.for_s)),
            severity=get("severity", spec.severity),
            action=get("action", spec.action),
            cooldown_s=float(get("cooldown_s", spec.cooldown_s)),
            window_s=float(get("window_s", spec.window_s)),
            latency=get("latency", "event_to_recv"),
            venues=frozenset(cfg.venues) if cfg is not None and cfg.venues is not None else None,
        )
        if rule.severity not in SEVERITIES:
            raise ValueError(f"{where}.severity: {rule.severity!r} is not one of {', '.join(SEVERITIES)}")
        if rule.action not in spec.actions:
            raise ValueError(f"{where}.action: {rule.action!r} does not apply to {metric} (use {', '.join(spec.actions)})")
        if rule.latency not in LATENCY_KINDS:
            raise ValueError(f"{where}.latency: {rule.latency!r} is not one of {', '.join(LATENCY_KINDS)}")
        for field in ("threshold", "for_s", "cooldown_s", "window_s"):
            if getattr(rule, field) < 0:
                raise ValueError(f"{where}.{field}: must be >= 0")
        if metric in ("latency_p99", "reconnect_rate") and rule.window_s <= 0:
            raise ValueError(f"{where}.window_s: must be > 0")
        rules.append(rule)
    return rules


class AlertEvent(msgspec.Struct, frozen=True, kw_only=True):
    state: str  # "firing" | "resolved"
    alert: str  # the rule's name
    metric: str
    severity: str
    venue: str  # "" for process-wide alerts
    symbol: str  # "" unless the alert is about one book
    value: float
    threshold: float
    unit: str
    message: str
    ts_ns: int


class ActionEvent(msgspec.Struct, frozen=True, kw_only=True):
    action: str  # "reconnect" | "resync" | "switch_endpoint"
    alert: str
    venue: str
    symbol: str
    done: bool
    detail: str
    ts_ns: int


MonitorEvent = AlertEvent | ActionEvent


class Sample(NamedTuple):
    venue: str
    symbol: str
    value: float
    eligible: bool  # may start (and act on) an alert; a firing alert holds regardless
    message: str


@dataclass(slots=True)
class Alert:
    rule: Rule
    venue: str
    symbol: str
    since_ns: int  # when the condition started to hold
    firing: bool = False
    fired_ns: int = 0
    value: float = 0.0
    message: str = ""
    last_action_ns: int = 0

    def as_dict(self) -> dict[str, Any]:
        r = self.rule
        return {
            "alert": r.name, "metric": r.metric, "severity": r.severity, "venue": self.venue,
            "symbol": self.symbol, "state": "firing" if self.firing else "pending",
            "value": round(self.value, 3), "threshold": r.threshold, "unit": r.spec.unit,
            "since_ns": self.since_ns, "message": self.message,
        }


def _where(venue: str, symbol: str) -> str:
    return " ".join(x for x in (venue, symbol) if x) or "process"


class AlertManager:
    """Evaluates the rules against the engine's public state; runs the actions."""

    def __init__(
        self,
        engine: Engine,
        rules: list[Rule],
        *,
        actions: Actions | None,
        emit: Callable[[MonitorEvent], None],
        windows: LatencyWindows | None = None,
    ) -> None:
        self.engine = engine
        self.rules = rules
        self.actions = actions
        self.emit = emit
        self.windows = windows or LatencyWindows()
        self.started_ns = time.time_ns()
        self.active: dict[tuple[str, str, str], Alert] = {}
        self.fired: dict[str, int] = {}
        self._reconnects: dict[str, deque[tuple[int, int]]] = {}
        self._keep_ns = int(max((r.window_s for r in rules if r.metric == "reconnect_rate"), default=0) * 1e9)
        self._down_since: dict[str, int] = {}
        self._resynced: dict[tuple[str, str], int] = {}

    def firing(self) -> list[Alert]:
        return [a for a in self.active.values() if a.firing]

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, now_ns: int | None = None) -> None:
        now = now_ns if now_ns is not None else time.time_ns()
        self._observe(now)
        seen: set[tuple[str, str, str]] = set()
        for rule in self.rules:
            for sample in self._measure(rule, now):
                if rule.venues is not None and sample.venue and sample.venue not in rule.venues:
                    continue
                key = (rule.name, sample.venue, sample.symbol)
                seen.add(key)
                self._step(rule, key, sample, now)
        for key in [k for k in self.active if k not in seen]:
            alert = self.active.pop(key)
            if alert.firing:
                self._resolve(alert, now, "no longer measured")

    def _step(self, rule: Rule, key: tuple[str, str, str], s: Sample, now: int) -> None:
        breach = rule.breached(s.value)
        alert = self.active.get(key)
        if alert is None:
            if not (breach and s.eligible):
                return
            alert = self.active[key] = Alert(rule, s.venue, s.symbol, since_ns=now)
        alert.value = s.value
        if not breach or (not alert.firing and not s.eligible):
            del self.active[key]
            if alert.firing:
                self._resolve(alert, now, s.message)
            return
        alert.message = s.message
        if not alert.firing:
            if now - alert.since_ns >= rule.for_s * 1e9:
                self._fire(alert, now)
                self._act(alert, now)
        elif s.eligible and now - alert.last_action_ns >= rule.cooldown_s * 1e9:
            self._act(alert, now)

    def _fire(self, alert: Alert, now: int) -> None:
        rule = alert.rule
        alert.firing = True
        alert.fired_ns = now
        self.fired[rule.name] = self.fired.get(rule.name, 0) + 1
        log.log(_LEVEL[rule.severity], "ALERT FIRING %s [%s] %s", rule.name, rule.severity, alert.message)
        self._emit_alert("firing", alert, alert.message, now)

    def _resolve(self, alert: Alert, now: int, message: str) -> None:
        rule = alert.rule
        lasted = (now - alert.fired_ns) / 1e9
        text = (
            f"{_where(alert.venue, alert.symbol)}: {rule.metric} {alert.value:.3g} {rule.spec.unit} "
            f"(threshold {rule.threshold:g}) after {lasted:.1f}s firing"
        )
        log.info("ALERT RESOLVED %s [%s] %s", rule.name, rule.severity, text)
        self._emit_alert("resolved", alert, text, now)

    def _emit_alert(self, state: str, alert: Alert, message: str, now: int) -> None:
        rule = alert.rule
        self.emit(AlertEvent(
            state=state, alert=rule.name, metric=rule.metric, severity=rule.severity, venue=alert.venue,
            symbol=alert.symbol, value=alert.value, threshold=rule.threshold, unit=rule.spec.unit,
            message=message, ts_ns=now,
        ))

    # -- actions --------------------------------------------------------------------------
    def _act(self, alert: Alert, now: int) -> None:
        rule = alert.rule
        actions = self.actions
        if actions is None or rule.action == "none":
            return
        alert.last_action_ns = now  # also when skipped below: never retried every tick
        action = self._auto(alert, now) if rule.action == "auto" else rule.action
        venue, symbol = alert.venue, alert.symbol
        reason = f"{rule.name}: {alert.message}"
        if action in ("reconnect", "switch_endpoint"):
            last = actions.last_forced_ns(venue)
            if last and now - last < rule.cooldown_s * 1e9:
                log.debug("%s of %s skipped: forced %.1fs ago", action, venue, (now - last) / 1e9)
                return
        if action == "reconnect":
            done, detail = actions.reconnect(venue, reason)
        elif action == "resync":
            done, detail = actions.resync(venue, symbol, reason)
            if done:
                self._resynced[(venue, symbol)] = now
        else:
            done, detail = actions.switch_endpoint(venue, reason)
        log.log(
            logging.WARNING if done else logging.ERROR,
            "ACTION %s %s %s (alert %s): %s",
            action, _where(venue, symbol if action == "resync" else ""), "done" if done else "not possible",
            rule.name, detail,
        )
        self.emit(ActionEvent(
            action=action, alert=rule.name, venue=venue, symbol=symbol, done=done, detail=detail, ts_ns=now
        ))

    def _auto(self, alert: Alert, now: int) -> str:
        """book_stale: resync the one book, unless the whole venue went quiet or a resync
        of this book did not keep it fresh: then the link itself is the suspect."""
        rule = alert.rule
        feed = self.engine.feeds.get(alert.venue)
        if feed is None or not alert.symbol:
            return "reconnect"
        stale = sum(1 for sync in feed.syncs.values() if self.book_age(sync.last_recv_ns, now) > rule.threshold)
        if stale >= len(feed.syncs):
            return "reconnect"
        last = self._resynced.get((alert.venue, alert.symbol), 0)
        if last and now - last < rule.cooldown_s * 1e9:
            return "reconnect"
        return "resync"

    # -- measurements ------------------------------------------------------------------------
    def _observe(self, now: int) -> None:
        """State kept between evaluations: reconnect counts over time, link-down times."""
        engine = self.engine
        for venue, link in engine.links.items():
            history = self._reconnects.setdefault(venue, deque())
            history.append((now, link.stats.reconnects))
            cutoff = now - self._keep_ns
            while len(history) > 2 and history[1][0] <= cutoff:
                history.popleft()
            if link.stats.connected:
                self._down_since.pop(venue, None)
            else:
                self._down_since.setdefault(venue, now)

    def book_age(self, last_recv_ns: int, now: int) -> float:
        """Seconds since a book's last applied update (since the monitor started, if none)."""
        return (now - max(last_recv_ns, self.started_ns)) / 1e9

    def _measure(self, rule: Rule, now: int) -> Iterator[Sample]:
        engine = self.engine
        metric = rule.metric
        if metric == "rss":
            mb = rss_bytes() / 2**20
            yield Sample("", "", mb, True, f"process RSS {mb:.0f} MB > {rule.threshold:g} MB")
            return
        for venue, link in list(engine.links.items()):
            stats = link.stats
            up_s = (now - stats.connected_since_ns) / 1e9 if stats.connected else 0.0
            if metric == "book_stale":
                feed = engine.feeds.get(venue)
                if feed is None:
                    continue
                eligible = stats.connected and up_s >= rule.threshold
                for symbol, sync in feed.syncs.items():
                    age = self.book_age(sync.last_recv_ns, now)
                    yield Sample(venue, symbol, age, eligible,
                                 f"{venue} {symbol} book: no update for {age:.1f}s (> {rule.threshold:g}s) "
                                 f"while the link is up; book {sync.state.name}")
            elif metric == "throughput":
                counters = engine.counters.get(venue)
                if counters is None:
                    continue
                rate = counters.rate
                yield Sample(venue, "", rate, stats.connected and up_s >= 2.0,  # rates settle in ~1 s
                             f"{venue}: {rate:.2f} frames/s (< {rule.threshold:g}): feed stalled?")
            elif metric == "reconnect_rate":
                history = self._reconnects.get(venue)
                if not history:
                    continue
                cutoff = now - int(rule.window_s * 1e9)
                base_ns, base = history[0]
                for t, count in history:
                    if t > cutoff:
                        break
                    base_ns, base = t, count
                own = self.actions.forced_since(venue, base_ns) if self.actions is not None else 0
                n = max(0, stats.reconnects - base - own)
                per_min = n * 60.0 / rule.window_s
                yield Sample(venue, "", per_min, True,
                             f"{venue}: {n} reconnects in {rule.window_s:g}s = {per_min:.1f}/min "
                             f"(> {rule.threshold:g}/min): reconnect storm on {stats.endpoint}")
            elif metric == "link_down":
                down = (now - self._down_since[venue]) / 1e9 if venue in self._down_since else 0.0
                yield Sample(venue, "", down, True,
                             f"{venue}: link down for {down:.0f}s; last error: {stats.last_error or '-'}")
            elif metric == "clock_offset":
                latency = engine.latency.get(venue)
                best = latency.clock.best() if latency is not None else None
                if best is None:
                    continue
                ms, within = abs(best.offset_ns) / 1e6, best.uncertainty_ns / 1e6
                yield Sample(venue, "", ms, within < rule.threshold / 2,
                             f"{venue}: venue clock {best.offset_ns / 1e6:+.1f} ms from ours (± {within:.1f} ms, "
                             f"> {rule.threshold:g} ms): is this machine's clock synchronised (NTP)? "
                             "venue-stamped latencies are corrected by the offset")
            elif metric == "latency_p99":
                latency = engine.latency.get(venue)
                if latency is None:
                    continue
                recorder = getattr(latency, rule.latency)
                window = self.windows.get(venue, rule.latency, recorder, rule.window_s, now)
                if window is None:
                    continue
                ms = window.quantiles_us.get(0.99, 0.0) / 1000
                yield Sample(venue, "", ms, window.count >= 10,
                             f"{venue}: {rule.latency} p99 {ms:.1f} ms over the last {rule.window_s:g}s "
                             f"({window.count} samples) > {rule.threshold:g} ms")
