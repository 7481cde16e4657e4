"""Exact book walks in scaled integers.

Prices and sizes are ``arbwire.numbers`` units (``10**-18``); a notional (price x
size) is therefore in units of ``10**-36`` and is kept unrounded. Nothing here
touches a float.
"""

from __future__ import annotations

from collections.abc import Iterable

from arbwire.numbers import to_units

Levels = Iterable[tuple[int, str]]
"""(price units, size text), best first, as ``BookSide.levels()`` yields them."""


def walk_edge(
    asks: Levels,
    bids: Levels,
    buy_k: int,
    sell_k: int,
    max_cost: int | None = None,
    lot: int = 1,
) -> tuple[int, int, int]:
    """Largest size to buy on ``asks`` and sell on ``bids`` that still clears the edge.

    Returns ``(size, cost, proceeds)``: ``size`` in units, a multiple of ``lot``;
    ``cost`` = sum of ask price x size taken and ``proceeds`` = sum of bid price x size
    taken, both in units**2 (exact). ``size`` is the largest ``q`` (rounded down to
    ``lot``) with

    * ``proceeds(q) * sell_k >= cost(q) * buy_k`` -- the edge condition: with
      ``sell_k = (1 - fee_sell)`` and ``buy_k = (1 + fee_buy) * (1 + min_net)`` (both
      scaled by a common integer) it reads "net edge of the averages >= min_net";
    * ``cost(q) <= max_cost`` (units**2) when a cap is given;
    * ``q`` no more than either side's depth.

    ``proceeds*sell_k - cost*buy_k`` is concave in ``q`` (the marginal ask only rises,
    the marginal bid only falls) and piecewise linear between the merged level
    breakpoints, so one pass suffices: inside a segment where the marginal edge
    ``g = bid*sell_k - ask*buy_k`` is negative, the slack ``h`` runs out after
    exactly ``h // -g`` units.
    """
    ask_it = iter(asks)
    bid_it = iter(bids)
    a = b = a_left = b_left = 0
    q = cost = proceeds = 0
    segments: list[tuple[int, int, int]] = []
    while True:
        if not a_left:
            level = next(ask_it, None)
            if level is None:
                break
            a, a_left = level[0], to_units(level[1])
            continue
        if not b_left:
            level = next(bid_it, None)
            if level is None:
                break
            b, b_left = level[0], to_units(level[1])
            continue
        t = a_left if a_left < b_left else b_left
        stop = False
        g = b * sell_k - a * buy_k
        if g < 0:
            t_edge = (proceeds * sell_k - cost * buy_k) // -g
            if t_edge < t:
                t, stop = t_edge, True
        if max_cost is not None:
            t_cap = (max_cost - cost) // a
            if t_cap < t:
                t, stop = t_cap, True
        if t > 0:
            q += t
            cost += a * t
            proceeds += b * t
            a_left -= t
            b_left -= t
            segments.append((a, b, t))
        if stop:
            break
    excess = q % lot
    if excess:
        q -= excess
        while excess:
            a, b, t = segments.pop()
            take = t if t < excess else excess
            cost -= a * take
            proceeds -= b * take
            excess -= take
    return q, cost, proceeds


def walk_size(levels: Levels, size: int) -> tuple[int, int, int]:
    """Take up to ``size`` units from ``levels``: ``(filled, notional, worst price)``.

    ``notional`` is in units**2; ``filled`` is less than ``size`` when the side runs
    out of depth; ``worst price`` is the last level touched (0 when none).
    """
    filled = notional = worst = 0
    for price, text in levels:
        if filled >= size:
            break
        take = min(to_units(text), size - filled)
        filled += take
        notional += price * take
        worst = price
    return filled, notional, worst
