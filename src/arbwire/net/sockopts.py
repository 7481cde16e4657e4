"""TCP options every venue link gets: no Nagle delay, and keepalive that notices a dead peer."""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TcpOptions:
    nodelay: bool = True
    keepalive: bool = True
    keepidle_s: int = 10  # idle time before the first probe
    keepintvl_s: int = 5  # between probes
    keepcnt: int = 3  # unanswered probes before the kernel drops the link


def apply_tcp_options(sock: socket.socket, opts: TcpOptions) -> None:
    """Set the options on a connected TCP socket (no-op for non-TCP sockets)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if opts.nodelay else 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1 if opts.keepalive else 0)
    if opts.keepalive:
        for name, value in (
            ("TCP_KEEPIDLE", opts.keepidle_s),
            ("TCP_KEEPINTVL", opts.keepintvl_s),
            ("TCP_KEEPCNT", opts.keepcnt),
        ):
            if hasattr(socket, name):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


def read_tcp_options(sock: socket.socket) -> dict[str, int]:
    """The options as the kernel reports them (for tests and diagnostics)."""
    out = {
        "nodelay": sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
        "keepalive": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    }
    for name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"):
        if hasattr(socket, name):
            out[name.lower()[4:]] = sock.getsockopt(socket.IPPROTO_TCP, getattr(socket, name))
    return out
