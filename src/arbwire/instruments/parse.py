"""One pure parser per venue: instrument-list response bytes -> ``list[Instrument]``.

Responses decode into typed msgspec Structs that name only the fields used, so
a venue adding fields changes nothing and a venue changing a type fails loudly.
Sizes stay text; HTX sends JSON numbers, which decode into ``Decimal`` from the
number's own digits (never through a float), and its "N decimals" precisions
become steps (``2`` -> ``"0.01"``).

A whole response that is malformed or an error envelope raises
``InstrumentParseError``; one entry that can't be used (no tick size, say) is
skipped and counted in one log line, so one odd listing never hides the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import TypeVar

import msgspec

from arbwire.instruments.model import Instrument, Kind, Status, exact, make_symbol, step

log = logging.getLogger("arbwire.instruments")

T = TypeVar("T")


class InstrumentParseError(ValueError):
    """An instrument-list response that can't be read; names the venue."""


def _decode(venue: str, body: bytes, type_: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=type_)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise InstrumentParseError(f"{venue}: bad instrument list: {exc}: {body[:200]!r}") from exc


def _collect(
    venue: str, items: Iterable[T], build: Callable[[T], Instrument | None]
) -> list[Instrument]:
    """Build each item, skipping (and counting, in one log line) the ones that raise ValueError."""
    out: list[Instrument] = []
    skipped = 0
    first = ""
    for item in items:
        try:
            inst = build(item)
        except ValueError as exc:
            skipped += 1
            first = first or str(exc)
            continue
        if inst is not None:
            out.append(inst)
    if skipped:
        log.warning("venue=%s skipped %d unusable instrument(s), first: %s", venue, skipped, first)
    return out


def _status(raw: str, table: dict[str, Status]) -> Status:
    return table.get(raw, "other")


# -- Binance spot: GET /api/v3/exchangeInfo (§1.10) ---------------------------------------
class _BinanceFilter(msgspec.Struct, rename="camel"):
    filter_type: str
    tick_size: str | None = None
    step_size: str | None = None
    min_qty: str | None = None


class _BinanceSymbol(msgspec.Struct, rename="camel"):
    symbol: str
    status: str
    base_asset: str
    quote_asset: str
    filters: list[_BinanceFilter] = []


class _BinanceInfo(msgspec.Struct):
    symbols: list[_BinanceSymbol] | None = None
    code: int | None = None
    msg: str | None = None


_BINANCE_STATUS: dict[str, Status] = {
    "TRADING": "trading", "HALT": "halted", "BREAK": "halted", "CANCEL_ONLY": "halted",
}  # fmt: skip


def parse_binance(body: bytes) -> list[Instrument]:
    info = _decode("binance", body, _BinanceInfo)
    if info.symbols is None:
        raise InstrumentParseError(
            f"binance: no symbols in exchangeInfo: code={info.code} {info.msg}"
        )

    def build(s: _BinanceSymbol) -> Instrument:
        by_type = {f.filter_type: f for f in s.filters}
        price, lot = by_type.get("PRICE_FILTER"), by_type.get("LOT_SIZE")
        if price is None or price.tick_size is None or lot is None or lot.step_size is None:
            raise ValueError(f"{s.symbol}: no PRICE_FILTER.tickSize or LOT_SIZE.stepSize")
        base, quote = s.base_asset.upper(), s.quote_asset.upper()
        return Instrument(
            venue="binance", symbol=make_symbol(base, quote, "spot"), venue_symbol=s.symbol,
            base=base, quote=quote, kind="spot",
            tick_size=exact(price.tick_size), lot_size=exact(lot.step_size),
            min_size=exact(lot.min_qty) if lot.min_qty is not None else None,
            status=_status(s.status, _BINANCE_STATUS), raw_status=s.status,
        )  # fmt: skip

    return _collect("binance", info.symbols, build)


# -- Bybit v5: GET /v5/market/instruments-info?category=spot|linear (§2.9) ------------------
class _BybitPriceFilter(msgspec.Struct, rename="camel"):
    tick_size: str


class _BybitLotFilter(msgspec.Struct, rename="camel"):
    base_precision: str | None = None  # spot
    qty_step: str | None = None  # linear
    min_order_qty: str | None = None


class _BybitItem(msgspec.Struct, rename="camel"):
    symbol: str
    base_coin: str
    quote_coin: str
    status: str
    price_filter: _BybitPriceFilter
    lot_size_filter: _BybitLotFilter
    contract_type: str | None = None


class _BybitResult(msgspec.Struct, rename="camel"):
    category: str = ""
    items: list[_BybitItem] = msgspec.field(name="list", default_factory=list)
    next_page_cursor: str = ""


class _BybitResponse(msgspec.Struct, rename="camel"):
    ret_code: int
    ret_msg: str = ""
    result: _BybitResult | None = None


class BybitPage(msgspec.Struct, frozen=True):
    """One page of Bybit's list; ``next_cursor`` is "" on the last page."""

    instruments: list[Instrument]
    next_cursor: str


_BYBIT_STATUS: dict[str, Status] = {
    "Trading": "trading", "Closed": "halted", "Delivering": "halted", "Settling": "halted",
}  # fmt: skip


def parse_bybit_page(body: bytes) -> BybitPage:
    """One page, spot or linear (from ``result.category``). Linear keeps perpetuals only:
    dated futures (``BTC-26DEC25``) have no arbwire name."""
    resp = _decode("bybit", body, _BybitResponse)
    if resp.ret_code != 0 or resp.result is None:
        raise InstrumentParseError(
            f"bybit: instrument list refused: retCode={resp.ret_code} {resp.ret_msg}"
        )
    category = resp.result.category
    if category not in ("spot", "linear"):
        raise InstrumentParseError(f"bybit: unexpected category {category!r}")
    kind: Kind = "spot" if category == "spot" else "perp"

    def build(it: _BybitItem) -> Instrument | None:
        if kind == "perp" and (
            it.contract_type not in (None, "LinearPerpetual") or "-" in it.symbol
        ):
            return None
        lot = it.lot_size_filter.qty_step or it.lot_size_filter.base_precision
        if lot is None:
            raise ValueError(f"{it.symbol}: no lotSizeFilter.qtyStep/basePrecision")
        base, quote = it.base_coin.upper(), it.quote_coin.upper()
        return Instrument(
            venue="bybit", symbol=make_symbol(base, quote, kind), venue_symbol=it.symbol,
            base=base, quote=quote, kind=kind,
            tick_size=exact(it.price_filter.tick_size), lot_size=exact(lot),
            min_size=exact(m) if (m := it.lot_size_filter.min_order_qty) is not None else None,
            status=_status(it.status, _BYBIT_STATUS), raw_status=it.status,
        )  # fmt: skip

    return BybitPage(_collect("bybit", resp.result.items, build), resp.result.next_page_cursor)


def parse_bybit(body: bytes) -> list[Instrument]:
    return parse_bybit_page(body).instruments


# -- OKX v5: GET /api/v5/public/instruments?instType=SPOT|SWAP (§3.9) ----------------------
class _OkxInst(msgspec.Struct, rename="camel"):
    inst_type: str
    inst_id: str
    tick_sz: str
    lot_sz: str
    state: str
    base_ccy: str = ""
    quote_ccy: str = ""
    min_sz: str = ""
    ct_val: str = ""
    ct_type: str = ""


class _OkxResponse(msgspec.Struct):
    code: str
    msg: str = ""
    data: list[_OkxInst] = []


_OKX_STATUS: dict[str, Status] = {"live": "trading", "suspend": "halted", "expired": "halted"}


def parse_okx(body: bytes) -> list[Instrument]:
    """SPOT and SWAP lists. Swap sizes count contracts of ``ctVal`` base units each;
    inverse swaps (``BTC-USD-SWAP``, sized in USD) are left out: nothing to compare."""
    resp = _decode("okx", body, _OkxResponse)
    if resp.code != "0":
        raise InstrumentParseError(f"okx: instrument list refused: code={resp.code} {resp.msg}")

    def build(it: _OkxInst) -> Instrument | None:
        if it.inst_type == "SPOT":
            kind: Kind = "spot"
        elif it.inst_type == "SWAP" and it.ct_type != "inverse":
            kind = "perp"
        else:
            return None
        parts = it.inst_id.split("-")
        if len(parts) < 2 or (kind == "perp" and (len(parts) != 3 or parts[2] != "SWAP")):
            raise ValueError(f"{it.inst_id}: not BASE-QUOTE[-SWAP]")
        base = (it.base_ccy or parts[0]).upper()
        quote = (it.quote_ccy or parts[1]).upper()
        return Instrument(
            venue="okx", symbol=make_symbol(base, quote, kind), venue_symbol=it.inst_id,
            base=base, quote=quote, kind=kind,
            tick_size=exact(it.tick_sz), lot_size=exact(it.lot_sz),
            min_size=exact(it.min_sz) if it.min_sz else None,
            contract_size=exact(it.ct_val) if kind == "perp" and it.ct_val else None,
            status=_status(it.state, _OKX_STATUS), raw_status=it.state,
        )  # fmt: skip

    return _collect("okx", resp.data, build)


# -- Gate v4: GET /api/v4/spot/currency_pairs (§4.9) --------------------------------------
class _GatePair(msgspec.Struct):
    id: str
    base: str
    quote: str
    precision: int  # price decimals
    amount_precision: int
    trade_status: str
    min_base_amount: str | None = None


class _GateError(msgspec.Struct):
    label: str = ""
    message: str = ""


_GATE_STATUS: dict[str, Status] = {"tradable": "trading", "untradable": "halted"}


def parse_gateio(body: bytes) -> list[Instrument]:
    """Gate gives decimals, not steps: ``precision`` 2 is a 0.01 tick. ``sellable``/``buyable``
    (one side only) come out as status "other"."""
    resp = _decode("gateio", body, list[_GatePair] | _GateError)
    if isinstance(resp, _GateError):
        raise InstrumentParseError(f"gateio: instrument list refused: {resp.label} {resp.message}")

    def build(p: _GatePair) -> Instrument:
        base, quote = p.base.upper(), p.quote.upper()
        return Instrument(
            venue="gateio", symbol=make_symbol(base, quote, "spot"), venue_symbol=p.id,
            base=base, quote=quote, kind="spot",
            tick_size=step(p.precision), lot_size=step(p.amount_precision),
            min_size=exact(p.min_base_amount) if p.min_base_amount is not None else None,
            status=_status(p.trade_status, _GATE_STATUS), raw_status=p.trade_status,
        )  # fmt: skip

    return _collect("gateio", resp, build)


# -- HTX: GET /v1/common/symbols (§5.9) ----------------------------------------------------
class _HtxSymbol(msgspec.Struct, rename="kebab"):
    symbol: str
    base_currency: str
    quote_currency: str
    price_precision: int
    amount_precision: int
    state: str
    min_order_amt: Decimal | None = None  # a JSON number: Decimal keeps its digits
    api_trading: str = "enabled"


class _HtxResponse(msgspec.Struct, rename="kebab"):
    status: str
    data: list[_HtxSymbol] = []
    err_code: str = ""
    err_msg: str = ""


_HTX_STATUS: dict[str, Status] = {"online": "trading", "offline": "halted", "suspend": "halted"}


def parse_htx(body: bytes) -> list[Instrument]:
    """An ``online`` symbol with ``api-trading`` disabled can't be traded by us: halted."""
    resp = _decode("htx", body, _HtxResponse)
    if resp.status != "ok":
        raise InstrumentParseError(f"htx: instrument list refused: {resp.err_code} {resp.err_msg}")

    def build(s: _HtxSymbol) -> Instrument:
        base, quote = s.base_currency.upper(), s.quote_currency.upper()
        status = _status(s.state, _HTX_STATUS)
        raw = s.state
        if status == "trading" and s.api_trading != "enabled":
            status, raw = "halted", f"{s.state} (api-trading {s.api_trading})"
        return Instrument(
            venue="htx", symbol=make_symbol(base, quote, "spot"), venue_symbol=s.symbol,
            base=base, quote=quote, kind="spot",
            tick_size=step(s.price_precision), lot_size=step(s.amount_precision),
            min_size=exact(s.min_order_amt) if s.min_order_amt is not None else None,
            status=status, raw_status=raw,
        )  # fmt: skip

    return _collect("htx", resp.data, build)


PARSERS: dict[str, Callable[[bytes], list[Instrument]]] = {
    "binance": parse_binance,
    "bybit": parse_bybit,
    "okx": parse_okx,
    "gateio": parse_gateio,
    "htx": parse_htx,
}
