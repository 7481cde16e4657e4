"""How far a venue's clock is from ours, from round trips to its REST server-time endpoint.

Venue-stamped latency (event -> receive) is a difference of two clocks. If the venue's
runs 5 ms ahead of ours, every such sample reads 5 ms short, and a fast link shows as
negative latency (samples a histogram cannot hold). So each venue's offset is measured
the way NTP does it: note our time before the request (t0) and when the answer is in
(t1), read the venue's time T from it; if the paths both ways take the same time, T was
taken at (t0 + t1) / 2, so the offset is T - (t0 + t1) / 2 with an error of at most
(t1 - t0) / 2 plus the venue's timestamp resolution. Of the recent round trips the one
with the shortest round trip wins (the least queueing, so the least asymmetry): NTP's
clock filter. Latency recorders then add the offset to every venue-stamped sample.

Sans-I/O: fed (t0, venue time, t1); the engine does the requests.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ClockSample:
    """One round trip: the venue clock's offset from ours (positive: it runs ahead) and
    how far off that can be, in ns."""

    offset_ns: int
    uncertainty_ns: int
    rtt_ns: int
    at_ns: int


class VenueClock:
    """The offset estimate of one venue's clock: the best of its last ``window`` samples."""

    __slots__ = ("window", "samples", "count", "failures")

    def __init__(self, window: int = 8) -> None:
        if window < 1:
            raise ValueError(f"clock window must be at least 1, got {window}")
        self.window = window
        self.samples: deque[ClockSample] = deque(maxlen=window)
        self.count = 0
        self.failures = 0

    def add(self, sent_ns: int, venue_ns: int, recv_ns: int, resolution_ns: int = 1_000_000) -> ClockSample:
        """A round trip sent at ``sent_ns`` and answered at ``recv_ns`` (our clock) whose
        answer carried ``venue_ns``, a timestamp truncated to ``resolution_ns`` (1 ms for
        a millisecond timestamp): the venue's true time lies in [venue_ns, venue_ns + resolution)."""
        if recv_ns < sent_ns:
            raise ValueError(f"answer before request: sent {sent_ns}, received {recv_ns}")
        rtt = recv_ns - sent_ns
        middle = venue_ns + resolution_ns // 2
        sample = ClockSample(
            offset_ns=middle - (sent_ns + rtt // 2),
            uncertainty_ns=rtt // 2 + resolution_ns // 2,
            rtt_ns=rtt,
            at_ns=recv_ns,
        )
        self.samples.append(sample)
        self.count += 1
        return sample

    def best(self) -> ClockSample | None:
        """The recent sample with the shortest round trip, or None before the first."""
        return min(self.samples, key=lambda s: s.rtt_ns) if self.samples else None

    @property
    def offset_ns(self) -> int:
        """The estimate: 0 before any sample (no correction is better than a guess)."""
        best = self.best()
        return best.offset_ns if best is not None else 0

    def as_dict(self) -> dict[str, float | int | None]:
        best = self.best()
        return {
            "offset_ms": round(best.offset_ns / 1e6, 3) if best else None,
            "uncertainty_ms": round(best.uncertainty_ns / 1e6, 3) if best else None,
            "rtt_ms": round(best.rtt_ns / 1e6, 3) if best else None,
            "samples": self.count,
            "failures": self.failures,
        }
