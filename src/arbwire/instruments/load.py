"""Fetch a venue's instrument list over REST, keep it on disk, and fall back to it.

A venue's REST can be down or rate-limiting exactly when arbwire restarts, and
the list changes rarely, so the last good answer is kept per venue (the raw
response(s) for audit plus the parsed list) and used when the fetch or parse
fails, with one plain log line saying how old it is. The file is written to a
temporary name and renamed, so a crash mid-write never leaves a torn cache.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import NamedTuple
from urllib.parse import quote

import msgspec

from arbwire.instruments.model import Instrument, InstrumentBook, Kind
from arbwire.instruments.parse import (
    parse_binance,
    parse_bybit,
    parse_bybit_page,
    parse_gateio,
    parse_htx,
    parse_okx,
)
from arbwire.net.rest import RestClient

log = logging.getLogger("arbwire.instruments")

CACHE_VERSION = 1
MAX_PAGES = 50  # Bybit linear: ~600 symbols at 1000 a page; a cursor loop must end


class InstrumentsError(RuntimeError):
    """Neither the venue nor the cache gave an instrument list; names venue, URL and cache."""


class _Source(NamedTuple):
    kind: Kind
    path: str
    parse: Callable[[bytes], list[Instrument]]
    paged: bool = False  # Bybit cursor pagination


SOURCES: dict[str, tuple[_Source, ...]] = {
    "binance": (_Source("spot", "/api/v3/exchangeInfo", parse_binance),),
    "bybit": (
        _Source("spot", "/v5/market/instruments-info?category=spot", parse_bybit),
        _Source(
            "perp", "/v5/market/instruments-info?category=linear&limit=1000", parse_bybit, True
        ),
    ),
    "okx": (
        _Source("spot", "/api/v5/public/instruments?instType=SPOT", parse_okx),
        _Source("perp", "/api/v5/public/instruments?instType=SWAP", parse_okx),
    ),
    "gateio": (_Source("spot", "/api/v4/spot/currency_pairs", parse_gateio),),
    "htx": (_Source("spot", "/v1/common/symbols", parse_htx),),
}


class CacheFile(msgspec.Struct, kw_only=True):
    """On-disk form: what was asked, when, the raw bodies, and what they parsed to."""

    version: int
    venue: str
    fetched_ns: int  # wall clock, for the age in the fallback log line
    urls: list[str]
    raw: list[str]
    instruments: list[Instrument]


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/arbwire/instruments``, else ``~/.cache/arbwire/instruments``."""
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "arbwire" / "instruments"


def cache_path(cache_dir: Path, venue: str, kinds: Collection[Kind]) -> Path:
    """One file per venue and set of kinds, e.g. ``bybit-perp-spot.json``."""
    return cache_dir / f"{venue}-{'-'.join(sorted(set(kinds)))}.json"


class _FetchFailed(Exception):
    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"GET {url}: {reason}")
        self.url = url


async def _get(venue: str, url: str, rest: RestClient) -> bytes:
    try:
        body, _ = await rest.get(venue, url)
    except Exception as exc:  # RestError, or anything a transport raises
        raise _FetchFailed(url, str(exc)) from exc
    return body


async def _fetch(
    venue: str, base: str, rest: RestClient, sources: Collection[_Source]
) -> tuple[list[str], list[str], list[Instrument]]:
    urls: list[str] = []
    raws: list[str] = []
    out: list[Instrument] = []
    for src in sources:
        url = base + src.path
        cursor = ""
        seen: set[str] = set()
        while True:
            page_url = f"{url}&cursor={quote(cursor, safe='')}" if cursor else url
            body = await _get(venue, page_url, rest)
            try:
                if src.paged:
                    page = parse_bybit_page(body)
                    found, cursor = page.instruments, page.next_cursor
                else:
                    found, cursor = src.parse(body), ""
                raws.append(body.decode("utf-8"))
            except ValueError as exc:  # InstrumentParseError, UnicodeDecodeError
                raise _FetchFailed(page_url, str(exc)) from exc
            urls.append(page_url)
            out.extend(i for i in found if i.kind == src.kind)
            if not cursor:
                break
            if cursor in seen or len(seen) >= MAX_PAGES:
                raise _FetchFailed(page_url, f"pagination did not end (cursor {cursor!r})")
            seen.add(cursor)
    if not out:
        raise _FetchFailed(urls[-1] if urls else base, "the venue listed no instruments")
    return urls, raws, out


def write_cache(path: Path, entry: CacheFile) -> None:
    """Atomically replace ``path``: write a temp file beside it, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(msgspec.json.encode(entry))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_cache(path: Path, venue: str) -> CacheFile:
    """The cache for ``venue``; ValueError saying plainly why it can't be used."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ValueError("no cached list") from None
    except OSError as exc:
        raise ValueError(f"unreadable: {exc.strerror}") from None
    try:
        entry = msgspec.json.decode(data, type=CacheFile)
    except msgspec.DecodeError as exc:
        raise ValueError(f"corrupt: {exc}") from None
    if entry.version != CACHE_VERSION or entry.venue != venue:
        raise ValueError(f"not a v{CACHE_VERSION} cache for {venue}")
    if not entry.instruments:
        raise ValueError("holds no instruments")
    return entry


def format_age(seconds: float) -> str:
    """``7260`` -> ``"2h 1m"``: short enough for a log line, exact enough to judge."""
    s = max(0, int(seconds))
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {s}s"
    return f"{s}s"


async def load_instruments(
    venue: str,
    rest_url: str,
    rest: RestClient,
    cache_dir: Path | None = None,
    *,
    kinds: Collection[Kind] | None = None,
) -> list[Instrument]:
    """``venue``'s instruments (spot and perpetual where it has both; ``kinds`` narrows).

    Fresh from ``rest_url`` when possible (and then cached); otherwise the cached
    list, with a warning naming its age; otherwise ``InstrumentsError``.
    """
    try:
        sources = SOURCES[venue]
    except KeyError:
        raise ValueError(
            f"no instrument list for venue {venue!r} (known: {', '.join(SOURCES)})"
        ) from None
    if kinds is not None:
        sources = tuple(s for s in sources if s.kind in kinds)
        if not sources:
            raise ValueError(f"{venue} lists no {'/'.join(sorted(kinds))} instruments")
    path = cache_path(cache_dir or default_cache_dir(), venue, [s.kind for s in sources])
    base = rest_url.rstrip("/")
    try:
        urls, raws, instruments = await _fetch(venue, base, rest, sources)
    except _FetchFailed as exc:
        failure = exc
    else:
        trading = sum(i.trading for i in instruments)
        log.info(
            "venue=%s %d instruments (%d trading) from %s", venue, len(instruments), trading, base
        )
        entry = CacheFile(
            version=CACHE_VERSION, venue=venue, fetched_ns=time.time_ns(),
            urls=urls, raw=raws, instruments=instruments,
        )  # fmt: skip
        try:
            await asyncio.to_thread(write_cache, path, entry)
        except OSError as exc:
            log.warning("venue=%s cannot write instrument cache %s: %s", venue, path, exc)
        return instruments

    try:
        cached = await asyncio.to_thread(read_cache, path, venue)
    except ValueError as exc:
        raise InstrumentsError(
            f"{venue}: no instrument list: {failure}; and cache {path}: {exc}"
        ) from failure
    age = format_age((time.time_ns() - cached.fetched_ns) / 1e9)
    fetched = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(cached.fetched_ns / 1e9))
    log.warning(
        "venue=%s instrument list fetch failed (%s); using cached data %s old (fetched %s) from %s",
        venue, failure, age, fetched, path,
    )  # fmt: skip
    return cached.instruments


async def load_book(
    rest_urls: Mapping[str, str], rest: RestClient, cache_dir: Path | None = None
) -> tuple[InstrumentBook, dict[str, InstrumentsError]]:
    """Every venue's list at once; a venue with neither REST nor cache is returned in the
    error map (and logged) instead of stopping the others."""
    names = list(rest_urls)
    results = await asyncio.gather(
        *(load_instruments(v, rest_urls[v], rest, cache_dir) for v in names), return_exceptions=True
    )
    book = InstrumentBook()
    errors: dict[str, InstrumentsError] = {}
    for venue, result in zip(names, results, strict=True):
        if isinstance(result, InstrumentsError):
            log.error("%s", result)
            errors[venue] = result
        elif isinstance(result, BaseException):
            raise result
        else:
            book.add(result)
    return book, errors
