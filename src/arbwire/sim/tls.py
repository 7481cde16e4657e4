"""Throw-away TLS material for loopback tests and benchmarks: a CA, a server certificate
for ``localhost``/``127.0.0.1``, and server/client contexts built from them.

Keys are made at run time into a temporary directory (never committed), with the
``cryptography`` package when it is installed and the ``openssl`` command otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import shutil
import socket
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from arbwire.sim.teardown import abort_all


@dataclass(frozen=True, slots=True)
class TestCerts:
    """Paths of a CA and a leaf certificate signed by it (PEM)."""

    __test__ = False  # not a pytest class

    dir: Path
    ca_cert: Path
    cert: Path
    key: Path
    hosts: tuple[str, ...]

    def server_context(self, *, tls13_only: bool = False) -> ssl.SSLContext:
        """A server context presenting the leaf; issues TLS 1.3 session tickets."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3 if tls13_only else ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def make_certs(
    directory: str | Path | None = None,
    *,
    hosts: tuple[str, ...] = ("localhost", "127.0.0.1"),
    ca_name: str = "arbwire test CA",
    days: int = 2,
) -> TestCerts:
    """Create a CA and a leaf for ``hosts`` in ``directory`` (a new temp dir by default)."""
    out = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="arbwire-tls-"))
    out.mkdir(parents=True, exist_ok=True)
    try:
        import cryptography  # noqa: F401
    except ImportError:
        _make_with_openssl(out, hosts, ca_name, days)
    else:
        _make_with_cryptography(out, hosts, ca_name, days)
    return TestCerts(out, out / "ca.pem", out / "leaf.pem", out / "leaf.key", hosts)


def _san(hosts: tuple[str, ...]) -> str:
    import ipaddress

    parts = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            parts.append(f"DNS:{host}")
        else:
            parts.append(f"IP:{host}")
    return ",".join(parts)


def _make_with_openssl(out: Path, hosts: tuple[str, ...], ca_name: str, days: int) -> None:
    if shutil.which("openssl") is None:
        raise RuntimeError("test certificates need the 'cryptography' package or the 'openssl' command")

    def run(*args: str) -> None:
        subprocess.run(args, check=True, capture_output=True, cwd=out)

    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run("openssl", "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", str(days),
        "-subj", f"/CN={ca_name}")
    run("openssl", "req", *ec, "-keyout", "leaf.key", "-out", "leaf.csr", "-subj", f"/CN={hosts[0]}")
    (out / "ext.cnf").write_text(f"subjectAltName={_san(hosts)}\nbasicConstraints=CA:FALSE\n")
    run("openssl", "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "leaf.pem", "-days", str(days), "-extfile", "ext.cnf")


def _make_with_cryptography(out: Path, hosts: tuple[str, ...], ca_name: str, days: int) -> None:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ca_name)])
    ca = (
        x509.CertificateBuilder().subject_name(ca_subject).issuer_name(ca_subject)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (out / "ca.pem").write_bytes(ca.public_bytes(pem))
    (out / "leaf.pem").write_bytes(leaf.public_bytes(pem))
    (out / "leaf.key").write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


class TlsRelay:
    """Terminates TLS on a loopback port and relays the bytes to a plain ``ws://`` simulator,
    so the real client's ``wss://`` path (verification, resumption, timings) runs against
    the venue simulators, which speak plain WebSocket."""

    def __init__(self, backend_port: int, ssl_context: ssl.SSLContext, *, host: str = "127.0.0.1") -> None:
        self.backend_port = backend_port
        self.ssl_context = ssl_context
        self.host = host
        self.port = 0
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"wss://{self.host}:{self.port}"

    def url_for(self, host: str) -> str:
        """The relay's URL under another name of this machine (e.g. ``localhost``)."""
        return f"wss://{host}:{self.port}"

    async def start(self) -> TlsRelay:
        self._server = await asyncio.start_server(self._handle, self.host, 0, ssl=self.ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        abort_all(self._writers)
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    def drop_all(self) -> int:
        """Abort every relayed connection (both sides)."""
        return abort_all(self._writers)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            b_reader, b_writer = await asyncio.open_connection(self.host, self.backend_port)
        except OSError:
            writer.transport.abort()
            return
        for w in (writer, b_writer):
            self._writers.add(w)
            sock = w.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = asyncio.ensure_future(self._pipe(reader, b_writer))
        down = asyncio.ensure_future(self._pipe(b_reader, writer))
        self._pipes.update((up, down))
        try:
            await asyncio.wait((up, down), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            for task in (up, down):
                task.cancel()
                self._pipes.discard(task)
            for w in (writer, b_writer):
                self._writers.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
