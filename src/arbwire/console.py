"""Terminal views (rich): the live board while running and the summary at the end."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from arbwire.arb.paper import Fill
from arbwire.model import Opportunity, OpportunityEvent

_STATE_STYLE = {"SYNCED": "green", "BUFFERING": "yellow", "RESYNCING": "red", "INIT": "dim"}


def venue_table(snapshot: dict[str, Any], title: str = "venues") -> Table:
    table = Table(title=title, expand=False)
    for col in ("venue", "link", "msgs/s", "frames", "books", "gaps", "resyncs", "bad", "e→r p50 µs", "e→r p99 µs", "rtt p50 µs", "proc p50 µs", "proc p99 µs", "clock ms"):
        table.add_column(col, justify="right" if col not in ("venue", "link", "books") else "left")
    for venue, v in snapshot["venues"].items():
        books = Text()
        for symbol, b in v["books"].items():
            books.append(f"{symbol} ", style=_STATE_STYLE.get(b["state"], ""))
            books.append(f"{b['state'].lower()}  ", style=_STATE_STYLE.get(b["state"], ""))
        lat = v["latency"]
        table.add_row(
            venue,
            Text("up", style="green") if v["connected"] else Text("down", style="red"),
            f"{v['msgs_per_s']:.0f}",
            str(v["frames"]),
            books,
            str(sum(b["gaps"] for b in v["books"].values())),
            str(sum(b["resyncs"] for b in v["books"].values())),
            str(v["bad_frames"]),
            f"{lat['event_to_recv_us']['p50']:.0f}",
            f"{lat['event_to_recv_us']['p99']:.0f}",
            f"{lat['rtt_us']['p50']:.0f}",
            f"{lat['processing_us']['p50']:.1f}",
            f"{lat['processing_us']['p99']:.1f}",
            _clock(lat.get("clock", {})),
        )
    return table


def _clock(clock: dict[str, Any]) -> str:
    """The venue clock's offset from ours and its error bound (e→r latencies are corrected by it)."""
    if clock.get("offset_ms") is None:
        return "-"
    return f"{clock['offset_ms']:+.1f} ±{clock['uncertainty_ms']:.1f}"


def _short(text: str, places: int = 8) -> str:
    """Display form of an exact average price: at most ``places`` decimals."""
    whole, dot, frac = text.partition(".")
    if len(frac) <= places:
        return text
    return f"{whole}.{frac[:places]}…"


def opportunity_table(opps: Iterable[Opportunity], title: str = "opportunities (latest)") -> Table:
    table = Table(title=title)
    for col in ("event", "symbol", "buy @", "price", "sell @", "price", "size", "gross bps", "net bps", "profit", "age ms", "life ms"):
        table.add_column(col, justify="left" if col in ("event", "symbol", "buy @", "sell @") else "right")
    style = {OpportunityEvent.OPENED: "bold green", OpportunityEvent.CHANGED: "yellow", OpportunityEvent.CLOSED: "dim"}
    for o in opps:
        table.add_row(
            Text(o.event.value, style=style[o.event]),
            o.symbol,
            o.buy_venue,
            _short(o.buy_price),
            o.sell_venue,
            _short(o.sell_price),
            o.size,
            f"{o.gross_bps:.1f}",
            f"{o.net_bps:.1f}",
            _short(o.profit, 4),
            f"{max(o.buy_quote_age_ns, o.sell_quote_age_ns) / 1e6:.1f}",
            f"{o.lifetime_ns / 1e6:.0f}" if o.event is OpportunityEvent.CLOSED else "",
        )
    return table


def paper_line(paper: dict[str, Any] | None) -> Text:
    """The paper ledger in one line: trades, and per quote asset the PnL net of fees against
    what the detector promised (the gap is what latency and thin books cost)."""
    if paper is None:
        return Text("paper trading off", style="dim")
    text = Text(
        f"paper ({paper['latency_us']:g} µs)  trades {paper['trades']} "
        f"(filled {paper['filled']}, partial {paper['partial']}, missed {paper['missed']})"
    )
    for quote, pnl in paper["pnl"].items():
        pnl_value = float(pnl)
        text.append(f"  {quote} pnl ")
        text.append(_short(pnl, 4), style="green" if pnl_value > 0 else "red" if pnl_value < 0 else "")
        text.append(f" of {_short(paper['expected_pnl'].get(quote, '0'), 4)} expected, fees {_short(paper['fees'][quote], 4)}")
    if paper["pending"]:
        text.append(f"  pending {paper['pending']}")
    return text


_FILL_STYLE = {"filled": "green", "partial": "yellow", "missed": "dim"}


def fills_table(fills: Iterable[Fill], title: str = "paper trades (latest)") -> Table:
    """Paper trades against the detector's promise: size, average prices, PnL, latency."""
    table = Table(title=title)
    for col in ("status", "symbol", "buy @", "price", "sell @", "price", "size", "of", "net bps", "pnl", "expected", "ms", "why"):
        table.add_column(col, justify="left" if col in ("status", "symbol", "buy @", "sell @", "why") else "right")
    for f in fills:
        table.add_row(
            Text(f.status, style=_FILL_STYLE.get(f.status, "")), f.symbol, f.buy_venue, _short(f.buy_price),
            f.sell_venue, _short(f.sell_price), f.size, f.wanted, f"{f.net_bps:.1f}", _short(f.pnl, 4),
            _short(f.expected, 4), f"{f.latency_ns / 1e6:.1f}", f.reason,
        )
    return table


def board(
    snapshot: dict[str, Any], opps: list[Opportunity], elapsed_s: float, fills: list[Fill] | None = None
) -> Group:
    o = snapshot["opportunities"]
    head = Text(
        f"arbwire  {elapsed_s:5.1f}s   opened {o['opened']}  closed {o['closed']}  best net {o['best_net_bps']:.1f} bps",
        style="bold",
    )
    parts: list[Any] = [head, paper_line(snapshot.get("paper")), venue_table(snapshot), opportunity_table(opps[-12:])]
    if fills:
        parts.append(fills_table(fills[-6:]))
    return Group(*parts)
