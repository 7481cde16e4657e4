"""A misbehaving WebSocket endpoint for connection tests: it answers the HTTP upgrade
the way a broken, blocked or overloaded venue would.

Modes (``FaultyServer.mode``, changeable while it runs):

* ``status``: an HTTP error instead of the upgrade (``status``, ``headers``, ``body``),
  e.g. 403 geo-block, 429 with ``Retry-After``, 400 bad stream name, 503 maintenance;
* ``bad_accept``: ``101 Switching Protocols`` with a wrong ``Sec-WebSocket-Accept``;
* ``silent``: accept the TCP connection and never answer (with a TLS client this is a
  TLS handshake that never completes; without, an upgrade that never comes);
* ``slow_tls``: complete the TLS handshake only after ``delay_s``, then reject;
* ``close``: accept and close at once.

Every accepted TCP connection is counted in ``attempts``. Loopback only.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field

from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

from arbwire.sim.teardown import abort_all, stop_listening


@dataclass(slots=True)
class FaultyServer:
    mode: str = "status"
    status: int = 503
    reason: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0
    ssl_context: ssl.SSLContext | None = None  # the server side of TLS, when set
    host: str = "127.0.0.1"
    port: int = 0
    attempts: int = 0
    _server: asyncio.Server | None = None
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl_context is not None else "ws"
        return f"{scheme}://{self.host}:{self.port}"

    async def start(self) -> FaultyServer:
        # TLS is started by hand so ``slow_tls`` can hold the handshake back
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        abort_all(self._writers)
        await stop_listening(self._server)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.attempts += 1
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError, OSError, asyncio.CancelledError):
            pass  # the client gave up or the server is closing: nothing to report
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        mode = self.mode
        if mode == "close":
            return
        if mode == "silent":
            await asyncio.sleep(3600)
            return
        if self.ssl_context is not None:
            if mode == "slow_tls":
                await asyncio.sleep(self.delay_s)
            await writer.start_tls(self.ssl_context)
        await reader.readuntil(b"\r\n\r\n")  # the upgrade request; the mode decides the answer
        if mode == "bad_accept":
            writer.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: dGhpcyBpcyBub3QgdGhlIGtleQ==\r\n\r\n"
            )
        else:
            reason = self.reason or _REASONS.get(self.status, "Error")
            head = [f"HTTP/1.1 {self.status} {reason}", f"Content-Length: {len(self.body)}", "Connection: close"]
            head += [f"{k}: {v}" for k, v in self.headers.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + self.body)
        await writer.drain()
        await asyncio.sleep(0.05)


_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    418: "I'm a teapot",
    429: "Too Many Requests",
    451: "Unavailable For Legal Reasons",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class _PushListener(WSListener):
    def __init__(self, server: PushServer) -> None:
        self.server = server

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.server.transports.add(transport)
        if self.server.hello is not None:
            transport.send(WSMsgType.TEXT, self.server.hello)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.PING:
            self.server.pings += 1
        elif frame.msg_type is WSMsgType.TEXT:
            payload = frame.get_payload_as_bytes()
            if self.server.echo:
                transport.send(WSMsgType.TEXT, payload)
            elif len(self.server.received) < 10_000:
                self.server.received.append(payload)
        elif frame.msg_type is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.server.transports.discard(transport)


class PushServer:
    """A WebSocket endpoint that pushes ``payload`` to every client each ``interval_s``.

    With ``answer_pings=False`` it never answers a ping frame (a half-dead peer: data
    still flows, the control path does not). Optional TLS via ``ssl_context``.
    Records the text frames it receives (``received``) or echoes them (``echo``), and
    counts pings.
    """

    def __init__(
        self,
        payload: bytes = b"{}",
        *,
        interval_s: float = 0.05,
        answer_pings: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        hello: bytes | None = None,
        echo: bool = False,
    ) -> None:
        self.payload = payload
        self.hello = hello  # sent once to each new client
        self.echo = echo  # send every text frame back instead of recording it
        self.interval_s = interval_s
        self.answer_pings = answer_pings
        self.ssl_context = ssl_context
        self.host = host
        self.port = 0
        self.transports: set[WSTransport] = set()
        self.pings = 0
        self.received: list[bytes] = []
        self._server: asyncio.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"{'wss' if self.ssl_context else 'ws'}://{self.host}:{self.port}"

    async def start(self) -> PushServer:
        kwargs = {"ssl": self.ssl_context} if self.ssl_context is not None else {}
        self._server = await ws_create_server(
            lambda request: _PushListener(self), self.host, 0,
            enable_auto_pong=self.answer_pings, **kwargs,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if self.interval_s > 0:
            self._task = asyncio.create_task(self._push())
        return self

    async def _push(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            for transport in list(self.transports):
                transport.send(WSMsgType.TEXT, self.payload)

    def drop_all(self) -> int:
        transports = list(self.transports)
        for transport in transports:
            transport.disconnect(graceful=False)
        return len(transports)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.drop_all()
        await stop_listening(self._server)
