"""One connection attempt, for real on loopback: socket options, TLS, and every way the
handshake can fail, each reported in plain words naming the venue and the endpoint."""

from __future__ import annotations

import socket
import ssl

import pytest
from picows import WSListener

from arbwire.net.connect import ConnectError, open_ws
from arbwire.net.sockopts import TcpOptions, read_tcp_options
from arbwire.net.tls import ResumingContext, client_context
from arbwire.sim.faulty import FaultyServer, PushServer
from arbwire.sim.tls import make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("tls"))


async def _fail(url: str, **kwargs) -> ConnectError:
    with pytest.raises(ConnectError) as info:
        transport, _, _ = await open_ws(WSListener, url, venue="binance", **kwargs)
        transport.disconnect()
    return info.value


# -- socket options ------------------------------------------------------------------------------
@pytest.mark.parametrize("nodelay", [True, False])
async def test_tcp_options_read_back_from_the_connected_socket(nodelay):
    server = await PushServer(interval_s=0).start()
    opts = TcpOptions(nodelay=nodelay, keepalive=True, keepidle_s=7, keepintvl_s=3, keepcnt=4)
    try:
        transport, _, timing = await open_ws(WSListener, server.url + "/", venue="sim", tcp=opts)
        sock = transport.underlying_transport.get_extra_info("socket")
        got = read_tcp_options(sock)
        assert sock.getpeername()[1] == server.port  # a real, connected socket
        assert bool(got["nodelay"]) is nodelay
        assert got["keepalive"] == 1
        assert (got["keepidle"], got["keepintvl"], got["keepcnt"]) == (7, 3, 4)
        assert timing.tcp_ms >= 0 and timing.total_ms >= timing.tcp_ms
        transport.disconnect()
    finally:
        await server.close()


# -- TLS ----------------------------------------------------------------------------------------------
async def test_tls13_verified_and_options_set_on_the_tls_socket(certs):
    server = await PushServer(interval_s=0, ssl_context=certs.server_context()).start()
    try:
        ctx = client_context(cafile=str(certs.ca_cert))
        transport, _, timing = await open_ws(
            WSListener, f"wss://localhost:{server.port}/", venue="sim", ssl_context=ctx
        )
        assert timing.tls_version == "TLSv1.3"
        assert not timing.session_reused
        sock = transport.underlying_transport.get_extra_info("socket")
        assert read_tcp_options(sock)["nodelay"] == 1
        transport.disconnect()
    finally:
        await server.close()


async def test_default_context_verifies_certificates(certs):
    ctx = client_context()
    assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
    server = await PushServer(interval_s=0, ssl_context=certs.server_context()).start()
    try:
        err = await _fail(f"wss://localhost:{server.port}/stream", ssl_context=ctx)  # our CA is not trusted
        assert err.kind == "certificate"
        assert f"binance wss://localhost:{server.port}/stream" in str(err)
        assert "certificate of localhost rejected" in str(err)
        assert "unable to get local issuer certificate" in str(err)
        # right CA, wrong name: a host name mismatch is refused too
        err = await _fail(
            f"wss://127.0.0.2:{server.port}/", ssl_context=client_context(cafile=str(certs.ca_cert))
        )
        assert err.kind in ("certificate", "refused")
    finally:
        await server.close()


async def test_session_resumption_through_wrap_bio(certs):
    server = await PushServer(b'{"x":1}', interval_s=0.01, ssl_context=certs.server_context()).start()
    got = []

    class Listener(WSListener):
        def on_ws_frame(self, transport, frame):
            got.append(frame)

    try:
        ctx = client_context(cafile=str(certs.ca_cert), session_reuse=True)
        assert isinstance(ctx, ResumingContext)
        reused = []
        for _ in range(3):
            got.clear()
            transport, _, timing = await open_ws(Listener, server.url + "/", venue="sim", ssl_context=ctx)
            reused.append(timing.session_reused)
            import asyncio

            while not got:
                await asyncio.sleep(0.01)
            # the TLS 1.3 ticket comes after the handshake: save once a frame has arrived
            assert ctx.save_from("127.0.0.1", transport.underlying_transport.get_extra_info("ssl_object"))
            transport.disconnect()
            await transport.wait_disconnected()
        assert reused == [False, True, True]
        assert ctx.offered == 2
    finally:
        await server.close()


async def test_slow_tls_handshake_is_reported(certs):
    server = await FaultyServer(mode="silent").start()
    try:
        err = await _fail(server.url.replace("ws:", "wss:") + "/", ssl_context=client_context(),
                          handshake_timeout_s=0.3)
        assert err.kind == "tls_timeout"
        assert "TLS handshake with 127.0.0.1 took longer than 0.3 s" in str(err)
    finally:
        await server.close()


# -- refused, DNS ------------------------------------------------------------------------------------
async def test_refused_connection_names_venue_and_endpoint():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = await _fail(f"ws://127.0.0.1:{port}/ws")
    assert err.kind == "refused"
    assert str(err).startswith(f"binance ws://127.0.0.1:{port}/ws: connection refused by 127.0.0.1:{port}")


async def test_dns_failure_is_reported_without_any_lookup_traffic():
    async def resolver(host, port):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    err = await _fail("wss://stream.binance.example:9443/ws", resolver=resolver)
    assert err.kind == "dns"
    assert "DNS lookup of stream.binance.example failed: Name or service not known" in str(err)


# -- rejected upgrades -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "headers", "body", "hint"),
    [
        (403, {"Server": "CloudFront", "X-Cache": "Error from cloudfront"},
         b'{"code":0,"msg":"Service unavailable from a restricted location"}', "geo-block"),
        (429, {"Retry-After": "7"}, b'{"code":-1003,"msg":"Too many requests"}', "rate limited"),
        (400, {"Content-Type": "application/json"}, b'{"code":2,"msg":"Invalid request: invalid stream"}',
         "malformed stream"),
        (503, {}, b"<html>maintenance</html>", "maintenance"),
    ],
)
async def test_rejected_upgrade_reports_status_headers_body_and_hint(status, headers, body, hint):
    server = await FaultyServer(mode="status", status=status, headers=headers, body=body).start()
    try:
        err = await _fail(server.url + "/stream?streams=btcusdt@depth")
        assert err.kind == "http" and err.status == status
        text = str(err)
        assert f"upgrade rejected with HTTP {status}" in text
        for name, value in headers.items():
            assert f"{name}: {value}" in text
        assert body.decode()[:40] in text
        assert hint in text
        if status == 429:
            assert err.retry_after_s == 7.0
    finally:
        await server.close()


async def test_101_without_valid_accept_is_not_a_websocket():
    server = await FaultyServer(mode="bad_accept").start()
    try:
        err = await _fail(server.url + "/ws")
        assert err.kind == "upgrade" and err.status == 101
        assert "Sec-WebSocket-Accept" in str(err)
        assert "not speaking WebSocket" in str(err)
    finally:
        await server.close()


async def test_upgrade_never_answered():
    server = await FaultyServer(mode="silent").start()
    try:
        err = await _fail(server.url + "/ws", handshake_timeout_s=0.2)
        assert err.kind == "upgrade_timeout"
    finally:
        await server.close()
