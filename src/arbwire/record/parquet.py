"""Normalized events as Parquet tables, in columns a tardis or nautilus user recognises.

Layout (hive partitions, readable by DuckDB, polars, pandas and pyarrow as is)::

    <root>/type=trade/venue=binance/symbol=BTC-USDT/date=2024-08-08/part-<ns>-<n>.parquet

``type`` is one of ``trade``, ``quote``, ``book``, ``opportunity``; ``date`` is
the UTC date of the local receive time. The partition columns are not repeated
inside the files (as ``pyarrow.dataset.write_dataset`` does); read a type's
folder with hive partitioning to get them back, e.g.
``duckdb: read_parquet('root/type=trade/**/*.parquet', hive_partitioning=true)``,
``polars: pl.read_parquet('root/type=trade/**/*.parquet', hive_partitioning=True)``,
``pandas: pd.read_parquet('root/type=trade')``.

Columns (times are ``timestamp[ns, UTC]``; prices and sizes exact ``decimal128(38, 18)``):

* trade: ``timestamp`` (venue time), ``local_timestamp`` (receive time), ``side``
  (taker side, ``buy``/``sell``), ``price``, ``size``, ``trade_id``
* quote: ``timestamp``, ``local_timestamp``, ``bid_price``, ``bid_size``,
  ``ask_price``, ``ask_size``, ``update_id``
* book: one row per level, like tardis ``incremental_book_L2``: ``timestamp``,
  ``local_timestamp``, ``is_snapshot``, ``side`` (``bid``/``ask``), ``price``,
  ``size`` (0 deletes the level), ``first_id``, ``last_id``. A snapshot is the
  whole book as synced (after the venue's snapshot and the diffs buffered before
  it were aligned), so snapshot + later rows rebuild the exact book.
* opportunity: ``timestamp`` and ``local_timestamp`` (the receive time of the
  update that caused it), ``event``, ``buy_venue``, ``sell_venue``,
  ``buy_price``, ``sell_price``, ``size``, ``gross_bps``, ``net_bps``,
  ``profit``, ``opened_timestamp``, ``lifetime_ns``, ``buy_quote_age_ns``,
  ``sell_quote_age_ns``; its ``venue`` partition is ``<buy venue>_<sell venue>``.
* top (``arbwire replay --emit tops --out X.parquet``): ``venue``, ``symbol``,
  ``seq``, ``bid``, ``bid_size``, ``ask``, ``ask_size``, ``local_timestamp``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from arbwire.model import BookUpdate, Opportunity, Quote, Side, Trade

DECIMAL = pa.decimal128(38, 18)
TIME = pa.timestamp("ns", tz="UTC")
_QUANTUM = Decimal(1).scaleb(-18)

TYPES = ("trade", "quote", "book", "opportunity")


def decimals(texts: Sequence[str | None]) -> pa.Array:
    """Exact decimal text -> decimal128(38, 18); text finer than 1e-18 is rounded half-even."""
    arr = pa.array(texts, pa.string())
    try:
        return arr.cast(DECIMAL)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        out: list[Decimal | None] = []
        for t in texts:
            if t is None:
                out.append(None)
                continue
            try:
                out.append(Decimal(t).quantize(_QUANTUM, rounding=ROUND_HALF_EVEN))
            except InvalidOperation:
                out.append(None)
        return pa.array(out, DECIMAL)


def times(values: Iterable[int]) -> pa.Array:
    """Integer ns -> timestamp[ns, UTC]; 0 (the venue sent no time) -> null."""
    return pa.array([v or None for v in values], TIME)


def trade_table(events: Sequence[Trade]) -> pa.Table:
    return pa.table(
        {
            "timestamp": times(e.venue_ts_ns for e in events),
            "local_timestamp": times(e.recv_ns for e in events),
            "side": pa.array(["buy" if e.side is Side.BUY else "sell" for e in events], pa.string()),
            "price": decimals([e.price for e in events]),
            "size": decimals([e.size for e in events]),
            "trade_id": pa.array([e.trade_id for e in events], pa.string()),
        }
    )


def quote_table(events: Sequence[Quote]) -> pa.Table:
    return pa.table(
        {
            "timestamp": times(e.venue_ts_ns for e in events),
            "local_timestamp": times(e.recv_ns for e in events),
            "bid_price": decimals([e.bid or None for e in events]),
            "bid_size": decimals([e.bid_size or None for e in events]),
            "ask_price": decimals([e.ask or None for e in events]),
            "ask_size": decimals([e.ask_size or None for e in events]),
            "update_id": pa.array([e.update_id for e in events], pa.int64()),
        }
    )


def book_table(events: Sequence[BookUpdate]) -> pa.Table:
    ts: list[int] = []
    local: list[int] = []
    snap: list[bool] = []
    side: list[str] = []
    price: list[str] = []
    size: list[str] = []
    first: list[int] = []
    last: list[int] = []
    for e in events:
        for name, levels in (("bid", e.bids), ("ask", e.asks)):
            n = len(levels)
            if not n:
                continue
            ts += [e.venue_ts_ns] * n
            local += [e.recv_ns] * n
            snap += [e.is_snapshot] * n
            side += [name] * n
            first += [e.first_id] * n
            last += [e.last_id] * n
            for p, s in levels:
                price.append(p)
                size.append(s)
    return pa.table(
        {
            "timestamp": times(ts),
            "local_timestamp": times(local),
            "is_snapshot": pa.array(snap, pa.bool_()),
            "side": pa.array(side, pa.string()),
            "price": decimals(price),
            "size": decimals(size),
            "first_id": pa.array(first, pa.int64()),
            "last_id": pa.array(last, pa.int64()),
        }
    )


def opportunity_table(events: Sequence[Opportunity]) -> pa.Table:
    return pa.table(
        {
            "timestamp": times(e.recv_ns for e in events),
            "local_timestamp": times(e.recv_ns for e in events),
            "event": pa.array([e.event.value for e in events], pa.string()),
            "buy_venue": pa.array([e.buy_venue for e in events], pa.string()),
            "sell_venue": pa.array([e.sell_venue for e in events], pa.string()),
            "buy_price": decimals([e.buy_price for e in events]),
            "sell_price": decimals([e.sell_price for e in events]),
            "size": decimals([e.size for e in events]),
            "gross_bps": pa.array([e.gross_bps for e in events], pa.float64()),
            "net_bps": pa.array([e.net_bps for e in events], pa.float64()),
            "profit": decimals([e.profit for e in events]),
            "opened_timestamp": times(e.opened_ns for e in events),
            "lifetime_ns": pa.array([e.lifetime_ns for e in events], pa.int64()),
            "buy_quote_age_ns": pa.array([e.buy_quote_age_ns for e in events], pa.int64()),
            "sell_quote_age_ns": pa.array([e.sell_quote_age_ns for e in events], pa.int64()),
        }
    )


def top_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.table(
        {
            "venue": pa.array([r["venue"] for r in rows], pa.string()),
            "symbol": pa.array([r["symbol"] for r in rows], pa.string()),
            "seq": pa.array([r["seq"] for r in rows], pa.int64()),
            "bid": decimals([r["bid"] for r in rows]),
            "bid_size": decimals([r["bid_size"] for r in rows]),
            "ask": decimals([r["ask"] for r in rows]),
            "ask_size": decimals([r["ask_size"] for r in rows]),
            "local_timestamp": times(r["recv_ns"] for r in rows),
        }
    )


BUILDERS = {"trade": trade_table, "quote": quote_table, "book": book_table, "opportunity": opportunity_table}


def event_type(event: object) -> str | None:
    """The partition ``type`` of an event, or None for events not written (states, errors)."""
    kind = type(event)
    if kind is Trade:
        return "trade"
    if kind is Quote:
        return "quote"
    if kind is BookUpdate:
        return "book"
    if kind is Opportunity:
        return "opportunity"
    return None


def partition_key(event: Any, kind: str) -> tuple[str, str, str, str]:
    """(type, venue, symbol, date) of an event."""
    venue = f"{event.buy_venue}_{event.sell_venue}" if kind == "opportunity" else event.venue
    date = time.strftime("%Y-%m-%d", time.gmtime(event.recv_ns // 1_000_000_000))
    return kind, venue, event.symbol, date


def rows_of(event: Any, kind: str) -> int:
    return len(event.bids) + len(event.asks) if kind == "book" else 1


def write_partition(root: str | Path, key: tuple[str, str, str, str], events: Sequence[Any], seq: int) -> Path:
    """One Parquet file of one partition's events."""
    kind, venue, symbol, date = key
    directory = Path(root) / f"type={kind}" / f"venue={venue}" / f"symbol={symbol}" / f"date={date}"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"part-{events[0].recv_ns}-{seq:06d}.parquet"
    table = BUILDERS[kind](events)
    pq.write_table(table, path, compression="zstd")
    return path
