"""load_instruments against a real aiohttp server on 127.0.0.1: fetch, cache, fall back.

The server serves the real Binance/Gate/HTX instrument lists, then fails (503,
garbage, connection refused), and the cached list must come back with a plain
log line saying how old it is. Bybit's cursor pagination and OKX's two lists
are served in the documented shapes.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest
from aiohttp import web

from arbwire.instruments import InstrumentsError, load_book, load_instruments
from arbwire.instruments.load import CacheFile, cache_path, read_cache, write_cache
from arbwire.net.rest import RestClient
from test_instruments_parse import (
    bybit_body,
    bybit_linear,
    bybit_spot,
    okx_body,
    okx_spot,
    okx_swap,
)
from test_instruments_real import _read


@dataclass
class Venue:
    """What the local server answers: ``bodies`` by path+query, or ``status`` for everything."""

    bodies: dict[str, bytes] = field(default_factory=dict)
    status: int = 200
    hits: list[str] = field(default_factory=list)


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, Venue]]:
    venue = Venue()

    async def handle(request: web.Request) -> web.Response:
        venue.hits.append(request.path_qs)
        if venue.status != 200:
            return web.Response(status=venue.status, text="Service Unavailable")
        body = venue.bodies.get(request.path_qs)
        if body is None:
            return web.Response(status=404, text=f"no {request.path_qs}")
        return web.Response(body=body, content_type="application/json")

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}", venue
    finally:
        await runner.cleanup()


@pytest.fixture
async def rest() -> AsyncIterator[RestClient]:
    client = RestClient(timeout_s=5.0)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture(scope="module")
def binance_body(real_data: Path) -> bytes:
    return _read(real_data / "cryptofeed" / "BINANCE.0")[1]


async def test_fetch_then_503_uses_cache(
    server: tuple[str, Venue], rest: RestClient, tmp_path: Path, binance_body: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    url, venue = server
    venue.bodies["/api/v3/exchangeInfo"] = binance_body
    fresh = await load_instruments("binance", url, rest, tmp_path)
    assert len(fresh) == 1695
    path = cache_path(tmp_path, "binance", ["spot"])
    assert path == tmp_path / "binance-spot.json"
    cached = read_cache(path, "binance")
    assert cached.raw == [binance_body.decode()]
    assert cached.urls == [f"{url}/api/v3/exchangeInfo"]
    assert cached.instruments == fresh
    assert sorted(os.listdir(tmp_path)) == ["binance-spot.json"]  # no temp file left behind

    venue.status = 503
    caplog.set_level(logging.WARNING, "arbwire.instruments")
    again = await load_instruments("binance", url, rest, tmp_path)
    assert again == fresh
    assert venue.hits == ["/api/v3/exchangeInfo"] * 2
    (line,) = [r.getMessage() for r in caplog.records]
    assert line.startswith("venue=binance instrument list fetch failed (GET ")
    assert "HTTP 503" in line and "using cached data 0s old" in line and str(path) in line


async def test_cache_age_is_reported(
    server: tuple[str, Venue], rest: RestClient, tmp_path: Path, binance_body: bytes,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    url, venue = server
    venue.bodies["/api/v3/exchangeInfo"] = binance_body
    await load_instruments("binance", url, rest, tmp_path)
    path = cache_path(tmp_path, "binance", ["spot"])
    entry = read_cache(path, "binance")
    entry.fetched_ns = time.time_ns() - (2 * 3600 + 5 * 60 + 3) * 1_000_000_000
    write_cache(path, entry)
    venue.bodies.clear()  # now a 404
    caplog.set_level(logging.WARNING, "arbwire.instruments")
    assert len(await load_instruments("binance", url, rest, tmp_path)) == 1695
    assert "using cached data 2h 5m old" in caplog.records[0].getMessage()
    assert "HTTP 404" in caplog.records[0].getMessage()


async def test_garbage_body_falls_back(
    server: tuple[str, Venue], rest: RestClient, tmp_path: Path, real_data: Path
) -> None:
    url, venue = server
    _, htx, _ = _read(real_data / "cryptofeed" / "HUOBI.0")
    venue.bodies["/v1/common/symbols"] = htx
    fresh = await load_instruments("htx", url, rest, tmp_path)
    venue.bodies["/v1/common/symbols"] = b"<html>maintenance</html>"
    assert await load_instruments("htx", url, rest, tmp_path) == fresh
    venue.bodies["/v1/common/symbols"] = b'{"status":"ok","data":[]}'  # empty list: not believed
    assert await load_instruments("htx", url, rest, tmp_path) == fresh


async def test_connection_refused_falls_back(tmp_path: Path, rest: RestClient, real_data: Path) -> None:
    _, gate, _ = _read(real_data / "cryptofeed" / "GATEIO.0")

    async def pairs(_: web.Request) -> web.Response:
        return web.Response(body=gate)

    app = web.Application()
    app.router.add_get("/api/v4/spot/currency_pairs", pairs)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    host, port = runner.addresses[0][:2]
    url = f"http://{host}:{port}"
    fresh = await load_instruments("gateio", url, rest, tmp_path)
    await runner.cleanup()  # nothing listens there now
    await rest.close()
    assert await load_instruments("gateio", url, rest, tmp_path) == fresh
    assert len(fresh) == 1458


async def test_no_rest_no_cache_names_venue_and_url(
    server: tuple[str, Venue], rest: RestClient, tmp_path: Path
) -> None:
    url, venue = server
    venue.status = 503
    with pytest.raises(InstrumentsError) as info:
        await load_instruments("gateio", url, rest, tmp_path)
    text = str(info.value)
    assert text.startswith(f"gateio: no instrument list: GET {url}/api/v4/spot/currency_pairs: ")
    assert "HTTP 503" in text and text.endswith("gateio-spot.json: no cached list")


async def test_corrupt_cache(
    server: tuple[str, Venue], rest: RestClient, tmp_path: Path, binance_body: bytes
) -> None:
    url, venue = server
    path = cache_path(tmp_path, "binance", ["spot"])
    path.write_bytes(b'{"version":1,"venue":"binance","fetched_ns":1,"urls":[],"raw":["x"],"instr')
    venue.status = 503
    with pytest.raises(InstrumentsError, match=r"binance: no instrument list: .*HTTP 503.*: corrupt: "):
        await load_instruments("binance", url, rest, tmp_path)
    # another venue's file under this name is not used either
    write_cache(path, CacheFile(version=1, venue="okx", fetched_ns=1, urls=[], raw=[], instruments=[]))
    with pytest.raises(InstrumentsError, match="not a v1 cache for binance"):
        await load_instruments("binance", url, rest, tmp_path)
    # a good fetch replaces the bad cache
    venue.status = 200
    venue.bodies["/api/v3/exchangeInfo"] = binance_body
    fresh = await load_instruments("binance", url, rest, tmp_path)
    assert read_cache(path, "binance").instruments == fresh


async def test_failed_cache_write_keeps_old_cache(
    server: tuple[str, Venue], rest: RestClient, tmp_path: Path, binance_body: bytes,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    url, venue = server
    venue.bodies["/api/v3/exchangeInfo"] = binance_body
    await load_instruments("binance", url, rest, tmp_path)
    path = cache_path(tmp_path, "binance", ["spot"])
    before = path.read_bytes()

    def no_rename(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_rename)
    caplog.set_level(logging.WARNING, "arbwire.instruments")
    assert len(await load_instruments("binance", url, rest, tmp_path)) == 1695  # still served
    assert "cannot write instrument cache" in caplog.records[0].getMessage()
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["binance-spot.json"]


async def test_bybit_paginates_linear(server: tuple[str, Venue], rest: RestClient, tmp_path: Path) -> None:
    url, venue = server
    cursor = "first%3D500%26last%3D999"  # Bybit cursors are themselves url-encoded text
    base = "/v5/market/instruments-info?category="
    venue.bodies[f"{base}spot"] = bybit_body("spot", [bybit_spot("BTCUSDT", "BTC", "USDT", "0.01", "0.000001", "0.000048")])
    venue.bodies[f"{base}linear&limit=1000"] = bybit_body(
        "linear", [bybit_linear("BTCUSDT", "BTC", "USDT", "0.10", "0.001")], cursor=cursor
    )
    venue.bodies[f"{base}linear&limit=1000&cursor=first%253D500%2526last%253D999"] = bybit_body(
        "linear", [bybit_linear("ETHUSDT", "ETH", "USDT", "0.01", "0.01")]
    )
    insts = await load_instruments("bybit", url, rest, tmp_path)
    assert [(i.symbol, i.venue_symbol, i.kind) for i in insts] == [
        ("BTC-USDT", "BTCUSDT", "spot"),
        ("BTC-USDT-PERP", "BTCUSDT", "perp"),
        ("ETH-USDT-PERP", "ETHUSDT", "perp"),
    ]
    assert len(venue.hits) == 3
    assert len(read_cache(tmp_path / "bybit-perp-spot.json", "bybit").raw) == 3
    spot_only = await load_instruments("bybit", url, rest, tmp_path, kinds=["spot"])
    assert [i.symbol for i in spot_only] == ["BTC-USDT"]
    assert (tmp_path / "bybit-spot.json").exists()

    # a cursor that never ends is a failure, not a hang
    venue.bodies[f"{base}linear&limit=1000&cursor=first%253D500%2526last%253D999"] = venue.bodies[
        f"{base}linear&limit=1000"
    ]
    (tmp_path / "bybit-perp-spot.json").unlink()
    with pytest.raises(InstrumentsError, match="pagination did not end"):
        await load_instruments("bybit", url, rest, tmp_path)


async def test_load_book_runs_the_rest(
    server: tuple[str, Venue], rest: RestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, venue = server
    venue.bodies["/api/v5/public/instruments?instType=SPOT"] = okx_body([okx_spot("BTC-USDT", "0.1", "0.00000001", "0.00001")])
    venue.bodies["/api/v5/public/instruments?instType=SWAP"] = okx_body([okx_swap("BTC-USDT-SWAP", "0.1", "0.01", "0.01")])
    caplog.set_level(logging.WARNING, "arbwire")
    book, errors = await load_book({"okx": url, "htx": url}, rest, tmp_path)  # htx: 404, no cache
    assert list(errors) == ["htx"] and "htx: no instrument list" in str(errors["htx"])
    assert [i.symbol for i in book.of("okx")] == ["BTC-USDT", "BTC-USDT-PERP"]
    assert book.check("okx", ["BTC-USDT", "BTC-USDT-PERP", "ETH-USDT"]) == (["BTC-USDT", "BTC-USDT-PERP"], ["ETH-USDT"])
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("htx: no instrument list: GET ")
    assert messages[1] == "venue=okx does not list ETH-USDT; running without it"


async def test_unknown_venue(rest: RestClient, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no instrument list for venue 'kraken'"):
        await load_instruments("kraken", "http://127.0.0.1:9", rest, tmp_path)
    with pytest.raises(ValueError, match="binance lists no perp"):
        await load_instruments("binance", "http://127.0.0.1:9", rest, tmp_path, kinds=["perp"])


def test_cache_file_is_plain_json(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.json"
    write_cache(path, CacheFile(version=1, venue="x", fetched_ns=5, urls=["u"], raw=["{}"], instruments=[]))
    assert msgspec.json.decode(path.read_bytes())["raw"] == ["{}"]
    with pytest.raises(ValueError, match="holds no instruments"):
        read_cache(path, "x")
