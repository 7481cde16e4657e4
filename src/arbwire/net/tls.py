"""Client TLS for venue links: certificate and host name verified, TLS 1.2 at least
(1.3 whenever the venue offers it), and optional session resumption.

Resumption: asyncio's ``create_connection`` takes no session, but every TLS
implementation that goes through ``SSLContext.wrap_bio`` (asyncio, uvloop, and
aiofastnet's stdlib fallback engine) can be handed one there, which is what
``ResumingContext`` does. aiofastnet's default (direct OpenSSL) engine builds its
``SSL*`` straight from the context and never calls ``wrap_bio``, so a resuming
context also sets aiofastnet's ``_aiofastnet_force_fallback_ssl``. With TLS 1.3 the
session ticket arrives after the handshake, so the link saves the session after the
first frame (``save_from``). Measured costs and the default: docs/benchmarks.md.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any

log = logging.getLogger("arbwire.net")


class ResumingContext(ssl.SSLContext):
    """A client context that offers the last saved session of the same host name."""

    sessions: dict[str, ssl.SSLSession]
    offered: int
    saved: int

    def wrap_bio(  # type: ignore[override]
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        if session is None and not server_side and server_hostname is not None:
            host = server_hostname.decode() if isinstance(server_hostname, bytes) else server_hostname
            session = self.sessions.get(host)
            if session is not None:
                self.offered += 1
        return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session=session)

    def save_from(self, host: str, ssl_object: Any) -> bool:
        """Keep the connection's session for the next connect to ``host``, once it holds a
        ticket (TLS 1.3 sends it after the handshake). Returns True when saved."""
        session = getattr(ssl_object, "session", None)
        if session is None or not session.has_ticket:
            return False
        self.sessions[host] = session
        self.saved += 1
        return True


def client_context(
    *,
    verify: bool = True,
    cafile: str | None = None,
    session_reuse: bool = False,
    minimum_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2,
) -> ssl.SSLContext:
    """The context every ``wss://`` link uses unless the caller passes its own.

    ``verify=False`` exists for diagnostics only and is logged loudly; ``cafile`` adds
    a private CA (tests, a corporate TLS proxy) instead of the system store.
    """
    ctx: ssl.SSLContext
    if session_reuse:
        rctx = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
        rctx.sessions = {}
        rctx.offered = 0
        rctx.saved = 0
        rctx._aiofastnet_force_fallback_ssl = True  # type: ignore[attr-defined]
        ctx = rctx
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = minimum_version
    if verify:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if cafile is not None:
            ctx.load_verify_locations(cafile=cafile)
        else:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
    else:
        log.warning("TLS certificate verification is OFF: anyone on the path can read and forge market data")
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def session_info(ssl_object: Any) -> tuple[str, bool]:
    """(protocol version, whether the session was resumed) of a connected TLS object."""
    if ssl_object is None:
        return "", False
    version = ssl_object.version() or ""
    reused = bool(getattr(ssl_object, "session_reused", False))
    return version, reused
