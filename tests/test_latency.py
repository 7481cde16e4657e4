"""Latency recorders: the inline fold must put every sample where hdrh's record_value would."""

from __future__ import annotations

import random

import pytest
from hdrh.histogram import HdrHistogram
from hypothesis import given, settings
from hypothesis import strategies as st

from arbwire import book, latency
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


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(min_value=-(10**6), max_value=10**12), max_size=400), st.sampled_from([1, 1000]))
def test_c_fold_equals_the_python_fold(values, unit_ns):
    """The C fold (arbwire._fold) and the Python one leave identical histograms and counters."""
    if latency._FOLD_C is None:
        pytest.skip(f"arbwire._fold not built ({book.IMPLEMENTATION})")
    c, py = Recorder(unit_ns=unit_ns), Recorder(unit_ns=unit_ns)
    for _ in range(2):  # twice: the second fold adds onto the first
        for v in values:
            c.add(v)
            py.add(v)
        c.fold()
        py._fold_py()
        assert list(c.hist.counts) == list(py.hist.counts)
        assert (c.hist.total_count, c.hist.min_value, c.hist.max_value) == (
            py.hist.total_count, py.hist.min_value, py.hist.max_value)
        assert (c.negative, c.min_seen) == (py.negative, py.min_seen)
        assert len(c.pending) == len(py.pending) == 0


def test_c_fold_is_built_where_the_book_loop_is():
    """A build that compiled the book loop compiles the fold too (same compiler, same flags)."""
    if book.IMPLEMENTATION == "c":
        assert latency._FOLD_C is not None and latency._STATS_C is not None


QUANTILES = (0.0, 0.5, 0.95, 0.99, 0.999, 1.0)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**11), max_size=300), st.sampled_from([1, 1000]))
def test_c_stats_equal_the_python_stats(values, unit_ns):
    """Quantiles and mean of a histogram, and of a window of it, in C and in Python."""
    if latency._STATS_C is None:
        pytest.skip(f"arbwire._fold not built ({book.IMPLEMENTATION})")
    rec = Recorder(unit_ns=unit_ns)
    for v in values:
        rec.add(v)
    rec.fold()
    h = rec.hist
    for counts in (latency.counts_of(h, latency.used(h)), latency.counts_of(h)):
        c = latency.stats_of(h, counts, QUANTILES, rec.per_us)
        py = latency._stats_py(h, counts, QUANTILES, rec.per_us)
        assert (c.count, c.quantiles_us) == (py.count, py.quantiles_us)
        assert c.mean_us == pytest.approx(py.mean_us, rel=1e-12)
        assert py.count == len(values)


def test_summaries_match_hdrh_in_both_paths(monkeypatch):
    rng = random.Random(5)
    rec = Recorder(unit_ns=1)
    ref = HdrHistogram(1, rec.max_value, 3)
    for _ in range(30_000):
        v = int(rng.lognormvariate(10, 1.5))
        rec.add(v)
        ref.record_value(v)
    expected = tuple(ref.get_value_at_percentile(p) / 1000 for p in (50, 95, 99))
    for stats_c in (latency._STATS_C, None):
        monkeypatch.setattr(latency, "_STATS_C", stats_c)
        s = rec.summary()
        assert (s.p50, s.p95, s.p99) == expected
        assert s.avg == pytest.approx(ref.get_mean_value() / 1000, rel=1e-3)


SAMPLE_TYPES = [latency._PySamples]
if latency._SAMPLES is not latency._PySamples:
    SAMPLE_TYPES.append(latency._SAMPLES)


@pytest.mark.parametrize("samples_type", SAMPLE_TYPES, ids=lambda t: t.__module__)
def test_sample_buffer_is_bounded_by_its_fold(samples_type):
    """The add that fills the buffer calls on_full; a recorder's buffer never holds more
    than its capacity, however many samples arrive between timer folds."""
    folded: list[list[int]] = []
    buf = samples_type(5, lambda: (folded.append(buf.tolist()), buf.clear()))
    for v in range(12):
        buf.add(v)
    assert folded == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert buf.tolist() == [10, 11] and len(buf) == 2 and list(buf) == [10, 11]
    rec = Recorder()
    for v in range(3 * latency._BUFFER + 7):
        rec.add(v % 5000)
        assert len(rec.pending) < latency._BUFFER
    assert rec.hist.get_total_count() == 3 * latency._BUFFER and len(rec.pending) == 7


@pytest.mark.parametrize("samples_type", SAMPLE_TYPES, ids=lambda t: t.__module__)
def test_sample_buffer_refuses_what_an_int64_array_refuses(samples_type):
    buf = samples_type(10, lambda: None)
    with pytest.raises(OverflowError):
        buf.add(1 << 63)
    with pytest.raises(TypeError):
        buf.add("5")
    buf.add(-(1 << 63))
    assert buf.tolist() == [-(1 << 63)]


def test_c_sample_buffer_does_not_move_under_an_open_view():
    if latency._SAMPLES is latency._PySamples:
        pytest.skip(f"arbwire._fold not built ({book.IMPLEMENTATION})")
    buf = latency._SAMPLES(4, lambda: None)
    for v in range(3):
        buf.add(v)
    view = memoryview(buf)
    assert view.format == "q" and view.tolist() == [0, 1, 2]
    with pytest.raises(BufferError):
        buf.clear()
    view.release()
    buf.clear()
    assert len(buf) == 0
