"""Ending the plain-asyncio loopback endpoints (``FaultyServer``, ``TlsRelay``).

Tests stop them mid-connection on purpose, so teardown aborts rather than closes
(no TLS close_notify, no FIN to wait for) and never fails the test for it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable


def abort_all(writers: Iterable[asyncio.StreamWriter]) -> int:
    """Abort every connection at once (TCP reset); returns how many."""
    aborted = list(writers)  # aborting may remove a writer from the caller's set
    for writer in aborted:
        writer.transport.abort()
    return len(aborted)


async def stop_listening(server: asyncio.Server | None) -> None:
    """Close the listening socket and wait for it; errors on the way are not the test's."""
    if server is not None:
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()
