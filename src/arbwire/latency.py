"""Per-venue latency figures in bounded memory: venue event -> receive, ping RTT, processing.

``HdrHistogram.record_value`` costs about 1.2 µs in Python here, more than a whole
book update, so the hot path only appends the raw value to a preallocated
``array`` (tens of ns) and the samples are folded into the histograms off the
hot path (``fold()``, from the once-a-second timer, or when the buffer fills).
Memory stays bounded: histograms are fixed size and the buffer has a cap.

Venue clocks are not ours: ``recv_ns - venue_ts_ns`` can be negative when the
local clock runs behind. Such samples are counted, not recorded, and the
smallest difference seen is kept as a clock-offset hint.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

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
    summaries are always in µs.
    """

    __slots__ = ("hist", "pending", "negative", "min_seen", "per_us", "max_value")

    def __init__(self, unit_ns: int = 1000) -> None:
        self.per_us = 1000 / unit_ns
        self.max_value = _MAX_US * int(self.per_us)
        self.hist = HdrHistogram(1, self.max_value, 3)
        self.pending = array("q")
        self.negative = 0
        self.min_seen: int | None = None

    def add(self, value_us: int) -> None:
        pending = self.pending
        pending.append(value_us)
        if len(pending) >= _BUFFER:
            self.fold()

    def fold(self) -> None:
        pending = self.pending
        if not pending:
            return
        record = self.hist.record_value
        top = self.max_value
        low = min(pending)
        if self.min_seen is None or low < self.min_seen:
            self.min_seen = low
        for value in pending:
            if value < 0:
                self.negative += 1
            else:
                record(value if value < top else top)
        del pending[:]

    def summary(self) -> Summary:
        self.fold()
        h = self.hist
        n = h.get_total_count()
        if not n:
            return Summary(0, 0.0, 0.0, 0.0, 0.0, 0.0)
        k = self.per_us
        return Summary(
            n,
            h.get_mean_value() / k,
            h.get_value_at_percentile(50) / k,
            h.get_value_at_percentile(95) / k,
            h.get_value_at_percentile(99) / k,
            h.get_max_value() / k,
        )

    def reset(self) -> None:
        self.fold()
        self.hist.reset()


class VenueLatency:
    """The three figures a trader asks of a venue link: add µs, except processing in ns."""

    __slots__ = ("venue", "event_to_recv", "rtt", "processing")

    def __init__(self, venue: str) -> None:
        self.venue = venue
        self.event_to_recv = Recorder()
        self.rtt = Recorder()
        self.processing = Recorder(unit_ns=1)

    def fold(self) -> None:
        self.event_to_recv.fold()
        self.rtt.fold()
        self.processing.fold()

    def as_dict(self) -> dict[str, dict[str, float]]:
        return {
            "event_to_recv_us": self.event_to_recv.summary().as_dict(),
            "rtt_us": self.rtt.summary().as_dict(),
            "processing_us": self.processing.summary().as_dict(),
        }
