"""Bybit and OKX instrument parsers on responses shaped per exchange-protocols.md (§2.9, §3.9),
error envelopes of every venue, and the exact-decimal helpers.

No real Bybit/OKX instrument list is in ../shared/data, so the bodies here follow
the documented fields (Bybit ``list[]`` with ``priceFilter.tickSize`` and
``lotSizeFilter.basePrecision``/``minOrderQty``; OKX ``data[]`` with ``instId``,
``baseCcy``, ``quoteCcy``, ``tickSz``, ``lotSz``, ``minSz``, ``state``) inside each
venue's v5 envelope.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from arbwire.instruments import (
    Instrument,
    InstrumentBook,
    InstrumentParseError,
    decimals,
    exact,
    parse_binance,
    parse_bybit,
    parse_bybit_page,
    parse_gateio,
    parse_htx,
    parse_okx,
    step,
)


def _j(obj: Any) -> bytes:
    return json.dumps(obj).encode()


def bybit_body(category: str, items: list[dict[str, Any]], cursor: str = "") -> bytes:
    return _j({
        "retCode": 0, "retMsg": "OK",
        "result": {"category": category, "list": items, "nextPageCursor": cursor},
        "retExtInfo": {}, "time": 1_700_000_000_000,
    })  # fmt: skip


def bybit_spot(symbol: str, base: str, quote: str, tick: str, base_precision: str, min_qty: str, status: str = "Trading") -> dict[str, Any]:  # fmt: skip
    return {
        "symbol": symbol, "baseCoin": base, "quoteCoin": quote, "innovation": "0", "status": status,
        "marginTrading": "both",
        "lotSizeFilter": {"basePrecision": base_precision, "quotePrecision": "0.00000001",
                          "minOrderQty": min_qty, "maxOrderQty": "71.73956243", "minOrderAmt": "1",
                          "maxOrderAmt": "2000000"},
        "priceFilter": {"tickSize": tick},
    }  # fmt: skip


def bybit_linear(symbol: str, base: str, quote: str, tick: str, qty_step: str, contract: str = "LinearPerpetual", status: str = "Trading") -> dict[str, Any]:  # fmt: skip
    return {
        "symbol": symbol, "contractType": contract, "status": status, "baseCoin": base,
        "quoteCoin": quote, "settleCoin": quote, "launchTime": "1585526400000",
        "priceScale": "2", "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00"},
        "priceFilter": {"minPrice": "0.10", "maxPrice": "199999.80", "tickSize": tick},
        "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": qty_step, "qtyStep": qty_step},
        "fundingInterval": 480,
    }  # fmt: skip


def okx_body(items: list[dict[str, Any]]) -> bytes:
    return _j({"code": "0", "msg": "", "data": items})


def okx_spot(inst_id: str, tick: str, lot: str, min_sz: str, state: str = "live") -> dict[str, Any]:
    base, quote = inst_id.split("-")
    return {
        "instType": "SPOT", "instId": inst_id, "uly": "", "instFamily": "", "baseCcy": base,
        "quoteCcy": quote, "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "",
        "listTime": "1548133413000", "expTime": "", "lever": "10", "tickSz": tick, "lotSz": lot,
        "minSz": min_sz, "ctType": "", "state": state,
    }  # fmt: skip


def okx_swap(inst_id: str, tick: str, lot: str, ct_val: str, ct_type: str = "linear") -> dict[str, Any]:
    uly = inst_id.removesuffix("-SWAP")
    return {
        "instType": "SWAP", "instId": inst_id, "uly": uly, "instFamily": uly, "baseCcy": "",
        "quoteCcy": "", "settleCcy": uly.split("-")[1] if ct_type == "linear" else uly.split("-")[0],
        "ctVal": ct_val, "ctMult": "1", "ctValCcy": uly.split("-")[0] if ct_type == "linear" else "USD",
        "listTime": "1573557408000", "expTime": "", "lever": "100", "tickSz": tick, "lotSz": lot,
        "minSz": lot, "ctType": ct_type, "state": "live",
    }  # fmt: skip


# -- Bybit --------------------------------------------------------------------------------
def test_bybit_spot() -> None:
    body = bybit_body("spot", [
        bybit_spot("BTCUSDT", "BTC", "USDT", "0.01", "0.000001", "0.000048"),
        bybit_spot("ETHUSDT", "ETH", "USDT", "0.01", "0.00001", "0.00062"),
        bybit_spot("NEWUSDT", "NEW", "USDT", "0.0001", "0.01", "1", status="PreLaunch"),
    ])  # fmt: skip
    page = parse_bybit_page(body)
    assert page.next_cursor == ""
    book = InstrumentBook(page.instruments)
    btc = book.get("bybit", "BTC-USDT")
    assert btc == Instrument(
        venue="bybit", symbol="BTC-USDT", venue_symbol="BTCUSDT", base="BTC", quote="USDT",
        kind="spot", tick_size="0.01", lot_size="0.000001", min_size="0.000048",
        status="trading", raw_status="Trading",
    )  # fmt: skip
    assert book.to_common("bybit", "BTCUSDT") == "BTC-USDT"
    assert book.to_venue("bybit", "ETH-USDT") == "ETHUSDT"
    new = book.get("bybit", "NEW-USDT")
    assert new is not None and (new.status, new.raw_status) == ("other", "PreLaunch")


def test_bybit_linear_keeps_perpetuals_only() -> None:
    body = bybit_body("linear", [
        bybit_linear("BTCUSDT", "BTC", "USDT", "0.10", "0.001"),
        bybit_linear("BTCPERP", "BTC", "USDC", "0.50", "0.001"),
        bybit_linear("BTC-26DEC25", "BTC", "USDC", "0.50", "0.001", contract="LinearFutures"),
        bybit_linear("ETHUSDT", "ETH", "USDT", "0.01", "0.01", status="Settling"),
    ], cursor="first%3D500%26last%3D999")  # fmt: skip
    page = parse_bybit_page(body)
    assert page.next_cursor == "first%3D500%26last%3D999"
    assert [(i.symbol, i.venue_symbol) for i in page.instruments] == [
        ("BTC-USDT-PERP", "BTCUSDT"), ("BTC-USDC-PERP", "BTCPERP"), ("ETH-USDT-PERP", "ETHUSDT"),
    ]  # fmt: skip
    btc = page.instruments[0]
    assert (btc.kind, btc.tick_size, btc.lot_size, btc.min_size) == ("perp", "0.1", "0.001", "0.001")
    assert page.instruments[2].status == "halted"
    assert parse_bybit(body) == page.instruments


def test_bybit_refusal() -> None:
    body = _j({"retCode": 10001, "retMsg": "params error: Category is invalid", "result": {}})
    with pytest.raises(InstrumentParseError, match="bybit.*10001.*Category is invalid"):
        parse_bybit(body)


# -- OKX ----------------------------------------------------------------------------------
def test_okx_spot_and_swap() -> None:
    body = okx_body([
        okx_spot("BTC-USDT", "0.1", "0.00000001", "0.00001"),
        okx_spot("ETH-USDT", "0.01", "0.000001", "0.001", state="suspend"),
        okx_swap("BTC-USDT-SWAP", "0.1", "0.01", "0.01"),
        okx_swap("BTC-USD-SWAP", "0.1", "1", "100", ct_type="inverse"),
    ])  # fmt: skip
    book = InstrumentBook(parse_okx(body))
    assert len(book) == 3
    btc = book.get("okx", "BTC-USDT")
    assert btc is not None
    assert (btc.venue_symbol, btc.tick_size, btc.lot_size, btc.min_size) == ("BTC-USDT", "0.1", "0.00000001", "0.00001")
    assert btc.contract_size is None and btc.size_decimals == 8
    perp = book.get("okx", "BTC-USDT-PERP")
    assert perp is not None
    assert (perp.venue_symbol, perp.base, perp.quote, perp.kind) == ("BTC-USDT-SWAP", "BTC", "USDT", "perp")
    # 0.01 contract lots of 0.01 BTC each: sizes step by 0.0001 BTC
    assert (perp.lot_size, perp.contract_size, perp.base_lot_size, perp.size_decimals) == ("0.01", "0.01", "0.0001", 4)
    assert book.to_common("okx", "BTC-USDT-SWAP") == "BTC-USDT-PERP"
    assert book.to_venue("okx", "BTC-USDT-PERP") == "BTC-USDT-SWAP"
    eth = book.get("okx", "ETH-USDT")
    assert eth is not None and (eth.status, eth.raw_status) == ("halted", "suspend")
    assert book.get("okx", "BTC-USD-PERP") is None  # inverse: sized in USD, left out


def test_okx_refusal() -> None:
    with pytest.raises(InstrumentParseError, match="okx.*51000"):
        parse_okx(_j({"code": "51000", "msg": "Parameter instType error", "data": []}))


# -- error envelopes and odd entries ------------------------------------------------------
@pytest.mark.parametrize(
    ("parse", "body", "match"),
    [
        (parse_binance, b'{"code":-1003,"msg":"Too many requests."}', "binance.*-1003.*Too many"),
        (parse_gateio, b'{"label":"SERVER_ERROR","message":"busy"}', "gateio.*SERVER_ERROR busy"),
        (parse_htx, b'{"status":"error","err-code":"bad-request","err-msg":"x","data":null}', "htx"),
        (parse_htx, b'{"status":"error","err-code":"bad-request","err-msg":"no"}', "htx.*bad-request no"),
        (parse_binance, b"<html>502 Bad Gateway</html>", "binance: bad instrument list"),
        (parse_okx, b'{"code":"0","data":[{"instId":"BTC-USDT"}]}', "okx: bad instrument list"),
    ],
)
def test_whole_response_errors(parse: Any, body: bytes, match: str) -> None:
    with pytest.raises(InstrumentParseError, match=match):
        parse(body)


def test_one_unusable_entry_is_skipped_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    good = {
        "symbol": "BTCUSDT", "status": "TRADING", "baseAsset": "BTC", "quoteAsset": "USDT",
        "filters": [{"filterType": "PRICE_FILTER", "tickSize": "0.01000000"},
                    {"filterType": "LOT_SIZE", "stepSize": "0.00001000", "minQty": "0.00001000"}],
    }  # fmt: skip
    bad = dict(good, symbol="XUSDT", baseAsset="X", filters=good["filters"][:1])
    caplog.set_level(logging.WARNING, "arbwire.instruments")
    insts = parse_binance(_j({"symbols": [good, bad, dict(bad, symbol="YUSDT")]}))
    assert [i.venue_symbol for i in insts] == ["BTCUSDT"]
    assert [r.getMessage() for r in caplog.records] == [
        "venue=binance skipped 2 unusable instrument(s), first: XUSDT: no PRICE_FILTER.tickSize or LOT_SIZE.stepSize"
    ]


def test_htx_numbers_exact_from_their_digits() -> None:
    body = (
        b'{"status":"ok","data":[{"base-currency":"shib","quote-currency":"usdt","symbol":"shibusdt",'
        b'"price-precision":10,"amount-precision":0,"state":"online","min-order-amt":1e-7},'
        b'{"base-currency":"btc","quote-currency":"usdt","symbol":"btcusdt","price-precision":2,'
        b'"amount-precision":6,"state":"online","min-order-amt":0.1000000000000000055,'
        b'"api-trading":"disabled"}]}'
    )
    shib, btc = parse_htx(body)
    assert (shib.tick_size, shib.lot_size, shib.min_size) == ("0.0000000001", "1", "0.0000001")
    assert btc.min_size == "0.1000000000000000055"  # a float would say 0.1
    assert (btc.status, btc.raw_status) == ("halted", "online (api-trading disabled)")


def test_gate_one_sided_status_is_other() -> None:
    body = _j([
        {"id": "AB_USDT", "base": "AB", "quote": "USDT", "fee": "0.2", "min_quote_amount": "1",
         "amount_precision": 0, "precision": 6, "trade_status": "sellable", "sell_start": 0,
         "buy_start": 0},
    ])  # fmt: skip
    (ab,) = parse_gateio(body)
    assert (ab.symbol, ab.tick_size, ab.lot_size, ab.min_size, ab.status) == ("AB-USDT", "0.000001", "1", None, "other")


# -- helpers and the book -----------------------------------------------------------------
def test_exact_and_step() -> None:
    assert exact("0.01000000") == "0.01"
    assert exact("10.00000000") == "10"
    assert exact("1E-7") == "0.0000001"
    assert exact("0.00000000") == "0"
    assert exact(Decimal("100")) == "100"
    assert step(0) == "1" and step(2) == "0.01" and step(10) == "0.0000000001"
    assert decimals("0.00100") == 3 and decimals("10") == 0 and decimals("1") == 0
    for bad in ("abc", "-1", "NaN", "Infinity"):
        with pytest.raises(ValueError):
            exact(bad)


@given(st.integers(0, 30))
def test_step_has_its_decimals(n: int) -> None:
    assert decimals(step(n)) == n
    assert Decimal(step(n)) == Decimal(10) ** -n


@given(st.decimals(min_value=0, max_value=10**12, allow_nan=False, allow_infinity=False, places=12))
def test_exact_keeps_the_value(value: Decimal) -> None:
    text = exact(str(value))
    assert Decimal(text) == value
    assert "E" not in text
    if "." in text:
        assert not text.endswith(("0", "."))


def test_instrument_round_trips_through_json() -> None:
    (inst,) = parse_okx(okx_body([okx_swap("ETH-USDT-SWAP", "0.01", "0.1", "0.1")]))
    again = msgspec.json.decode(msgspec.json.encode(inst), type=Instrument)
    assert again == inst and again.base_lot_size == "0.01"


def test_halted_symbol_is_listed_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    book = InstrumentBook(parse_okx(okx_body([okx_spot("ETH-USDT", "0.01", "0.000001", "0.001", state="suspend")])))
    caplog.set_level(logging.WARNING, "arbwire.instruments")
    for _ in range(3):
        assert book.check("okx", ["eth-usdt"]) == (["eth-usdt"], [])
    assert [r.getMessage() for r in caplog.records] == [
        "venue=okx lists eth-usdt (ETH-USDT) but it is halted (venue status 'suspend')"
    ]
    with pytest.raises(KeyError, match="okx does not list BTC-USDT"):
        book.to_venue("okx", "BTC-USDT")
    with pytest.raises(KeyError, match="okx does not list BTC-USDT-SWAP"):
        book.to_common("okx", "BTC-USDT-SWAP")
