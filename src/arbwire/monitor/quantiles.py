"""Windowed quantiles of the engine's latency histograms (the all-time ones live in latency.py).

``HdrHistogram.get_value_at_percentile`` walks every bucket in Python (~20 ms per
call on a 27k-bucket histogram), so the monitor never calls it. It copies the
counts array once (a memcpy), builds the running total with ``accumulate`` and
finds each quantile with ``bisect``: C loops only. The same copy gives windowed
quantiles: the difference of two copies is the histogram of the samples recorded
in between, so "p99 over the last 10 s" costs nothing on the hot path.
"""

from __future__ import annotations

import operator
from array import array

from arbwire.latency import HistStats, Recorder, counts_of, stats_of, used


def recorder_stats(recorder: Recorder, quantiles: tuple[float, ...] = (0.5, 0.95, 0.99)) -> HistStats:
    """All-time figures of one latency recorder (what ``VenueLatency.as_dict`` reports)."""
    recorder.fold()
    hist = recorder.hist
    return stats_of(hist, counts_of(hist, used(hist)), quantiles, recorder.per_us)


class Window:
    """Tumbling window over one recorder: every ``window_s`` the samples recorded since
    the previous roll become ``last`` (count, mean, quantiles)."""

    __slots__ = ("recorder", "window_ns", "quantiles", "prev", "prev_ns", "last", "last_ns")

    def __init__(self, recorder: Recorder, window_s: float, quantiles: tuple[float, ...] = (0.5, 0.99)) -> None:
        self.recorder = recorder
        self.window_ns = int(window_s * 1e9)
        self.quantiles = quantiles
        self.prev: array | None = None
        self.prev_ns = 0
        self.last: HistStats | None = None
        self.last_ns = 0

    def roll(self, now_ns: int) -> HistStats | None:
        """Close the window if it is due; returns the latest complete window (or None)."""
        if self.prev is not None and now_ns - self.prev_ns < self.window_ns:
            return self.last
        rec = self.recorder
        rec.fold()
        cur = counts_of(rec.hist, used(rec.hist))
        prev = self.prev
        if prev is not None:
            if len(prev) > len(cur):  # the histogram was reset meanwhile: the window is what is there now
                prev = array(prev.typecode)
            prev = prev + array(prev.typecode, bytes(prev.itemsize * (len(cur) - len(prev))))
            diff = list(map(operator.sub, cur, prev))
            delta = cur if diff and min(diff) < 0 else array(cur.typecode, diff)
            self.last = stats_of(rec.hist, delta, self.quantiles, rec.per_us)
            self.last_ns = now_ns
        self.prev, self.prev_ns = cur, now_ns
        return self.last


class LatencyWindows:
    """Windows per (venue, kind, window_s), created on first use, following the engine's
    recorders (a rebuilt venue gets a fresh window)."""

    KINDS = ("event_to_recv", "rtt", "processing")

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str, float], Window] = {}

    def get(self, venue: str, kind: str, recorder: Recorder, window_s: float, now_ns: int) -> HistStats | None:
        key = (venue, kind, window_s)
        window = self._windows.get(key)
        if window is None or window.recorder is not recorder:
            window = self._windows[key] = Window(recorder, window_s)
        return window.roll(now_ns)

    def latest(self, venue: str, kind: str, window_s: float) -> HistStats | None:
        window = self._windows.get((venue, kind, window_s))
        return window.last if window is not None else None
