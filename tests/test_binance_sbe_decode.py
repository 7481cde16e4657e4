"""Binance SBE decoding (schema 1): the C decoder ``arbwire._sbe`` against the Python
reference ``decode_py``, and both against message bytes laid out by hand from
../shared/docs/exchange-protocols.md §1.13."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbwire.venues import binance_sbe
from arbwire.venues.binance_sbe import (
    BEST_BID_ASK,
    DEPTH20,
    DEPTH_DIFF,
    TRADES,
    decimal_text,
    decode_py,
)

try:
    from arbwire import _sbe
except ImportError:  # pragma: no cover - the extension is optional
    _sbe = None

needs_c = pytest.mark.skipif(_sbe is None, reason="arbwire._sbe not built")
DECODERS = [pytest.param(decode_py, id="python"), pytest.param(getattr(_sbe, "decode", None), id="c", marks=needs_c)]


def _header(block: int, template: int, schema: int = 1, version: int = 0) -> bytes:
    return struct.pack("<HHHH", block, template, schema, version)


def _symbol(name: str) -> bytes:
    return bytes([len(name)]) + name.encode()


def _best(event=1_723_161_600_123_456, uid=48_100_200_300, bid=260012000000, bq=500000, ask=260013000000, aq=1, sym="ETHUSDT"):  # type: ignore[no-untyped-def]
    root = struct.pack("<qqbbqqqq", event, uid, -8, -8, bid, bq, ask, aq)
    assert len(root) == 50
    return _header(50, BEST_BID_ASK) + root + _symbol(sym)


def _diff(bids, asks, first=10, last=12, event=5, pe=-8, qe=-8, sym="ETHUSDT", entry=16, extra_root=b""):  # type: ignore[no-untyped-def]
    root = struct.pack("<qqqbb", event, first, last, pe, qe) + extra_root
    out = _header(len(root), DEPTH_DIFF) + root
    for side in (bids, asks):
        out += struct.pack("<HH", entry, len(side))
        for px, qty in side:
            out += struct.pack("<qq", px, qty) + b"\0" * (entry - 16)
    return out + _symbol(sym)


def _trades(trades, event=7, transact=6, sym="BTCUSDT"):  # type: ignore[no-untyped-def]
    root = struct.pack("<qqbb", event, transact, -8, -8)
    out = _header(18, TRADES) + root + struct.pack("<HI", 25, len(trades))
    for tid, px, qty, maker in trades:
        out += struct.pack("<qqqB", tid, px, qty, maker)
    return out + _symbol(sym)


# -- layouts ---------------------------------------------------------------------------------
@pytest.mark.parametrize("decode", DECODERS)
def test_best_bid_ask(decode):
    assert decode(_best()) == (
        BEST_BID_ASK, 1_723_161_600_123_456, 48_100_200_300,
        "2600.12000000", "0.00500000", "2600.13000000", "0.00000001", "ETHUSDT",
    )  # fmt: skip


@pytest.mark.parametrize("decode", DECODERS)
def test_depth_diff_and_snapshot(decode):
    msg = _diff([(260012000000, 0), (260011000000, 123456789)], [(260013000000, 100000000)])
    assert decode(msg) == (
        DEPTH_DIFF, 5, 10, 12,
        [("2600.12000000", "0.00000000"), ("2600.11000000", "1.23456789")],
        [("2600.13000000", "1.00000000")],
        "ETHUSDT",
    )  # fmt: skip
    root = struct.pack("<qqbb", 9, 77, -2, -4)
    snap = _header(18, DEPTH20) + root + struct.pack("<HH", 16, 1) + struct.pack("<qq", 12345, 7) + struct.pack("<HH", 16, 0)
    assert decode(snap + _symbol("X")) == (DEPTH20, 9, 77, [("123.45", "0.0007")], [], "X")


@pytest.mark.parametrize("decode", DECODERS)
def test_trades(decode):
    msg = _trades([(1, 6000001000000, 1, 1), (2, 6000002000000, 250000000, 0)])
    assert decode(msg) == (
        TRADES, 7, 6,
        [(1, "60000.01000000", "0.00000001", True), (2, "60000.02000000", "2.50000000", False)],
        "BTCUSDT",
    )  # fmt: skip


@pytest.mark.parametrize("decode", DECODERS)
def test_later_schema_versions_with_longer_blocks_still_decode(decode):
    """Blocks are skipped by their own lengths: fields appended by a later version are ignored."""
    msg = _diff([(1, 2)], [(3, 4)], entry=24, extra_root=b"\xff" * 6)
    assert decode(msg) == (DEPTH_DIFF, 5, 10, 12, [("0.00000001", "0.00000002")], [("0.00000003", "0.00000004")], "ETHUSDT")


@pytest.mark.parametrize("decode", DECODERS)
@pytest.mark.parametrize(
    ("msg", "error"),
    [
        (b"", "truncated header: needs 8 bytes at offset 0, message has 0"),
        (_header(50, BEST_BID_ASK, schema=3) + b"\0" * 51, "schema id 3, expected 1"),
        (_header(18, 12345) + b"\0" * 19, "unknown template id 12345"),
        (_header(40, BEST_BID_ASK) + b"\0" * 41, "template 10001 root block of 40 bytes, expected at least 50"),
        (_best()[:30], "truncated root block: needs 50 bytes at offset 8, message has 30"),
        (_best()[:-3], "truncated symbol: needs 7 bytes at offset 59, message has 63"),
        (_best() + b"\0", "1 bytes after the symbol"),
        (_diff([(1, 2)] * 3, [])[:60], "truncated bids: needs 48 bytes at offset 38, message has 60"),
        (_diff([(1, 2)], [], entry=8), "bids entries of 8 bytes, expected at least 16"),
        (_diff([(-(1 << 63), 2)], []), "null decimal"),
        (_diff([(1, 2)], [], pe=40), "decimal exponent 40 out of range"),
        (_trades([(1, 2, 3, 0)])[:40], "truncated trades: needs 25 bytes at offset 32, message has 40"),
    ],
)
def test_malformed_messages_name_what_broke(decode, msg, error):
    with pytest.raises(ValueError) as info:
        decode(msg)
    assert str(info.value) == error


# -- C against the reference -------------------------------------------------------------------
@needs_c
@given(st.integers(-(1 << 63) + 1, (1 << 63) - 1), st.integers(-30, 18))
def test_decimal_text_matches_the_reference(mantissa, exponent):
    from decimal import Decimal

    text = decimal_text(mantissa, exponent)
    assert _sbe.decimal_text(mantissa, exponent) == text
    assert Decimal(text) == Decimal(mantissa).scaleb(exponent)


def _outcome(decode, msg):  # type: ignore[no-untyped-def]
    try:
        return decode(msg)
    except ValueError as exc:
        return ("error", str(exc))
    except UnicodeDecodeError as exc:  # a symbol that is not UTF-8
        return ("unicode", exc.reason)


@needs_c
@settings(max_examples=400)
@given(st.data())
def test_c_and_python_agree_on_arbitrary_and_damaged_messages(data):
    levels = st.lists(st.tuples(st.integers(-(1 << 63), (1 << 63) - 1), st.integers(0, 10**15)), max_size=5)
    base = data.draw(
        st.one_of(
            st.builds(_best, bid=st.integers(0, 10**15), sym=st.text(max_size=8)),
            st.builds(_diff, levels, levels, pe=st.integers(-40, 20), qe=st.integers(-9, 0)),
            st.builds(_trades, st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 10**15), st.integers(0, 10**9), st.integers(0, 255)), max_size=4)),
            st.binary(max_size=80),
        )
    )
    cut = data.draw(st.integers(0, len(base)))
    flip = data.draw(st.integers(0, max(0, len(base) - 1)))
    for msg in (base, base[:cut], base[:flip] + bytes([base[flip] ^ 0x5A]) + base[flip + 1 :] if base else b""):
        assert _outcome(_sbe.decode, msg) == _outcome(decode_py, msg)


@needs_c
def test_the_c_decoder_is_used_when_built_and_the_switch_turns_it_off():
    import subprocess
    import sys

    assert binance_sbe.IMPLEMENTATION == "c" and binance_sbe.decode is _sbe.decode
    code = "from arbwire.venues import binance_sbe as b; print(b.IMPLEMENTATION, b.decode is b.decode_py)"
    import os

    env = {**os.environ, "ARBWIRE_PURE_PYTHON": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "python (ARBWIRE_PURE_PYTHON set) True"
