"""Quantiles of the engine's HDR histograms, cheap enough to run on the event loop.

``HdrHistogram.get_value_at_percentile`` walks every bucket in Python (~20 ms per
call on a 27k-bucket histogram), so the monitor never calls it. It copies the
counts array once (a memcpy), builds the running total with ``accumulate`` and
finds each quantile with ``bisect``: C loops only. The same copy gives windowed
quantiles: the difference of two copies is the histogram of the samples recorded
in between, so "p99 over the last 10 s" costs nothing on the hot path.
"""

from __future__ import annotations

import ctypes
import operator
from array import array
from bisect import bisect_left
from dataclasses import dataclass
from itertools import accumulate

from hdrh.histogram import HdrHistogram

from arbwire.latency import Recorder

_TABLES: dict[tuple[int, int, int, int], tuple[list[int], list[float]]] = {}
_TYPECODE = {ctypes.sizeof(ctypes.c_uint32): "I", 8: "Q"}


@dataclass(frozen=True, slots=True)
class HistStats:
    """Count, mean and quantiles of a histogram (or of a window of it), in µs."""

    count: int
    mean_us: float
    quantiles_us: dict[float, float]


def _tables(hist: HdrHistogram, length: int) -> tuple[list[int], list[float]]:
    """Per bucket index: the value hdrh reports for a percentile (the bucket's highest
    equivalent value) and the bucket's median (for the mean). Built once per histogram
    geometry, only as far as ``length`` buckets (values above the largest seen are never asked)."""
    key = (hist.lowest_trackable_value, hist.highest_trackable_value, hist.significant_figures, hist.counts_len)
    table = _TABLES.get(key)
    if table is None:
        table = _TABLES[key] = ([], [])
    highs, mids = table
    for index in range(len(highs), min(length, hist.counts_len)):
        value = hist.get_value_from_index(index)
        low = hist.get_lowest_equivalent_value(value)
        high = hist.get_highest_equivalent_value(value)
        highs.append(high)
        mids.append((low + high + 1) / 2)
    return table


def used(hist: HdrHistogram) -> int:
    """Buckets up to the one holding the largest value recorded (the rest are empty)."""
    if not hist.get_total_count():
        return 0
    return min(hist.counts_len, hist.get_counts_array_index(hist.get_max_value()) + 1)


def counts_of(hist: HdrHistogram, length: int | None = None) -> array:
    """A copy of the histogram's first ``length`` bucket counts (all by default)."""
    size = ctypes.sizeof(hist.counts._type_)  # type: ignore[attr-defined]
    n = hist.counts_len if length is None else length
    out = array(_TYPECODE[size])
    out.frombytes(ctypes.string_at(hist.counts, n * size))  # type: ignore[arg-type]
    return out


def stats_of(hist: HdrHistogram, counts: array | list[int], quantiles: tuple[float, ...], per_us: float) -> HistStats:
    """Quantiles (0..1) of ``counts`` laid out like ``hist``; values divided by ``per_us``."""
    cum = list(accumulate(counts))
    total = cum[-1] if cum else 0
    if total <= 0:
        return HistStats(0, 0.0, dict.fromkeys(quantiles, 0.0))
    highs, mids = _tables(hist, len(cum))
    out = {}
    for q in quantiles:
        target = max(1, int(q * total + 0.5))
        index = min(bisect_left(cum, target), len(cum) - 1)
        out[q] = highs[index] / per_us
    mean = sum(map(operator.mul, counts, mids)) / total / per_us
    return HistStats(total, mean, out)


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
            delta = list(map(operator.sub, cur, prev))
            if delta and min(delta) < 0:
                delta = list(cur)
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
