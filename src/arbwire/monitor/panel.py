"""A compact alerts panel for the live board (rich)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text

from arbwire.monitor.alerts import ActionEvent, AlertEvent

if TYPE_CHECKING:
    from arbwire.monitor.service import Monitor

_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def alerts_panel(monitor: Monitor, lines: int = 4) -> Text:
    firing = monitor.alerts.firing()
    done = sum(monitor.actions.counts.values())
    text = Text()
    text.append("monitor  ", style="bold")
    if firing:
        text.append(f"{len(firing)} firing", style="bold red")
    else:
        text.append("no alert firing", style="green")
    text.append(f"   actions {done}")
    if monitor.metrics_url:
        text.append(f"   metrics {monitor.metrics_url}", style="dim")
    for alert in firing[:lines]:
        text.append(f"\n  ● {alert.rule.severity:8} {alert.rule.name:14} ", style=_STYLE.get(alert.rule.severity, ""))
        text.append(alert.message)
    now = time.time_ns()
    recent = [e for e in list(monitor.events)[-lines:] if now - e.ts_ns < 60e9]
    for event in recent:
        ago = (now - event.ts_ns) / 1e9
        if isinstance(event, AlertEvent):
            style = _STYLE.get(event.severity, "") if event.state == "firing" else "green"
            what = f"{event.state} {event.alert} {event.venue} {event.symbol}".rstrip()
        elif isinstance(event, ActionEvent):
            style = "magenta"
            what = f"action {event.action} {event.venue} {event.symbol}: {event.detail}".rstrip()
        else:
            continue
        text.append(f"\n  {ago:4.0f}s ago  ", style="dim")
        text.append(what, style=style)
    return text
