"""Latency recorders: the inline fold must put every sample where hdrh's record_value would."""

from __future__ import annotations

import random

from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from arbwire.latency import Recorder, VenueLatency


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=-1000, max_value=10**11), max_size=300), st.sampled_from([1, 1000]))
def test_fold_counts_exactly_like_record_value(values, unit_ns):
    rec = Recorder(unit_ns=unit_ns)
    ref = HdrHistogram(1, rec.max_value, 3)
    for v in values:
        rec.add(v)
        if v >= 0:
            ref.record_value(min(v, rec.max_value))
    rec.fold()
    assert list(rec.hist.counts) == list(ref.counts)
    assert rec.hist.get_total_count() == ref.get_total_count()
    assert rec.negative == sum(v < 0 for v in values)
    if ref.get_total_count():
        assert rec.hist.get_max_value() == ref.get_max_value()
        assert rec.hist.get_min_value() == ref.get_min_value()


def test_summary_quantiles_equal_hdrh():
    rng = random.Random(3)
    lat = VenueLatency("x")
    ref = HdrHistogram(1, lat.event_to_recv.max_value, 3)
    for _ in range(20_000):
        v = int(rng.expovariate(1 / 400))
        lat.event_to_recv.add(v)
        ref.record_value(v)
    s = lat.event_to_recv.summary()
    assert (s.p50, s.p95, s.p99) == tuple(float(ref.get_value_at_percentile(p)) for p in (50, 95, 99))
    assert s.count == 20_000 and abs(s.avg - ref.get_mean_value()) / ref.get_mean_value() < 0.01
