"""Open one WebSocket to a venue, with our own DNS + TCP step, and plain-language failures.

``open_ws`` resolves the host and connects the TCP socket itself (picows'
``socket_factory`` hook), so TCP_NODELAY and keepalive are set before the first
byte of the TLS handshake, each phase is timed, and a failure can say which phase
failed. Every failure becomes a ``ConnectError`` that names the venue and the
endpoint, says what happened in one line and, where there is one, gives a hint:

* DNS failure, refused connection, TCP timeout;
* certificate rejected, TLS failure, TLS handshake too slow;
* an HTTP answer instead of the upgrade: status, the headers that matter, a body
  excerpt and what the status usually means at a venue (403 geo-block, 429/418 rate
  limit or ban, 400 bad stream name, 5xx maintenance); ``Retry-After`` is kept
  for the backoff;
* ``101`` without a valid ``Sec-WebSocket-Accept`` (not a WebSocket server: a proxy,
  captive portal or load balancer answering for it).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from picows import WSHandshakeError, WSInvalidHeaderError, WSListener, WSTransport, ws_connect

from arbwire.net.sockopts import TcpOptions, apply_tcp_options
from arbwire.net.tls import session_info

AddrInfo = tuple[int, int, int, str, Any]
Resolver = Callable[[str, int], Awaitable[Sequence[AddrInfo]]]
"""``(host, port) -> getaddrinfo()``-style list; tests inject one (no DNS traffic)."""

#: headers worth showing from a rejected upgrade (lower case)
_SHOWN_HEADERS = (
    "retry-after", "server", "content-type", "location", "x-cache", "cf-ray", "via",
    "x-mbx-used-weight", "x-mbx-used-weight-1m", "x-amz-cf-pop", "x-amzn-errortype",
)

_HINTS = {
    400: "bad request: usually a malformed stream/topic name or query in the URL",
    401: "unauthorised: the endpoint wants credentials (wrong URL for public data?)",
    403: "forbidden: most often a geo-block (the venue refuses this country or IP range, "
         "e.g. Binance .com from the US) or a WAF rule; try a backup endpoint or another region",
    404: "not found: wrong path for this venue's WebSocket",
    410: "gone: this endpoint has been retired; check the venue's current URL",
    418: "IP banned after repeated rate-limit violations (Binance): wait out the ban",
    429: "rate limited: too many connection attempts from this IP "
         "(e.g. Binance 300 per 5 min, OKX 3 per s); backing off",
    451: "unavailable for legal reasons: a regional block",
    502: "bad gateway: the venue's front end could not reach its servers; retrying",
    503: "service unavailable: maintenance or overload; retrying (backup endpoint after repeats)",
    504: "gateway timeout at the venue's front end; retrying",
}


class ConnectError(Exception):
    """A connection attempt that failed; ``kind`` is one of dns, refused, timeout, tcp,
    certificate, tls, tls_timeout, http, upgrade, upgrade_timeout, closed."""

    def __init__(
        self,
        kind: str,
        venue: str,
        url: str,
        message: str,
        *,
        hint: str = "",
        status: int | None = None,
        headers: dict[str, str] | None = None,
        body: str = "",
        retry_after_s: float | None = None,
    ) -> None:
        self.kind = kind
        self.venue = venue
        self.url = url
        self.message = message
        self.hint = hint
        self.status = status
        self.headers = headers or {}
        self.body = body
        self.retry_after_s = retry_after_s
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.venue} {_short(self.url)}: {self.message}"
        return f"{text} (hint: {self.hint})" if self.hint else text


@dataclass(frozen=True, slots=True)
class ConnectTiming:
    """Milliseconds per phase of one successful connect."""

    dns_ms: float
    tcp_ms: float
    handshake_ms: float  # TLS (if any) + HTTP upgrade
    total_ms: float
    tls_version: str
    session_reused: bool


def _short(url: str, limit: int = 100) -> str:
    return url if len(url) <= limit else url[:limit] + "..."


async def _default_resolver(host: str, port: int) -> Sequence[AddrInfo]:
    loop = asyncio.get_running_loop()
    return await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: rare at venues; the backoff applies


def reapply_tcp_options(transport: WSTransport, tcp: TcpOptions) -> None:
    """Set the options again on a connected transport's socket (asyncio, uvloop and
    aiofastnet all force TCP_NODELAY on when they wrap a socket)."""
    sock = transport.underlying_transport.get_extra_info("socket")
    if sock is not None:
        apply_tcp_options(sock, tcp)


def describe_handshake_error(exc: WSHandshakeError, venue: str, url: str) -> ConnectError:
    """Turn picows' handshake error into status, headers, body excerpt and a hint."""
    response = exc.response
    raw_body = exc.raw_body or (response.body if response is not None and response.body else b"")
    body = raw_body[:300].decode("utf-8", "replace").strip()
    headers: dict[str, str] = {}
    status: int | None = None
    if response is not None:
        status = int(response.status)
        for name, value in response.headers.items():
            if name.lower() in _SHOWN_HEADERS:
                headers[name] = value
    if isinstance(exc, WSInvalidHeaderError) and status == 101:
        shown = f"{exc.name}: {exc.value!r}" if exc.value is not None else f"{exc.name} missing"
        return ConnectError(
            "upgrade", venue, url, f"HTTP 101 without a valid WebSocket upgrade ({shown})",
            hint="the peer is not speaking WebSocket: a proxy, captive portal or load balancer "
                 "answered in the venue's place",
            status=status, headers=headers, body=body,
        )
    if status is None:
        return ConnectError("upgrade", venue, url, f"malformed upgrade response: {exc}", body=body)
    shown = ", ".join(f"{k}: {v}" for k, v in headers.items())
    message = f"upgrade rejected with HTTP {status}"
    if shown:
        message += f" [{shown}]"
    if body:
        message += f" body: {body[:200]!r}"
    retry_after = _retry_after(headers.get("Retry-After") or headers.get("retry-after"))
    return ConnectError(
        "http", venue, url, message, hint=_HINTS.get(status, ""), status=status,
        headers=headers, body=body, retry_after_s=retry_after,
    )


async def open_ws(
    listener_factory: Callable[[], WSListener],
    url: str,
    *,
    venue: str,
    tcp: TcpOptions | None = None,
    ssl_context: ssl.SSLContext | None = None,
    connect_timeout_s: float = 10.0,
    handshake_timeout_s: float = 10.0,
    resolver: Resolver | None = None,
    use_aiofastnet: bool | None = None,
    max_frame_size: int = 64 * 1024 * 1024,
    extra_headers: Mapping[str, str] | None = None,
) -> tuple[WSTransport, WSListener, ConnectTiming]:
    """Connect, upgrade, and return (transport, listener, timing). Raises ``ConnectError``."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or ""
    tcp_opts = tcp or TcpOptions()
    resolve = resolver or _default_resolver
    loop = asyncio.get_running_loop()
    phase = "dns"
    marks = [time.perf_counter(), 0.0, 0.0]  # start, resolved, tcp connected

    async def socket_factory(parsed: Any) -> socket.socket:
        nonlocal phase
        try:
            infos = await asyncio.wait_for(resolve(parsed.host, parsed.port), connect_timeout_s)
        except TimeoutError:
            raise ConnectError("dns", venue, url, f"DNS lookup of {parsed.host} timed out",
                               hint="the resolver is not answering; check the network") from None
        except (socket.gaierror, OSError) as exc:
            raise ConnectError(
                "dns", venue, url, f"DNS lookup of {parsed.host} failed: {exc.strerror or exc}",
                hint="check the host name, the network and the resolver",
            ) from exc
        if not infos:
            raise ConnectError("dns", venue, url, f"DNS lookup of {parsed.host} returned no address")
        marks[1] = time.perf_counter()
        phase = "tcp"
        last: BaseException | None = None
        for family, type_, proto, _, addr in infos:
            sock = socket.socket(family, type_, proto)
            try:
                sock.setblocking(False)
                apply_tcp_options(sock, tcp_opts)
                await asyncio.wait_for(loop.sock_connect(sock, addr), connect_timeout_s)
            except (OSError, TimeoutError) as exc:
                sock.close()
                last = exc
                continue
            except BaseException:
                sock.close()
                raise
            marks[2] = time.perf_counter()
            phase = "handshake"
            return sock
        where = f"{parsed.host}:{parsed.port}"
        if isinstance(last, ConnectionRefusedError):
            raise ConnectError("refused", venue, url, f"connection refused by {where}",
                               hint="nothing listens there: wrong port, or the endpoint is down")
        if isinstance(last, TimeoutError):
            raise ConnectError("timeout", venue, url,
                               f"TCP connect to {where} timed out after {connect_timeout_s:g} s",
                               hint="a firewall dropping packets, or the host is down")
        raise ConnectError("tcp", venue, url, f"TCP connect to {where} failed: {last}")

    kwargs: dict[str, Any] = {}
    if secure:
        kwargs["ssl_handshake_timeout"] = handshake_timeout_s
    try:
        transport, listener = await ws_connect(
            listener_factory,
            url,
            ssl_context=ssl_context if secure else None,
            socket_factory=socket_factory,
            websocket_handshake_timeout=handshake_timeout_s,
            enable_auto_pong=True,
            max_frame_size=max_frame_size,
            use_aiofastnet=use_aiofastnet,
            extra_headers=extra_headers or None,
            **kwargs,
        )
    except ConnectError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise ConnectError(
            "certificate", venue, url,
            f"certificate of {host} rejected: {exc.verify_message or exc.reason}",
            hint="the server's certificate is not trusted (self-signed, expired, wrong host name, "
                 "or a TLS-intercepting proxy); fix the trust store, never turn verification off",
        ) from exc
    except ssl.SSLError as exc:
        raise ConnectError("tls", venue, url, f"TLS handshake with {host} failed: {exc.reason or exc}") from exc
    except WSHandshakeError as exc:
        raise describe_handshake_error(exc, venue, url) from exc
    except ConnectionAbortedError as exc:
        if "SSL handshake" in str(exc):
            raise ConnectError(
                "tls_timeout", venue, url,
                f"TLS handshake with {host} took longer than {handshake_timeout_s:g} s",
                hint="the server accepted TCP but did not complete TLS: overloaded, or a middlebox",
            ) from exc
        raise ConnectError("closed", venue, url, f"connection aborted during the {phase}: {exc}") from exc
    except TimeoutError as exc:
        raise ConnectError(
            "upgrade_timeout", venue, url,
            f"no WebSocket upgrade answer within {handshake_timeout_s:g} s",
            hint="the server accepted the connection but did not answer the HTTP upgrade",
        ) from exc
    except (ConnectionError, EOFError) as exc:
        raise ConnectError("closed", venue, url,
                           f"the server closed the connection during the {phase}: {exc or type(exc).__name__}") from exc
    except OSError as exc:
        raise ConnectError("tcp", venue, url, f"{phase} failed: {exc}") from exc
    end = time.perf_counter()
    # the event loop sets TCP_NODELAY on every transport it builds: put ours back
    reapply_tcp_options(transport, tcp_opts)
    start, resolved, connected = marks
    ssl_object = transport.underlying_transport.get_extra_info("ssl_object") if secure else None
    version, reused = session_info(ssl_object)
    timing = ConnectTiming(
        dns_ms=(resolved - start) * 1e3,
        tcp_ms=(connected - resolved) * 1e3,
        handshake_ms=(end - connected) * 1e3,
        total_ms=(end - start) * 1e3,
        tls_version=version,
        session_reused=reused,
    )
    return transport, listener, timing
