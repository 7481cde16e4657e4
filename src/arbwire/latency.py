"""Per-venue latency figures in bounded memory: venue event -> receive, ping RTT, processing.

``HdrHistogram.record_value`` costs about 1.2 µs in Python here, more than a whole
book update, so the hot path only appends the raw value to a preallocated
``array`` (tens of ns) and the samples are folded into the histograms off the
hot path (``fold()``, from the once-a-second timer, or when the buffer fills).
Memory stays bounded: histograms are fixed size and the buffer has a cap.

Venue clocks are not ours: ``recv_ns - venue_ts_ns`` reads short by however far the
venue's clock runs ahead. ``arbwire.clock`` measures that offset against the venue's
server time and the recorder adds it to every venue-stamped sample when folding
(``Recorder.offset``). What is still negative after that is counted, not recorded, and
the smallest difference seen is kept.
"""

from __future__ import annotations

import ctypes
import operator
import os
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from hdrh.histogram import HdrHistogram

from arbwire.clock import VenueClock


def _c_fold():  # type: ignore[no-untyped-def]
    """``arbwire._fold.fold`` (the fold in C), or None: not built, or ARBWIRE_PURE_PYTHON set."""
    if os.environ.get("ARBWIRE_PURE_PYTHON", "") not in ("", "0"):
        return None
    try:
        from arbwire._fold import fold
    except ImportError:
        return None
    return fold


_FOLD_C = _c_fold()


def _c_stats():  # type: ignore[no-untyped-def]
    """``arbwire._fold.stats`` (quantiles and mean in one C pass), or None, as ``_c_fold``."""
    if _FOLD_C is None:
        return None
    from arbwire import _fold

    return getattr(_fold, "stats", None)


_STATS_C = _c_stats()


class _PySamples:
    """``arbwire._fold.Samples`` in Python (the fallback): a bounded int64 buffer whose
    ``add`` calls ``on_full`` when it fills."""

    __slots__ = ("_data", "capacity", "on_full")

    def __init__(self, capacity: int, on_full: Callable[[], None]) -> None:
        self._data = array("q")
        self.capacity = capacity
        self.on_full = on_full

    def add(self, value: int) -> None:
        data = self._data
        data.append(value)
        if len(data) >= self.capacity:
            self.on_full()

    def clear(self) -> None:
        del self._data[:]

    def tolist(self) -> list[int]:
        return self._data.tolist()

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[int]:
        return iter(self._data)


def _samples_type() -> Any:
    if _FOLD_C is None:
        return _PySamples
    from arbwire import _fold

    return getattr(_fold, "Samples", _PySamples)


_SAMPLES = _samples_type()

# Quantiles without hdrh's ``get_value_at_percentile``, which walks every bucket in
# Python (~20 ms a call here; a five-venue summary took ~0.6 s and stalled the loop):
# copy the counts once (memcpy), running totals with ``accumulate``, ``bisect`` per
# quantile, all C loops. Same figures as hdrh's, bucket for bucket.
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
    """Quantiles (0..1) of ``counts`` laid out like ``hist``; values divided by ``per_us``.

    An ``array`` goes through ``arbwire._fold.stats`` when it is built: the board, the
    monitor and /metrics ask for 15 of these at a time on the event loop, ~0.7 ms each
    here against a few µs in C. ``_stats_py`` is the reference.
    """
    if _STATS_C is not None and isinstance(counts, array):
        total, mean, values = _STATS_C(
            counts, hist.sub_bucket_half_count_magnitude, hist.sub_bucket_half_count, hist.unit_magnitude, quantiles
        )
        if total <= 0:
            return HistStats(0, 0.0, dict.fromkeys(quantiles, 0.0))
        return HistStats(total, mean / per_us, {q: v / per_us for q, v in zip(quantiles, values, strict=True)})
    return _stats_py(hist, counts, quantiles, per_us)


def _stats_py(hist: HdrHistogram, counts: array | list[int], quantiles: tuple[float, ...], per_us: float) -> HistStats:
    """``stats_of`` in Python: running totals with ``accumulate``, ``bisect`` per quantile."""
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



_MAX_US = 60_000_000  # one minute: anything slower is a stalled feed, not a latency
_BUFFER = 8192


@dataclass(frozen=True, slots=True)
class Summary:
    count: int
    avg: float
    p50: float
    p95: float
    p99: float
    max: float

    def as_dict(self) -> dict[str, float]:
        return {
            "count": self.count,
            "avg": round(self.avg, 2),
            "p50": self.p50,
            "p95": self.p95,
            "p99": self.p99,
            "max": self.max,
        }


class Recorder:
    """One histogram with a cheap append-only front buffer.

    Values are recorded in ``unit_ns`` units (1000: µs; 1: ns for sub-µs stages);
    summaries are always in µs. ``add`` is the buffer's own method (one C call with
    ``arbwire._fold`` built, ~40 ns against ~180 for a Python method: two per quote
    frame); the buffer calls ``fold`` when it fills, so it stays bounded.
    """

    __slots__ = ("hist", "pending", "add", "negative", "min_seen", "per_us", "max_value", "offset")

    def __init__(self, unit_ns: int = 1000) -> None:
        self.per_us = 1000 / unit_ns
        self.max_value = _MAX_US * int(self.per_us)
        self.hist = HdrHistogram(1, self.max_value, 3)
        self.pending = _SAMPLES(_BUFFER, self.fold)
        self.add: Callable[[int], None] = self.pending.add
        self.negative = 0
        self.min_seen: int | None = None
        # added to every sample when it is folded, in the recorder's unit: the venue clock's
        # offset from ours (arbwire.clock), so venue-stamped latencies are on one clock
        self.offset = 0

    def fold(self) -> None:
        """Move the buffered samples into the histogram.

        Runs on the event loop, so it must be short: every frame that arrives during a
        fold waits for it. ``record_value`` per sample costs ~1.2 µs; the bucket index
        is computed with hdrh's own formula instead, in C when ``arbwire._fold`` is
        built (a few ns a sample), else inline in Python (~0.5 µs a sample).
        """
        if not self.pending:
            return
        if _FOLD_C is None:
            self._fold_py()
            return
        pending, h = self.pending, self.hist
        recorded, negative, raw_min, low, high = _FOLD_C(
            pending, h.counts, h.sub_bucket_mask, h.unit_magnitude,
            h.sub_bucket_half_count_magnitude, h.sub_bucket_half_count, self.max_value, self.offset,
        )
        if self.min_seen is None or raw_min < self.min_seen:
            self.min_seen = raw_min
        self.negative += negative
        if recorded:
            h.total_count += recorded
            h.min_value = min(h.min_value, low)
            h.max_value = max(h.max_value, high)
        pending.clear()

    def _fold_py(self) -> None:
        """The same fold in Python: the reference for the C one, and its fallback."""
        pending = self.pending
        if not pending:
            return
        h = self.hist
        offset = self.offset
        values = [v + offset for v in pending] if offset else pending.tolist()
        low, high = min(values), max(values)
        if self.min_seen is None or low < self.min_seen:
            self.min_seen = low
        top = self.max_value
        if low < 0:
            values = [v for v in values if v >= 0]
            self.negative += len(pending) - len(values)
            low = min(values, default=0)
        if values:
            if high > top:
                values = [v if v < top else top for v in values]
                high = top
            mask, unit, half_mag = h.sub_bucket_mask, h.unit_magnitude, h.sub_bucket_half_count_magnitude
            shift = unit + half_mag + 1
            half = h.sub_bucket_half_count
            counts = h.counts
            for index, n in Counter(
                (((b := (v | mask).bit_length() - shift) + 1) << half_mag) + (v >> (b + unit)) - half
                for v in values
            ).items():
                counts[index] += n
            h.total_count += len(values)
            h.min_value = min(h.min_value, low if low < top else top)
            h.max_value = max(h.max_value, high)
        pending.clear()

    def summary(self) -> Summary:
        self.fold()
        h = self.hist
        if not h.get_total_count():
            return Summary(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        stats = stats_of(h, counts_of(h, used(h)), (0.5, 0.95, 0.99), self.per_us)
        q = stats.quantiles_us
        return Summary(stats.count, stats.mean_us, q[0.5], q[0.95], q[0.99], h.get_max_value() / self.per_us)

    def reset(self) -> None:
        self.fold()
        self.hist.reset()


class VenueLatency:
    """The three figures a trader asks of a venue link: add µs, except processing in ns."""

    __slots__ = ("venue", "event_to_recv", "rtt", "processing", "clock")

    def __init__(self, venue: str, clock_window: int = 8) -> None:
        self.venue = venue
        self.event_to_recv = Recorder()
        self.rtt = Recorder()
        self.processing = Recorder(unit_ns=1)
        self.clock = VenueClock(clock_window)  # the venue clock's offset, for event_to_recv

    def fold(self) -> None:
        self.event_to_recv.fold()
        self.rtt.fold()
        self.processing.fold()

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {
            "event_to_recv_us": self.event_to_recv.summary().as_dict(),
            "rtt_us": self.rtt.summary().as_dict(),
            "processing_us": self.processing.summary().as_dict(),
            "clock": self.clock.as_dict(),
        }
