"""Faults planned in a run config: "at 2.5 s, make okx skip a BTC-USDT diff".

The faults themselves are methods of the venue servers (see ``VenueServer.faults``)
and of the market (``freeze``/``thaw``); this module only names them in data and
fires them on time, so a new fault needs no change here.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

log = logging.getLogger("arbwire.sim")

MARKET = "market"  # the pseudo-venue for faults of the shared market model


class FaultAt(msgspec.Struct, frozen=True):
    """At ``at_s`` seconds after the simulators start, apply ``fault(**args)`` on ``venue``."""

    at_s: float
    venue: str
    fault: str
    args: dict[str, Any] = {}


def parse_fault(text: str) -> FaultAt:
    """``"2.5:okx:skip_sequence:symbol=BTC-USDT"`` -> ``FaultAt``; values are JSON if
    they parse as JSON (``seconds=0.5``, ``binary=true``), else strings."""
    parts = text.split(":", 3)
    if len(parts) < 3:
        raise ValueError(f"fault {text!r}: expected AT_S:VENUE:FAULT[:key=value,...]")
    args: dict[str, Any] = {}
    if len(parts) == 4 and parts[3]:
        for item in parts[3].split(","):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"fault {text!r}: argument {item!r} is not key=value")
            try:
                args[key] = json.loads(value)
            except ValueError:
                args[key] = value
    return FaultAt(float(parts[0]), parts[1], parts[2], args)


async def run_fault_plan(
    plan: Sequence[FaultAt], inject: Callable[[str, str, dict[str, Any]], Any]
) -> None:
    """Sleep until each fault is due and apply it; a failing fault is logged, not fatal."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    for item in sorted(plan, key=lambda f: f.at_s):
        delay = start + item.at_s - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            inject(item.venue, item.fault, dict(item.args))
            log.info("fault applied: %s %s %s", item.venue, item.fault, item.args)
        except Exception:
            log.exception("fault failed: %s %s %s", item.venue, item.fault, item.args)
