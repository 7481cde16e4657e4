"""Instrument parsers on the real cryptofeed instrument lists (Binance, Gate, HTX).

Each file is ``<url> -> <ts>: <body>`` then a ``configuration: {...}`` line naming
the symbols cryptofeed subscribed. Expected values are pinned from the files and
cross-checked against an independent reading (stdlib ``json`` with ``Decimal``).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from arbwire.instruments import InstrumentBook, parse_binance, parse_gateio, parse_htx


def _read(path: Path) -> tuple[str, bytes, list[str]]:
    """(url, body, configured symbols) of a cryptofeed ``*.0`` instrument file."""
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and lines[1].startswith("configuration: ")
    head, body = lines[0].split(": ", 1)
    url = head.split(" -> ")[0]
    config = json.loads(lines[1].removeprefix("configuration: "))
    symbols = sorted({s for channel in config.values() for s in channel})
    return url, body.encode(), symbols


def _independent(body: bytes) -> Any:
    return json.loads(body, parse_float=Decimal, parse_int=Decimal)


@pytest.fixture(scope="module")
def binance(real_data: Path) -> tuple[str, bytes, list[str]]:
    return _read(real_data / "cryptofeed" / "BINANCE.0")


@pytest.fixture(scope="module")
def gate(real_data: Path) -> tuple[str, bytes, list[str]]:
    return _read(real_data / "cryptofeed" / "GATEIO.0")


@pytest.fixture(scope="module")
def htx(real_data: Path) -> tuple[str, bytes, list[str]]:
    return _read(real_data / "cryptofeed" / "HUOBI.0")


# -- Binance ------------------------------------------------------------------------------
def test_binance_counts_and_pairs(binance: tuple[str, bytes, list[str]]) -> None:
    url, body, configured = binance
    assert url == "https://api.binance.com/api/v3/exchangeInfo"
    insts = parse_binance(body)
    assert len(insts) == 1695
    assert Counter(i.raw_status for i in insts) == {"TRADING": 1262, "BREAK": 433}
    assert Counter(i.status for i in insts) == {"trading": 1262, "halted": 433}
    assert {i.kind for i in insts} == {"spot"}
    book = InstrumentBook(insts)
    btc = book.get("binance", "BTC-USDT")
    assert btc is not None
    assert (btc.venue_symbol, btc.base, btc.quote) == ("BTCUSDT", "BTC", "USDT")
    assert (btc.tick_size, btc.lot_size, btc.min_size) == ("0.01", "0.00001", "0.00001")
    assert (btc.price_decimals, btc.size_decimals, btc.status, btc.raw_status) == (2, 5, "trading", "TRADING")
    eth = book.get("binance", "ETH-USDT")
    assert eth is not None and (eth.tick_size, eth.lot_size, eth.min_size) == ("0.01", "0.0001", "0.0001")
    # both ways, and stream-case names find the same instrument
    assert book.to_venue("binance", "BTC-USDT") == "BTCUSDT"
    assert book.to_common("binance", "BTCUSDT") == "BTC-USDT"
    assert book.to_common("binance", "btcusdt") == "BTC-USDT"
    assert book.check("binance", configured) == (configured, [])
    assert configured == ["BLZ-ETH", "LRC-BTC", "NKN-USDT", "RUNE-EUR"]


def test_binance_every_size_matches_the_file(binance: tuple[str, bytes, list[str]]) -> None:
    _, body, _ = binance
    ref = {s["symbol"]: s for s in _independent(body)["symbols"]}
    insts = parse_binance(body)
    assert {i.venue_symbol for i in insts} == set(ref)
    for inst in insts:
        s = ref[inst.venue_symbol]
        filters = {f["filterType"]: f for f in s["filters"]}
        assert Decimal(inst.tick_size) == Decimal(filters["PRICE_FILTER"]["tickSize"])
        assert Decimal(inst.lot_size) == Decimal(filters["LOT_SIZE"]["stepSize"])
        assert inst.symbol == f"{s['baseAsset']}-{s['quoteAsset']}"


# -- Gate ---------------------------------------------------------------------------------
def test_gate_counts_and_pairs(gate: tuple[str, bytes, list[str]]) -> None:
    url, body, configured = gate
    assert url == "https://api.gateio.ws/api/v4/spot/currency_pairs"
    insts = parse_gateio(body)
    assert len(insts) == 1458
    assert Counter(i.raw_status for i in insts) == {"tradable": 1408, "untradable": 44, "sellable": 6}
    assert Counter(i.status for i in insts) == {"trading": 1408, "halted": 44, "other": 6}
    book = InstrumentBook(insts)
    btc = book.get("gateio", "BTC-USDT")
    assert btc is not None
    assert (btc.venue_symbol, btc.tick_size, btc.lot_size, btc.min_size) == ("BTC_USDT", "0.01", "0.0001", "0.0001")
    eth = book.get("gateio", "ETH-USDT")
    assert eth is not None
    assert (eth.venue_symbol, eth.tick_size, eth.lot_size, eth.min_size) == ("ETH_USDT", "0.01", "0.0001", "0.001")
    assert book.to_venue("gateio", "BTC-USDT") == "BTC_USDT"
    assert book.to_common("gateio", "BTC_USDT") == "BTC-USDT"
    assert book.check("gateio", configured) == (configured, [])
    assert len(configured) == 10


def test_gate_precisions_become_steps(gate: tuple[str, bytes, list[str]]) -> None:
    _, body, _ = gate
    ref = {p["id"]: p for p in _independent(body)}
    insts = parse_gateio(body)
    assert {i.venue_symbol for i in insts} == set(ref)
    for inst in insts:
        p = ref[inst.venue_symbol]
        assert Decimal(inst.tick_size) == Decimal(10) ** -p["precision"]
        assert Decimal(inst.lot_size) == Decimal(10) ** -p["amount_precision"]
        if "min_base_amount" in p:
            assert Decimal(inst.min_size or "x") == Decimal(p["min_base_amount"])
        else:
            assert inst.min_size is None


# -- HTX ----------------------------------------------------------------------------------
def test_htx_counts_and_pairs(htx: tuple[str, bytes, list[str]]) -> None:
    url, body, configured = htx
    assert url == "https://api.huobi.pro/v1/common/symbols"
    insts = parse_htx(body)
    assert len(insts) == 938
    assert Counter(i.raw_status for i in insts) == {"online": 883, "offline": 55}
    book = InstrumentBook(insts)
    btc = book.get("htx", "BTC-USDT")
    assert btc is not None
    assert (btc.venue_symbol, btc.tick_size, btc.lot_size, btc.min_size) == ("btcusdt", "0.01", "0.000001", "0.0001")
    eth = book.get("htx", "ETH-USDT")
    assert eth is not None
    assert (eth.venue_symbol, eth.tick_size, eth.lot_size, eth.min_size) == ("ethusdt", "0.01", "0.0001", "0.001")
    assert book.to_venue("htx", "BTC-USDT") == "btcusdt"
    assert book.to_common("htx", "btcusdt") == "BTC-USDT"
    assert book.check("htx", configured) == (configured, [])
    assert "YFI-HUSD" in configured


def test_htx_json_numbers_stay_exact(htx: tuple[str, bytes, list[str]]) -> None:
    """min-order-amt is a JSON number (0.0001, 1, 0.01 ...): compared as Decimal from its text."""
    _, body, _ = htx
    ref = {s["symbol"]: s for s in _independent(body)["data"]}
    for inst in parse_htx(body):
        s = ref[inst.venue_symbol]
        assert Decimal(inst.min_size or "x") == s["min-order-amt"]
        assert Decimal(inst.tick_size) == Decimal(10) ** -int(s["price-precision"])
        assert Decimal(inst.lot_size) == Decimal(10) ** -int(s["amount-precision"])
        assert inst.symbol == f"{s['base-currency']}-{s['quote-currency']}".upper()


# -- across venues ------------------------------------------------------------------------
def test_book_across_real_venues(binance, gate, htx, caplog: pytest.LogCaptureFixture) -> None:
    book = InstrumentBook([*parse_binance(binance[1]), *parse_gateio(gate[1]), *parse_htx(htx[1])])
    assert book.venues() == ["binance", "gateio", "htx"]
    assert len(book) == 1695 + 1458 + 938
    # lots: binance 0.00001, gate 0.0001, htx 0.000001 -> the coarsest is 4 decimals
    assert book.size_decimals("BTC-USDT", ["binance", "gateio", "htx"]) == 4
    assert book.size_decimals("BTC-USDT", ["binance", "htx"]) == 5
    assert book.size_decimals("NOPE-USDT", ["binance"]) is None
    # a symbol one venue lacks: reported once, the rest run
    caplog.set_level(logging.WARNING, "arbwire.instruments")
    wanted = ["BTC-USDT", "NOPE-USDT", "ETH-USDT"]
    assert book.check("htx", wanted) == (["BTC-USDT", "ETH-USDT"], ["NOPE-USDT"])
    assert book.check("htx", wanted) == (["BTC-USDT", "ETH-USDT"], ["NOPE-USDT"])
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["venue=htx does not list NOPE-USDT; running without it"]
