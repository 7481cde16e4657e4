"""Taker fees per venue, exact.

A fee is kept as an exact integer rate in units of ``1 / FEE_SCALE`` (1e-8, i.e.
0.0001 bps), so the detector can multiply scaled-integer prices by ``FEE_SCALE -
fee`` and ``FEE_SCALE + fee`` and stay exact. Configure in basis points, as
``Decimal``, decimal text, ``int`` or ``float`` (floats are read through ``repr``,
so ``7.5`` means exactly 7.5 bps).

The defaults are the venues' public *base-tier* (VIP 0 / regular user, no
platform-token discount) spot taker fees. Real accounts often pay less (VIP
tiers, BNB/GT/HT discounts, rebates) and sometimes more on some pairs, so every
figure is configurable: pass ``taker_bps={"binance": "7.5"}`` to override.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation

FEE_SCALE = 10**8
"""Integer rate units per 1.0 (one unit is 1e-8, i.e. 0.0001 bps)."""

_UNITS_PER_BPS = FEE_SCALE // 10_000

DEFAULT_TAKER_BPS: Mapping[str, Decimal] = {
    "binance": Decimal("10"),  # spot regular user 0.100 %
    "binance-usdm": Decimal("5"),  # USD-M futures regular user 0.050 %
    "okx": Decimal("10"),  # spot Lv1 0.100 %
    "bybit": Decimal("10"),  # spot non-VIP 0.100 %
    "gateio": Decimal("10"),  # spot VIP 0, lowered to 0.100 %
    "htx": Decimal("20"),  # spot regular user 0.200 %
}
"""Base-tier spot taker fees in bps, by arbwire venue name. Configurable."""


class FeeError(ValueError):
    """A fee that is negative, not a number, finer than 0.0001 bps, or for an unknown venue."""


def bps_to_units(bps: Decimal | str | int | float) -> int:
    """Exact rate units for a fee in bps; raises ``FeeError`` when not exact or negative."""
    try:
        value = Decimal(repr(bps)) if isinstance(bps, float) else Decimal(bps)
    except (InvalidOperation, TypeError, ValueError):
        raise FeeError(f"fee is not a number: {bps!r}") from None
    if not value.is_finite() or value < 0:
        raise FeeError(f"fee must be a finite non-negative bps figure: {bps!r}")
    units = value * _UNITS_PER_BPS
    if units != units.to_integral_value():
        raise FeeError(f"fee {bps!r} bps is finer than 0.0001 bps")
    if units >= FEE_SCALE:
        raise FeeError(f"fee {bps!r} bps is 100 % or more")
    return int(units)


class FeeSchedule:
    """Taker fee per venue.

    ``taker_bps`` overrides or extends ``DEFAULT_TAKER_BPS`` (base-tier figures);
    ``default_bps`` applies to venues named nowhere (``None``: an unknown venue is an
    error, since silently trading at zero fees overstates every edge). A venue name
    such as ``"okx-swap"`` that is not listed falls back to its prefix ``"okx"``.
    """

    __slots__ = ("_units", "_default")

    def __init__(
        self,
        taker_bps: Mapping[str, Decimal | str | int | float] | None = None,
        *,
        default_bps: Decimal | str | int | float | None = None,
        use_defaults: bool = True,
    ) -> None:
        units = {v: bps_to_units(b) for v, b in DEFAULT_TAKER_BPS.items()} if use_defaults else {}
        for venue, bps in (taker_bps or {}).items():
            units[venue] = bps_to_units(bps)
        self._units = units
        self._default = None if default_bps is None else bps_to_units(default_bps)

    def units(self, venue: str) -> int:
        """The taker rate of ``venue`` in ``1/FEE_SCALE`` units (10 bps -> 100_000)."""
        units = self._units.get(venue)
        if units is None:
            units = self._units.get(venue.partition("-")[0])
        if units is None:
            units = self._default
        if units is None:
            raise FeeError(f"no taker fee configured for venue {venue!r}")
        return units

    def bps(self, venue: str) -> Decimal:
        """The taker fee of ``venue`` in bps, exact."""
        return Decimal(self.units(venue)) / _UNITS_PER_BPS

    def rate(self, venue: str) -> Decimal:
        """The taker fee of ``venue`` as a fraction of notional (10 bps -> 0.001), exact."""
        return Decimal(self.units(venue)) / FEE_SCALE

    def as_bps(self) -> dict[str, Decimal]:
        """Every configured venue's fee in bps (for the summary and config dumps)."""
        return {v: Decimal(u) / _UNITS_PER_BPS for v, u in sorted(self._units.items())}

    def __repr__(self) -> str:
        inner = ", ".join(f"{v}={b}" for v, b in self.as_bps().items())
        return f"FeeSchedule({inner})"
