"""Binance SBE market-data messages, encoded (sans I/O) for the simulator.

Built from ../shared/docs/exchange-protocols.md §1.13 alone: schema ``spot_stream``
id 1, version 0, little-endian. Every message is an 8-byte header ``{blockLength u16,
templateId u16, schemaId u16, version u16}``, the root block, the repeating groups, and
the ``symbol`` as varString8 ``{len u8, bytes}``. Decimals are an int64 mantissa times
10^exponent; the simulator prints 8-decimal text, so it always uses exponent -8 for
price and qty and the mantissa is that text without its point. Times are microseconds.

The low-level ``encode_*`` functions take mantissas and ids; the ``*_from_json``
helpers turn the simulator's JSON-shaped events (the same dicts its JSON streams send)
into messages, so both endpoints publish the very same market.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

SCHEMA_ID = 1
SCHEMA_VERSION = 0
EXPONENT = -8  # Binance's 8 decimals, for both price and qty

TRADES_STREAM_EVENT = 10000
BEST_BID_ASK_STREAM_EVENT = 10001
DEPTH_SNAPSHOT_STREAM_EVENT = 10002
DEPTH_DIFF_STREAM_EVENT = 10003

HEADER = struct.Struct("<HHHH")  # blockLength, templateId, schemaId, version
TRADES_ROOT = struct.Struct("<qqbb")  # eventTime, transactTime, priceExponent, qtyExponent
BEST_BID_ASK_ROOT = struct.Struct("<qqbbqqqq")  # eventTime, bookUpdateId, exps, bid, bidQty, ask, askQty
DEPTH_SNAPSHOT_ROOT = struct.Struct("<qqbb")  # eventTime, bookUpdateId, priceExponent, qtyExponent
DEPTH_DIFF_ROOT = struct.Struct("<qqqbb")  # eventTime, firstBookUpdateId, lastBookUpdateId, exps
TRADES_GROUP = struct.Struct("<HI")  # blockLength, numInGroup (32-bit in the trades group)
TRADE_ENTRY = struct.Struct("<qqqB")  # id, price, qty, isBuyerMaker
DEPTH_GROUP = struct.Struct("<HH")  # blockLength, numInGroup (16-bit in the depth groups)
LEVEL_ENTRY = struct.Struct("<qq")  # price, qty

_INT64 = (-(2**63), 2**63 - 1)

Level = tuple[int, int]
"""``(price mantissa, qty mantissa)`` at exponent -8."""

Trade = tuple[int, int, int, bool]
"""``(trade id, price mantissa, qty mantissa, isBuyerMaker)`` at exponent -8."""


def mantissa8(value: Decimal | str) -> int:
    """The int64 mantissa of ``value`` at exponent -8 (``"60000.01"`` -> 6000001000000).

    Raises ValueError when ``value`` is not a finite number, has a nonzero digit past the
    8th decimal, or does not fit an int64: a rounded price would silently corrupt the
    client's book. Integer arithmetic on the digits, so no decimal context can round."""
    try:
        number = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal: {value!r}") from exc
    if not number.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    coefficient = int("".join(map(str, digits)) or "0")
    shift = exponent - EXPONENT
    if coefficient == 0:
        return 0
    if shift >= 0:
        if shift > 19:  # even a coefficient of 1 would pass 2**63
            raise ValueError(f"{value!r} does not fit an int64 mantissa")
        mantissa = coefficient * 10**shift
    else:
        # More dropped digits than the coefficient has means a nonzero remainder.
        mantissa, rest = divmod(coefficient, 10**-shift) if -shift <= len(digits) else (0, 1)
        if rest:
            raise ValueError(f"{value!r} is not exact at exponent {EXPONENT}")
    if sign:
        mantissa = -mantissa
    if not _INT64[0] <= mantissa <= _INT64[1]:
        raise ValueError(f"{value!r} does not fit an int64 mantissa")
    return mantissa


def _header(block_length: int, template_id: int) -> bytes:
    return HEADER.pack(block_length, template_id, SCHEMA_ID, SCHEMA_VERSION)


def _symbol(symbol: str) -> bytes:
    """varString8: a u8 length, then the bytes (so at most 255 of them)."""
    data = symbol.encode("ascii")
    if len(data) > 255:
        raise ValueError(f"symbol too long for varString8: {symbol!r}")
    return bytes((len(data),)) + data


def _levels(levels: Sequence[Level]) -> bytes:
    """A depth group: the 16-bit group header, then ``{price, qty}`` entries."""
    if len(levels) > 0xFFFF:
        raise ValueError(f"{len(levels)} levels do not fit a 16-bit numInGroup")
    out = [DEPTH_GROUP.pack(LEVEL_ENTRY.size, len(levels))]
    out.extend(LEVEL_ENTRY.pack(price, qty) for price, qty in levels)
    return b"".join(out)


def encode_trades(
    event_time_us: int, transact_time_us: int, trades: Sequence[Trade], symbol: str
) -> bytes:
    """A TradesStreamEvent (10000); ``trades`` become the entries of its ``trades`` group.
    ``isBestMatch`` is constant in the schema and so not encoded."""
    out = [
        _header(TRADES_ROOT.size, TRADES_STREAM_EVENT),
        TRADES_ROOT.pack(event_time_us, transact_time_us, EXPONENT, EXPONENT),
        TRADES_GROUP.pack(TRADE_ENTRY.size, len(trades)),
    ]
    out.extend(TRADE_ENTRY.pack(tid, price, qty, int(maker)) for tid, price, qty, maker in trades)
    out.append(_symbol(symbol))
    return b"".join(out)


def encode_best_bid_ask(
    event_time_us: int, book_update_id: int, bid: Level, ask: Level, symbol: str
) -> bytes:
    """A BestBidAskStreamEvent (10001): the top of book, no groups."""
    root = BEST_BID_ASK_ROOT.pack(
        event_time_us, book_update_id, EXPONENT, EXPONENT, bid[0], bid[1], ask[0], ask[1]
    )
    return _header(BEST_BID_ASK_ROOT.size, BEST_BID_ASK_STREAM_EVENT) + root + _symbol(symbol)


def encode_depth_snapshot(
    event_time_us: int,
    book_update_id: int,
    bids: Sequence[Level],
    asks: Sequence[Level],
    symbol: str,
) -> bytes:
    """A DepthSnapshotStreamEvent (10002): the best levels, best first, as of
    ``book_update_id``."""
    root = DEPTH_SNAPSHOT_ROOT.pack(event_time_us, book_update_id, EXPONENT, EXPONENT)
    return b"".join((
        _header(DEPTH_SNAPSHOT_ROOT.size, DEPTH_SNAPSHOT_STREAM_EVENT),
        root, _levels(bids), _levels(asks), _symbol(symbol),
    ))


def encode_depth_diff(
    event_time_us: int,
    first_id: int,
    last_id: int,
    bids: Sequence[Level],
    asks: Sequence[Level],
    symbol: str,
) -> bytes:
    """A DepthDiffStreamEvent (10003): absolute sizes (0 deletes) for update ids
    ``first_id..last_id``, the SBE form of the JSON ``U``/``u``."""
    root = DEPTH_DIFF_ROOT.pack(event_time_us, first_id, last_id, EXPONENT, EXPONENT)
    return b"".join((
        _header(DEPTH_DIFF_ROOT.size, DEPTH_DIFF_STREAM_EVENT),
        root, _levels(bids), _levels(asks), _symbol(symbol),
    ))


# ----- from the simulator's JSON-shaped events -----


def _text_levels(levels: Iterable[Sequence[str]]) -> list[Level]:
    return [(mantissa8(price), mantissa8(qty)) for price, qty in levels]


def trades_from_json(events: Sequence[Mapping[str, Any]], time_us: int) -> list[bytes]:
    """``trade`` events -> TradesStreamEvents, one per run of consecutive trades with the
    same taker side: Binance puts the fills of one taker order in one event, and such a
    run is the closest the model has to one order sweeping several levels."""
    out: list[bytes] = []
    run: list[Trade] = []
    for i, e in enumerate(events):
        run.append((e["t"], mantissa8(e["p"]), mantissa8(e["q"]), bool(e["m"])))
        if i + 1 == len(events) or events[i + 1]["m"] != e["m"] or events[i + 1]["s"] != e["s"]:
            out.append(encode_trades(time_us, time_us, run, e["s"]))
            run = []
    return out


def best_bid_ask_from_json(ticker: Mapping[str, Any], time_us: int) -> bytes:
    """A ``bookTicker`` event -> BestBidAskStreamEvent with the same ``u`` as bookUpdateId."""
    return encode_best_bid_ask(
        time_us, ticker["u"],
        (mantissa8(ticker["b"]), mantissa8(ticker["B"])),
        (mantissa8(ticker["a"]), mantissa8(ticker["A"])),
        ticker["s"],
    )


def depth_diff_from_json(event: Mapping[str, Any], time_us: int) -> bytes:
    """A ``depthUpdate`` event -> DepthDiffStreamEvent spanning the same ``U..u``."""
    return encode_depth_diff(
        time_us, event["U"], event["u"], _text_levels(event["b"]), _text_levels(event["a"]),
        event["s"],
    )


def depth_snapshot_from_json(partial: Mapping[str, Any], symbol: str, time_us: int) -> bytes:
    """A partial-depth payload (``lastUpdateId``, ``bids``, ``asks``) ->
    DepthSnapshotStreamEvent; the JSON form has no symbol, so it is given."""
    return encode_depth_snapshot(
        time_us, partial["lastUpdateId"], _text_levels(partial["bids"]),
        _text_levels(partial["asks"]), symbol,
    )
