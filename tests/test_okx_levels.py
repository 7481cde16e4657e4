"""OKX level arrays: the C scanner (``arbwire._levels.okx_levels``) against msgspec, its reference.

For any input the C path either answers exactly what msgspec into ``_Lvl`` answers, or
declines (None) and the session's decoder takes the msgspec path, errors included. Every
level array of the real capture is answered in C, and repeated texts come back as the
same str object.
"""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from arbwire.book import C_EXTENSION
from arbwire.record.importers import Kind, read_cryptofeed
from arbwire.venues import okx
from arbwire.venues.okx import OkxSession

pytestmark = pytest.mark.skipif(C_EXTENSION is None, reason="arbwire._levels not built")

NUMBER_TEXT = st.from_regex(r"\A[0-9]{1,8}(\.[0-9]{1,8})?\Z")
STRINGS = st.one_of(
    NUMBER_TEXT,
    NUMBER_TEXT,
    NUMBER_TEXT,
    st.sampled_from(["0", "", "1e-5", " 1", "-2"]),
    st.text(max_size=6),  # escapes, quotes, non-ASCII, control characters
)
VALUES = st.one_of(STRINGS, st.integers(), st.none(), st.floats(allow_nan=False), st.lists(STRINGS, max_size=2))
# mostly OKX-shaped levels (strings only), some of them broken by other values or lengths
LEVELS = st.lists(
    st.one_of(st.lists(STRINGS, min_size=2, max_size=4), st.lists(VALUES, min_size=0, max_size=5)), max_size=6
)


def _reference(data: bytes) -> object:
    try:
        return okx._levels_py(msgspec.Raw(data))
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return type(exc)


def _c(data: bytes, texts: object) -> object:
    return C_EXTENSION.okx_levels(data, texts)  # type: ignore[union-attr]


@settings(max_examples=400, deadline=None)
@given(LEVELS, st.sampled_from(["", " ", "\n"]), st.booleans())
def test_c_answers_what_msgspec_answers_or_declines(levels, space, ascii_only):
    data = json.dumps(levels, ensure_ascii=ascii_only, separators=("," + space, ":")).encode()
    got = _c(data, C_EXTENSION.Texts(16))  # type: ignore[union-attr]
    expected = _reference(data)
    if got is not None:
        assert got == expected
    # the session's decoder: C or its fallback, always the reference's answer
    decode = okx.level_decoder()
    try:
        assert decode(msgspec.Raw(data)) == expected
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        assert type(exc) is expected


@pytest.mark.parametrize(
    "data",
    [b"", b"[", b"[[", b'[["1","2"]', b'[["1","2"],]', b'[["1","2"]] x', b'[["1"]]', b'[[]]', b'[["1",2]]',
     b'[["1","2\\u0030"]]', b'[["1","\xc3\xa9"]]', b"null", b'[["1","2"] ["3","4"]]'],
)
def test_edge_inputs_are_declined_never_guessed(data):
    assert _c(data, C_EXTENSION.Texts(16)) is None  # type: ignore[union-attr]


def test_the_buffer_of_a_raw_is_read_in_place_and_texts_are_shared():
    texts = C_EXTENSION.Texts(64)  # type: ignore[union-attr]
    raw = msgspec.json.decode(b'{"a":[["61234.5","0.25","0","3"],[ "61234.4" , "0" , "0" , "1" ]]}',
                              type=dict[str, msgspec.Raw])["a"]
    first = _c(raw, texts)
    assert first == [("61234.5", "0.25"), ("61234.4", "0")]
    again = _c(b'[["61234.5","0.25","0","2"]]', texts)
    assert again[0][0] is first[0][0] and again[0][1] is first[0][1]
    assert texts.stats()["hits"] == 2
    with pytest.raises(TypeError):
        _c(b"[]", {})
    with pytest.raises(ValueError, match="power of two"):
        C_EXTENSION.Texts(100)  # type: ignore[union-attr]


def test_every_real_level_array_is_answered_in_c(real_data):
    envelope = msgspec.json.Decoder(dict[str, msgspec.Raw])
    data_items = msgspec.json.Decoder(list[dict[str, msgspec.Raw]])
    texts = C_EXTENSION.Texts(4096)  # type: ignore[union-attr]
    arrays = 0
    for rec in read_cryptofeed(real_data / "cryptofeed/OKX.ws.1.0"):
        if rec.kind is not Kind.RECV or b'"data"' not in rec.payload:
            continue
        for item in data_items.decode(envelope.decode(rec.payload)["data"]):
            for side in ("bids", "asks"):
                if side in item:
                    got = _c(item[side], texts)
                    assert got is not None and got == okx._levels_py(item[side])
                    arrays += 1
    assert arrays > 500
    assert texts.stats()["hits"] > texts.stats()["misses"]  # prices and sizes repeat


def test_sessions_with_and_without_the_c_scanner_give_the_same_events(real_data, monkeypatch):
    frames = [r for r in read_cryptofeed(real_data / "cryptofeed/OKX.ws.1.0") if r.kind is Kind.RECV]

    def events() -> list[object]:
        session = OkxSession(["BTC-USDT", "ETH-USDT", "BTC-USDT-PERP"])
        return [e for r in frames for e in session.on_frame(r.payload, r.recv_ns)]

    with_c = events()
    monkeypatch.setattr(okx, "_c_okx_levels", None)
    assert with_c == events() and len(with_c) > 200
