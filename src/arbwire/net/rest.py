"""REST GETs for snapshots and instrument lists (aiohttp), off the hot path."""

from __future__ import annotations

import time

import aiohttp


class RestError(RuntimeError):
    """A REST call that failed; names the venue and URL, with status and a body excerpt."""


class RestClient:
    """One aiohttp session shared by every venue (connection reuse, TCP_NODELAY by default)."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def get(self, venue: str, url: str) -> tuple[bytes, int]:
        """GET ``url``; returns (body, receive time ns). Raises RestError on any failure."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        try:
            async with self._session.get(url) as resp:
                body = await resp.read()
                recv_ns = time.time_ns()
                if resp.status != 200:
                    raise RestError(
                        f"{venue}: GET {url} -> HTTP {resp.status}: {body[:200].decode('utf-8', 'replace')}"
                    )
                return body, recv_ns
        except aiohttp.ClientError as exc:
            raise RestError(f"{venue}: GET {url} failed: {exc}") from exc
        except TimeoutError as exc:
            raise RestError(f"{venue}: GET {url} timed out") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
