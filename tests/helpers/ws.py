"""WebSocket and HTTP client plumbing for checking the simulators over real sockets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import aiohttp
import pytest

from arbwire.sim.runner import Simulators, start_simulators

CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)


def sims_fixture(*args: Any, **kwargs: Any) -> Any:
    """A ``sims`` fixture: ``start_simulators(*args, **kwargs)`` for each test, closed after it."""

    @pytest.fixture
    async def sims() -> AsyncIterator[Simulators]:
        s = await start_simulators(*args, **kwargs)
        yield s
        await s.close()

    return sims


async def receive_by(ws: aiohttp.ClientWebSocketResponse, end: float) -> aiohttp.WSMessage | None:
    """The next frame, or None once the loop clock passes ``end`` without one."""
    left = end - asyncio.get_running_loop().time()
    if left <= 0:
        return None
    try:
        return await ws.receive(timeout=left)
    except TimeoutError:
        return None


async def read_json(ws: aiohttp.ClientWebSocketResponse, seconds: float, *,
                    stop: Iterable[aiohttp.WSMsgType] | None = None) -> list[Any]:
    """Every text frame for ``seconds``, decoded with the stdlib. Reading ends early at the first
    frame that is not text, or with ``stop`` at one of those types (others are passed over)."""
    out: list[Any] = []
    end = asyncio.get_running_loop().time() + seconds
    while (msg := await receive_by(ws, end)) is not None:
        if msg.type == aiohttp.WSMsgType.TEXT:
            out.append(json.loads(msg.data))
        elif stop is None or msg.type in stop:
            break
    return out


def text_json(msg: aiohttp.WSMessage) -> Any:
    """A text frame's JSON (the frame must be text)."""
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def read_until(ws: aiohttp.ClientWebSocketResponse, pred: Callable[[Any], bool], seconds: float = 2.0,
                     *, parse: Callable[[aiohttp.WSMessage], Any] = text_json) -> list[Any]:
    """Frames (decoded with ``parse``) up to the first that ``pred`` accepts, within ``seconds``."""
    out: list[Any] = []
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while (left := end - loop.time()) > 0:
        out.append(parse(await ws.receive(timeout=left)))
        if pred(out[-1]):
            return out
    raise AssertionError("condition not met in time")


async def drain(ws: aiohttp.ClientWebSocketResponse, timeout: float) -> AsyncIterator[aiohttp.WSMessage]:
    """Frames up to and including the first that is not text (a close); each within ``timeout``."""
    while True:
        msg = await ws.receive(timeout=timeout)
        yield msg
        if msg.type != aiohttp.WSMsgType.TEXT:
            return
