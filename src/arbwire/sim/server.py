"""What every simulated venue shares: a picows WebSocket listener, an aiohttp REST app,
the set of live links, periodic housekeeping, and the generic faults.

A venue module subclasses ``VenueServer`` and supplies its URL routing, REST routes,
the frames it publishes for each model step, and its own timeouts. Faults are plain
methods listed in ``faults``; ``inject(name, **kwargs)`` dispatches to them so a run
config can name them, and a subclass adds a fault by writing a method and adding its
name to the set.

The small helpers below (JSON out, late REST answers, pong bookkeeping, the
housekeeping rate) are here because every venue needs them the same way; a venue
module should hold only what its protocol does differently.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Hashable
from typing import Any, ClassVar

import msgspec
from aiohttp import web
from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    WSUpgradeResponse,
    WSUpgradeResponseWithListener,
    ws_create_server,
)

from arbwire.sim.market import MarketModel, SimTrade, Step

log = logging.getLogger("arbwire.sim")

RouteResult = WSListener | WSUpgradeResponseWithListener | None

encode = msgspec.json.Encoder().encode
"""JSON bytes for frames and REST bodies (``msgspec.Raw`` values go out verbatim)."""


class FaultError(ValueError):
    """A fault that does not exist on this venue, or cannot apply in its current mode."""


class Link:
    """One client WebSocket as the server sees it, with its own venue state in ``state``."""

    __slots__ = ("id", "transport", "opened", "last_in", "last_out", "state")

    def __init__(self, link_id: int, transport: WSTransport, now: float, state: Any) -> None:
        self.id = link_id
        self.transport = transport
        self.opened = now
        self.last_in = now
        self.last_out = now
        self.state = state


class LinkListener(WSListener):
    """Routes one connection's frames to its server; handles the close handshake."""

    def __init__(self, server: VenueServer, state: Any) -> None:
        self._server = server
        self._state = state
        self.link: Link | None = None

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.link = self._server._register(transport, self._state)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        link = self.link
        if link is None:
            return
        link.last_in = self._server.clock()
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif kind == WSMsgType.TEXT or kind == WSMsgType.BINARY:
            self._server.on_text(link, frame.get_payload_as_bytes())
        elif kind == WSMsgType.PONG:
            self._server.on_pong(link, frame.get_payload_as_bytes())

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if self.link is not None:
            self._server._unregister(self.link)


def reject(
    status: int, body: bytes, content_type: str | None = None
) -> WSUpgradeResponseWithListener:
    """An HTTP error instead of the WebSocket upgrade (e.g. a malformed stream in the URL).
    Without ``content_type`` the body goes out as ``text/plain``."""
    headers = {"Content-Type": content_type} if content_type else None
    return WSUpgradeResponseWithListener(
        WSUpgradeResponse.create_error_response(status, body, headers), None
    )


def ws_path(request: WSUpgradeRequest) -> str:
    """The upgrade request's path without query and trailing ``/`` (``/ws/v5/public``)."""
    return request.path.decode("latin-1").split("?")[0].rstrip("/")


def json_response(body: Any, status: int = 200) -> web.Response:
    """A REST answer with a JSON body."""
    return web.Response(status=status, body=encode(body), content_type="application/json")


async def respond_late(response: web.Response, delay_s: float) -> web.Response:
    """Send ``response`` ``delay_s`` late: it was made at the request, so it holds the book
    as of then, and the client sees stream frames newer than its snapshot first."""
    if delay_s > 0:
        await asyncio.sleep(delay_s)
    return response


def answer_pings(pings: dict[Any, float], key: Hashable) -> bool:
    """A pong answers its ping and every older one (``pings``: ping -> sent at).
    False for an unsolicited or stale pong, which answers nothing."""
    sent = pings.get(key)
    if sent is None:
        return False
    for old in [k for k, t in pings.items() if t <= sent]:
        del pings[old]
    return True


def housekeeping_every(*timers_s: float) -> float:
    """A quarter of the shortest timer, within 10 ms .. 1 s: no timeout fires more than
    a quarter late, and an idle simulator does not spin."""
    return min(1.0, max(0.01, min(timers_s) / 4))


class VenueServer:
    """Base class of the venue simulators. Start with ``await start()``; stop with ``close()``.

    ``options`` is an instance of the venue's ``options_type`` (its defaults when None);
    ``venue`` renames the instance (the model's name for its books)."""

    venue: str = ""  # the model's name for this venue (an instance may rename it)
    options_type: ClassVar[type] = object  # the venue's frozen options dataclass
    faults: ClassVar[frozenset[str]] = frozenset(
        {"skip_sequence", "drop_connections", "stall", "resume", "send_raw", "skew_clock"}
    )

    def __init__(
        self,
        model: MarketModel,
        *,
        host: str = "127.0.0.1",
        seed: int = 1,
        options: Any = None,
        venue: str | None = None,
    ) -> None:
        if venue is not None:
            self.venue = venue
        self.options: Any = options if options is not None else self.options_type()
        self.model = model
        self.host = host
        self.rng = random.Random(f"{self.venue}:{seed}")  # the server's own ids; not the model's
        self.links: dict[int, Link] = {}
        self.stalled = False
        self.clock_skew_ns = 0  # the venue's clock against ours (``skew_clock``)
        self.ws_port = 0
        self.rest_port = 0
        self._next_link_id = 1
        self._skip: set[str] = set()
        self._ws_server: asyncio.Server | None = None
        self._rest_runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: list[asyncio.TimerHandle] = []

    # ----- lifecycle -----

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.ws_port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_port}"

    @staticmethod
    def clock() -> float:
        return time.monotonic()

    def venue_ns(self) -> int:
        """The venue's wall clock, which every timestamp it sends comes from: ours plus
        ``clock_skew_ns``."""
        return time.time_ns() + self.clock_skew_ns

    async def start(self, ws_port: int = 0, rest_port: int = 0) -> None:
        self._ws_server = await ws_create_server(
            self._route_upgrade, self.host, ws_port, enable_auto_pong=True
        )
        self.ws_port = self._ws_server.sockets[0].getsockname()[1]
        app = web.Application()
        app.add_routes(self.rest_routes())
        self._rest_runner = web.AppRunner(app, access_log=None)
        await self._rest_runner.setup()
        site = web.TCPSite(self._rest_runner, self.host, rest_port)
        await site.start()
        self.rest_port = self._rest_runner.addresses[0][1]
        self._tasks.append(asyncio.create_task(self._housekeeping_loop()))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for timer in self._timers:
            timer.cancel()
        self.drop_connections()
        if self._ws_server is not None:
            self._ws_server.close()
            await self._ws_server.wait_closed()
        if self._rest_runner is not None:
            await self._rest_runner.cleanup()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _route_upgrade(self, request: WSUpgradeRequest) -> RouteResult:
        try:
            return self.route(request)
        except Exception:  # a bad URL must never take the listener down
            log.exception("%s: upgrade routing failed for %r", self.venue, request.path)
            return reject(400, b"bad request")

    def _register(self, transport: WSTransport, state: Any) -> Link:
        link = Link(self._next_link_id, transport, self.clock(), state)
        self._next_link_id += 1
        self.links[link.id] = link
        self.on_connect(link)
        return link

    def _unregister(self, link: Link) -> None:
        self.links.pop(link.id, None)

    async def _housekeeping_loop(self) -> None:
        period = self.housekeeping_period()
        while True:
            await asyncio.sleep(period)
            if self.stalled:
                continue
            try:
                self.housekeep(self.clock())
            except Exception:
                log.exception("%s: housekeeping failed", self.venue)

    def later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` after a delay; cancelled on close."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        self._timers = [t for t in self._timers if not t.cancelled() and t.when() > now]
        self._timers.append(loop.call_later(delay_s, fn))

    def trades_by_symbol(self, step: Step) -> dict[str, list[SimTrade]]:
        """This venue's fills in ``step``, per symbol, in the order they happened."""
        trades: dict[str, list[SimTrade]] = {}
        for trade in step.trades:
            if trade.venue == self.venue:
                trades.setdefault(trade.symbol, []).append(trade)
        return trades

    # ----- sending -----

    def send(self, link: Link, payload: bytes) -> None:
        """A text frame to one link, unless the venue is stalled."""
        self._send_frame(link, WSMsgType.TEXT, payload)

    def _send_frame(self, link: Link, kind: WSMsgType, data: bytes) -> None:
        if self.stalled:
            return
        link.transport.send(kind, data)
        link.last_out = self.clock()

    def close_link(self, link: Link, code: WSCloseCode, reason: bytes) -> None:
        """Start the close handshake; the socket goes when the client answers (or in 1 s)."""
        link.transport.send_close(code, reason)
        self.later(1.0, link.transport.disconnect)

    def close_later(self, links: list[Link], delay_s: float, reason: bytes) -> None:
        """Close ``links`` (1001 going away) after ``delay_s``: the end of a restart or
        upgrade the venue announced to them."""

        def close() -> None:
            for link in links:
                self.close_link(link, WSCloseCode.GOING_AWAY, reason)

        self.later(delay_s, close)

    # ----- generic faults -----

    def inject(self, fault: str, **kwargs: Any) -> Any:
        """Apply a fault by name (for run configs); raises ``FaultError`` if unknown."""
        if fault not in self.faults:
            raise FaultError(f"{self.venue}: no fault {fault!r}; known: {sorted(self.faults)}")
        return getattr(self, fault)(**kwargs)

    def skip_sequence(self, symbol: str) -> None:
        """The next book diff for ``symbol`` is produced (ids advance) but not sent."""
        self._check_symbol(symbol)
        self._skip.add(symbol)

    def take_skip(self, symbol: str) -> bool:
        if symbol in self._skip:
            self._skip.discard(symbol)
            return True
        return False

    def skew_clock(self, ms: float) -> None:
        """From now on the venue's clock runs ``ms`` ahead of ours (behind if negative):
        every timestamp it sends, events and REST server time alike, carries the skew."""
        self.clock_skew_ns = int(ms * 1_000_000)

    def drop_connections(self) -> int:
        """Abruptly close every link (TCP abort, no close frame). Returns how many."""
        links = list(self.links.values())
        for link in links:
            link.transport.disconnect(graceful=False)
        return len(links)

    def stall(self, seconds: float | None = None) -> None:
        """Stop sending anything (data, pings, replies) but keep the sockets open.
        With ``seconds``, resume by itself after that long."""
        self.stalled = True
        if seconds is not None:
            self.later(seconds, self.resume)

    def resume(self) -> None:
        """End a stall. Diffs produced meanwhile are lost, so clients see a gap."""
        self.stalled = False
        now = self.clock()
        for link in self.links.values():
            link.last_out = now  # the stall is not the client's idleness

    def send_raw(self, payload: bytes | str, binary: bool = False) -> int:
        """Push an arbitrary frame (e.g. malformed JSON) to every link, even when stalled."""
        data = payload.encode() if isinstance(payload, str) else payload
        kind = WSMsgType.BINARY if binary else WSMsgType.TEXT
        for link in self.links.values():
            link.transport.send(kind, data)
        return len(self.links)

    def _check_symbol(self, symbol: str) -> None:
        if symbol not in self.model.instruments:
            raise FaultError(f"{self.venue}: unknown symbol {symbol!r}")

    # ----- venue hooks -----

    def route(self, request: WSUpgradeRequest) -> RouteResult:
        """Map an upgrade request's path to a listener, an HTTP error, or None (404)."""
        raise NotImplementedError

    def rest_routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def on_connect(self, link: Link) -> None:
        """Called once the WebSocket is up (e.g. to send data for URL-named streams)."""

    def on_text(self, link: Link, payload: bytes) -> None:
        raise NotImplementedError

    def on_pong(self, link: Link, payload: bytes) -> None:
        """A WebSocket pong frame from the client."""

    def publish(self, step: Step, now_ns: int) -> None:
        """Turn one model step into frames; always advance sequence ids, even unheard."""
        raise NotImplementedError

    def housekeeping_period(self) -> float:
        return 1.0

    def housekeep(self, now: float) -> None:
        """Timeouts and keepalives; not called while stalled."""
