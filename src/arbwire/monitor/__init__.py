"""Monitoring: Prometheus metrics, alert rules and the automatic actions they take.

- ``metrics.py``: ``EngineCollector`` reads the engine's public state at scrape time;
  ``MetricsServer`` serves ``/metrics`` (and ``/alerts``) on 127.0.0.1.
- ``alerts.py``: declarative rules (latency p99, throughput, reconnect rate, book
  staleness, link down, RSS) with for-durations, severities and actions.
- ``actions.py``: force reconnect, resync one book, switch endpoint.
- ``service.py``: ``Monitor`` ties them to one engine; ``panel.py``: the demo's panel.
"""

from arbwire.monitor.alerts import ActionEvent, AlertEvent, MonitorEvent, build_rules
from arbwire.monitor.service import Monitor

__all__ = ["ActionEvent", "AlertEvent", "Monitor", "MonitorEvent", "build_rules"]
