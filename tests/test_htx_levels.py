"""HTX level arrays: the fast ``_levels`` against ``_levels_careful``, its reference.

Same level text, and the same exception with the same message, for any level array:
arbitrary number texts (signs, exponents, leading zeros, long ints, many decimals,
huge exponents), values that are not numbers, and any layout of the JSON around them.
"""

from __future__ import annotations

import gzip
from decimal import Decimal

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arbwire.model import BadFrame, BookUpdate
from arbwire.venues import htx
from arbwire.venues.htx import HtxSession

DIGITS = st.text("0123456789", min_size=1, max_size=25)


@st.composite
def literals(draw: st.DrawFn) -> str:
    """JSON number texts, valid or not (``01.5``, ``1.``, ``1e`` are not JSON)."""
    sign = draw(st.sampled_from(["", "", "", "-"]))
    whole = draw(st.one_of(st.sampled_from(["0", "1", "9"]), DIGITS))
    frac = draw(st.one_of(st.just(""), st.just("."), DIGITS.map(lambda d: "." + d)))
    exp = draw(
        st.one_of(
            st.just(""),
            st.tuples(
                st.sampled_from("eE"),
                st.sampled_from(["", "+", "-"]),
                st.one_of(
                    st.text("0123456789", max_size=3),
                    st.sampled_from(["40", "41", "18", "19", "20", "999999999", "99999999999999999999"]),
                ),
            ).map("".join),
        )
    )
    return sign + whole + frac + exp


def _java(value: Decimal, exponent: bool) -> str:
    """A non-negative number as HTX's Java prints doubles: always a dot, maybe an exponent."""
    if exponent:
        digits = format(value, "E")
        mantissa, exp = digits.split("E")
        return f"{mantissa if '.' in mantissa else mantissa + '.0'}E{int(exp)}"
    text = format(value, "f")
    return text if "." in text else text + ".0"


HTX_LIKE = st.builds(
    _java,
    st.decimals(min_value=0, max_value=10**12, places=18, allow_nan=False),
    st.booleans(),
)
ODD = st.sampled_from(
    [
        '"1.5"', '"abc"', "null", "true", "false", "[]", "[1.5]", "{}", "NaN", "Infinity",
        "-Infinity", "-0", "-0.0", "-0.0E5", "0", "7", "18446744073709551616", "1e400",
        "0.0000000000000000000", "1.0E-19", "1.5E-30", "123456789012345678901.5", " 1.5 ",
        "1.5.5", "+1.5", ".5", "0x1", "1_0.5",
    ]
)  # fmt: skip
VALUES = st.one_of(HTX_LIKE, HTX_LIKE, literals(), ODD)


@st.composite
def arrays(draw: st.DrawFn) -> bytes:
    """A ``[[price, size], ...]`` text: mostly HTX-like, sometimes odd values or shapes."""
    values = VALUES if draw(st.booleans()) else HTX_LIKE
    levels = draw(st.lists(st.tuples(values, values), max_size=12))
    items = [f"[{p},{s}]" for p, s in levels]
    shape = draw(st.sampled_from(["compact", "spaced", "triple", "single", "nested"]))
    if shape == "spaced":
        items = [f" [ {p} , {s} ] " for p, s in levels]
    elif shape == "triple" and levels:
        items[-1] = f"[{levels[-1][0]},{levels[-1][1]},1.5]"
    elif shape == "single" and levels:
        items[0] = f"[{levels[0][0]}]"
    elif shape == "nested" and levels:
        items[0] = f"[[{levels[0][0]}],{levels[0][1]}]"
    return ("[" + ",".join(items) + "]").encode()


def _outcome(levels, raw: bytes):
    try:
        return levels(msgspec.Raw(raw))
    except Exception as exc:  # compared by type and message
        return type(exc), str(exc)


@settings(max_examples=800, deadline=None)
@given(arrays())
def test_fast_levels_equal_the_careful_reference(raw):
    reference = _outcome(htx._levels_careful, raw)
    htx._TEXTS.clear()
    assert _outcome(htx._levels, raw) == reference  # literal table empty
    assert _outcome(htx._levels, raw) == reference  # warm: every literal seen once


@settings(max_examples=800, deadline=None)
@given(st.one_of(literals(), HTX_LIKE, ODD), st.one_of(literals(), HTX_LIKE, ODD), st.booleans())
def test_any_single_number_text_as_price_or_size(price, size, beside_plain):
    """One odd text among HTX-like levels, as a price and as a size."""
    other = "[61234.5,0.25]," if beside_plain else "[9.121E-7,4.0E7],"
    for raw in (f"[{other}[{price},{size}]]", f"[[{price},{size}],{other[:-1]}]", f"[[{size},{price}]]"):
        data = raw.encode()
        reference = _outcome(htx._levels_careful, data)
        htx._TEXTS.clear()
        assert _outcome(htx._levels, data) == reference, raw
        assert _outcome(htx._levels, data) == reference, raw


def _depth_frame(bids: bytes, version: int) -> bytes:
    return gzip.compress(
        b'{"ch":"market.btcusdt.depth.step0","ts":1,"tick":{"bids":' + bids
        + b',"asks":[[61234.6,1.5]],"version":' + str(version).encode() + b',"ts":2}}'
    )  # fmt: skip


def _frame_outcome(out: list) -> object:
    (item,) = out
    if isinstance(item, BadFrame):
        return "bad", item.reason
    assert isinstance(item, BookUpdate)
    return item.bids, item.asks


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays())
def test_session_output_and_bad_frame_reason_are_the_reference(raw):
    """A whole frame through the session: the same BookUpdate, or a BadFrame with the same reason."""
    if raw == b"[]":
        raw = b"[[1.5,1.5]]"
    reference_session = HtxSession(["BTC-USDT"], book_channel="depth")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(htx, "_levels", htx._levels_careful)
        reference = _frame_outcome(reference_session.on_frame(_depth_frame(raw, 1), 1))
    session = HtxSession(["BTC-USDT"], book_channel="depth")
    assert _frame_outcome(session.on_frame(_depth_frame(raw, 1), 1)) == reference
    if reference[0] == "bad":
        assert reference[1]  # a reason to read


@pytest.mark.parametrize(
    ("text", "fast"),
    [("61234.5", True), ("0.25", True), ("9.121E-7", True), ("4.0E7", True), ("1.0E-10", True),
     ("188358.0", True), ("14.909733438479636", True), ("1.8E-4", True), ("0.0", True),
     ("0.123456789012345678", True), ("12345678901234567890.5", True),  # long: through the table
     ("1.2345678901234567E-5", False),  # 21 decimals: a price is refused, a size rounded
     ("9144", True), ("0", True), ("5E+2", True), ("9e-07", True),  # undotted: one pass over the levels
     ("-1.5", False), ("1.5E41", False)],  # refused
)  # fmt: skip
def test_which_numbers_take_the_fast_path(text, fast, monkeypatch):
    careful = htx._levels_careful
    fallbacks: list[object] = []
    monkeypatch.setattr(htx, "_levels_careful", lambda raw: fallbacks.append(raw) or careful(raw))
    for other in ("[61234.5,0.25]", "[9.121E-7,0.25]"):
        raw = f"[{other},[0.5,{text}]]".encode()
        expected = _outcome(careful, raw)
        htx._TEXTS.clear()
        assert _outcome(htx._levels, raw) == expected
    assert (fallbacks == []) is fast


needs_c = pytest.mark.skipif(htx._c_htx_levels is None, reason="arbwire._levels not built")


@needs_c
@settings(max_examples=800, deadline=None)
@given(arrays())
def test_the_c_path_answers_only_what_the_python_path_answers(raw):
    """``_levels.htx_levels`` gives the Python path's levels, or None (then Python decides)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(htx, "_c_htx_levels", None)
        python = _outcome(htx._levels, raw)  # warms the literal table, as live frames do
        python_again = _outcome(htx._levels, raw)
    c = htx._c_htx_levels(raw, htx._TEXTS)
    if c is not None:
        assert c == python == python_again


@needs_c
def test_the_c_path_takes_the_real_books_once_their_literals_are_known():
    import zlib
    from pathlib import Path

    from arbwire.record.importers import Kind, read_cryptofeed

    capture = Path(__file__).resolve().parents[2] / "shared/data/real/cryptofeed/HUOBI.ws.44.0"
    arrays_seen = answered = 0
    for rec in read_cryptofeed(capture):
        if rec.kind is not Kind.RECV:
            continue
        text = zlib.decompress(rec.payload, 31)
        if b"depth.step0" not in text:
            continue
        tick = msgspec.json.decode(text, type=dict[str, msgspec.Raw]).get("tick")
        if tick is None:
            continue  # the subscription's acknowledgement
        for side in msgspec.json.decode(tick, type=dict[str, msgspec.Raw]).values():
            data = bytes(side)
            if not data.startswith(b"[["):
                continue
            with pytest.MonkeyPatch.context() as mp:
                mp.setattr(htx, "_c_htx_levels", None)
                python = htx._levels(msgspec.Raw(data))
            c = htx._c_htx_levels(data, htx._TEXTS)
            arrays_seen += 1
            if c is not None:
                answered += 1
                assert c == python
    assert arrays_seen > 500 and answered == arrays_seen  # every real array, in C
