"""Readers for other projects' captures, so real venue traffic replays as it was recorded.

Two formats live in ../shared/data/real (see its README):

* cryptofeed's raw capture: ``<url> <-> <ts>`` (link opened), ``<url> <- <ts>: <text>``
  (frame sent), ``<ts>: <payload>`` or ``<url> -> <ts>: <payload>`` (frame received;
  a binary frame is a Python bytes literal), and in ``*.http.*`` files
  ``<url> -> <ts>: <body>`` for REST responses.
* hftbacktest's text capture: ``<local_receive_ns> <raw frame>`` per line, gzip.
"""

from __future__ import annotations

import ast
import enum
import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import msgspec


class Kind(enum.IntEnum):
    OPEN = 0  # a link was opened to ``url``
    SENT = 1  # the client sent ``payload``
    RECV = 2  # the client received ``payload`` on its WebSocket
    HTTP = 3  # a REST response ``payload`` to a GET of ``url``
    DROP = 4  # the recorder dropped ``payload`` (decimal count) records here: a hole


class Record(msgspec.Struct, frozen=True):
    kind: Kind
    recv_ns: int
    payload: bytes
    url: str = ""
    line: int = 0


class CaptureError(ValueError):
    """A capture line that can't be read; names the file and line."""


_TS = r"(\d+(?:\.\d+)?)"
_OPEN = re.compile(rf"^(\S+) <-> {_TS}\s*$")
_SENT = re.compile(rf"^(\S+) <- {_TS}: ?(.*)$", re.S)
_RECV_URL = re.compile(rf"^(\S+) -> {_TS}: ?(.*)$", re.S)
_RECV = re.compile(rf"^{_TS}: ?(.*)$", re.S)


def _ns(seconds: str) -> int:
    whole, _, frac = seconds.partition(".")
    return int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])


def _payload(text: str) -> bytes:
    if text.startswith(("b'", 'b"')):
        value = ast.literal_eval(text)
        if not isinstance(value, bytes):
            raise ValueError("not a bytes literal")
        return value
    return text.encode()


def read_cryptofeed(path: str | Path) -> Iterator[Record]:
    """Every event of a cryptofeed capture, in file order."""
    path = Path(path)
    is_http = ".http." in path.name
    with path.open("r", encoding="utf-8") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip("\n")
            if not line.strip() or line.startswith("configuration:"):
                continue
            try:
                if m := _OPEN.match(line):
                    yield Record(Kind.OPEN, _ns(m[2]), b"", m[1], lineno)
                elif m := _SENT.match(line):
                    yield Record(Kind.SENT, _ns(m[2]), m[3].encode(), m[1], lineno)
                elif m := _RECV_URL.match(line):
                    kind = Kind.HTTP if is_http else Kind.RECV
                    yield Record(kind, _ns(m[2]), _payload(m[3]), m[1], lineno)
                elif m := _RECV.match(line):
                    yield Record(Kind.RECV, _ns(m[1]), _payload(m[2]), "", lineno)
                else:
                    raise ValueError("unrecognised line")
            except (ValueError, SyntaxError) as exc:
                raise CaptureError(f"{path}:{lineno}: {exc}: {line[:120]!r}") from exc


def read_hftbacktest(path: str | Path) -> Iterator[Record]:
    """Frames of an hftbacktest capture; a bare ``{"lastUpdateId":..}`` line is the REST snapshot."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            line = raw.rstrip(b"\n")
            if not line:
                continue
            ts, sep, frame = line.partition(b" ")
            if not sep or not ts.isdigit():
                raise CaptureError(f"{path}:{lineno}: expected '<ns> <frame>': {line[:120]!r}")
            kind = Kind.HTTP if frame.startswith(b'{"lastUpdateId"') else Kind.RECV
            yield Record(kind, int(ts), frame, "", lineno)


# -- what a capture is: venue, session options, symbols ---------------------------------


class CaptureInfo(msgspec.Struct):
    """Which session a foreign capture file needs: registry name, options, symbols.

    ``registry`` is None when nothing in the file names the venue; ``channel``
    is ``"http"`` for files of REST responses (merged by time with the stream's
    WebSocket files) and ``"ws"`` otherwise.
    """

    path: str
    format: str
    registry: str | None
    options: dict[str, object]
    symbols: list[str]
    channel: str = "ws"
    source_name: str = ""  # e.g. cryptofeed's exchange id (BINANCE_FUTURES)


#: cryptofeed exchange ids -> arbwire registry name and the session options its capture needs
CRYPTOFEED_VENUES: dict[str, tuple[str, dict[str, object]]] = {
    "BINANCE": ("binance", {}),
    "BINANCE_FUTURES": ("binance", {"futures": True}),
    "OKX": ("okx", {}),
    "GATEIO": ("gateio", {}),
    "HUOBI": ("htx", {}),
}

_HOSTS: dict[str, str] = {
    "stream.binance.com": "BINANCE",
    "api.binance.com": "BINANCE",
    "fstream.binance.com": "BINANCE_FUTURES",
    "fapi.binance.com": "BINANCE_FUTURES",
    "ws.okx.com": "OKX",
    "www.okx.com": "OKX",
    "ws.okex.com": "OKX",
    "api.gateio.ws": "GATEIO",
    "api.huobi.pro": "HUOBI",
    "api-aws.huobi.pro": "HUOBI",
    "api.hbdm.com": "HUOBI",
}

_CF_NAME = re.compile(r"^([A-Z][A-Z0-9_]*?)(?:\.(ws|http))?\.\d+(?:\.\d+)?$")
_STREAM_NAME = re.compile(rb'"stream"\s*:\s*"([a-z0-9]+)@')
_HTX_TOPIC = re.compile(r"market\.([a-z0-9]+)\.(depth|mbp|bbo|trade)\.?([a-z0-9]*)")


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        return urlsplit(url).hostname or ""
    except ValueError:
        return ""


def _glued(name: str) -> str | None:
    from arbwire.symbols import SymbolError, split_glued

    try:
        base, quote = split_glued(name)
    except SymbolError:
        return None
    return f"{base}-{quote}"


def _add(out: list[str], symbol: str | None) -> None:
    if symbol and symbol not in out:
        out.append(symbol)


def _configuration_symbols(path: Path) -> list[str]:
    """The symbols in the ``configuration: {...}`` line cryptofeed writes at the end of
    ``<EXCHANGE>.0`` (the instrument list beside the capture), if there is one."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - (1 << 16)))
            tail = fh.read()
    except OSError:
        return []
    out: list[str] = []
    for line in tail.splitlines():
        if line.startswith(b"configuration:"):
            try:
                config = msgspec.json.decode(line.partition(b":")[2])
            except msgspec.DecodeError:
                continue
            if isinstance(config, dict):
                for key in ("l2_book", "trades", "ticker", "candles"):
                    for symbol in config.get(key) or ():
                        if isinstance(symbol, str):
                            _add(out, symbol)
    return out


def describe_cryptofeed(path: str | Path, *, scan_lines: int = 2000) -> CaptureInfo:
    """Venue, session options and symbols of a cryptofeed capture.

    The venue comes from the file name (``BINANCE_FUTURES.ws.1.0``) or, failing
    that, from the host of the first URL; the symbols from cryptofeed's
    ``configuration`` line in the ``<EXCHANGE>.0`` file beside it, else from the
    captured URL (Binance stream names), the subscriptions sent (OKX ``instId``,
    Gate pairs, HTX topics) or the REST query (``*.http.*`` files).
    """
    path = Path(path)
    m = _CF_NAME.match(path.name)
    exchange = m[1] if m and m[1] in CRYPTOFEED_VENUES else None
    channel = "http" if ".http." in path.name else "ws"
    symbols: list[str] = []
    urls: list[str] = []
    sent: list[bytes] = []
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            for i, raw in enumerate(fh):
                if i >= scan_lines:
                    break
                if m2 := _OPEN.match(raw.rstrip("\n")):
                    urls.append(m2[1])
                elif m2 := _SENT.match(raw.rstrip("\n")):
                    urls.append(m2[1])
                    sent.append(m2[3].encode())
                elif m2 := _RECV_URL.match(raw.rstrip("\n")):
                    urls.append(m2[1])
    except OSError:
        pass
    if exchange is None:
        for url in urls:
            exchange = _HOSTS.get(_host(url))
            if exchange:
                break
    registry, base_options = CRYPTOFEED_VENUES.get(exchange or "", (None, {}))
    options = dict(base_options)
    # symbols and the book channel the capture subscribed to
    if exchange:
        for s in _configuration_symbols(path.parent / f"{exchange}.0"):
            _add(symbols, s)
    # what the capture itself names; only when cryptofeed's configuration said nothing
    found: list[str] = []
    from urllib.parse import parse_qs, urlsplit

    for url in urls:
        query = parse_qs(urlsplit(url).query)
        for stream in "/".join(query.get("streams", [])).split("/"):
            if "@" in stream:
                _add(found, _glued(stream.partition("@")[0]))
        if channel == "http":
            for key in ("symbol", "currency_pair", "instId"):
                for value in query.get(key, []):
                    _add(found, value.replace("_", "-") if "_" in value or "-" in value else _glued(value))
    for payload in sent:
        try:
            msg = msgspec.json.decode(payload)
        except msgspec.DecodeError:
            continue
        if not isinstance(msg, dict):
            continue
        if registry == "okx":
            for arg in msg.get("args") or ():
                inst = arg.get("instId") if isinstance(arg, dict) else None
                if isinstance(inst, str):
                    _add(found, inst[:-5] + "-PERP" if inst.endswith("-SWAP") else inst)
        elif registry == "gateio":
            channel_name = msg.get("channel")
            if channel_name in ("spot.order_book_update", "spot.obu"):
                options.setdefault(
                    "book_channel", "obu" if channel_name == "spot.obu" else "order_book_update"
                )
            for item in msg.get("payload") or ():
                if isinstance(item, str) and "_" in item:
                    if channel_name == "spot.obu" and item.startswith("ob."):
                        item = item.split(".")[1]
                    _add(found, item.replace("_", "-"))
        elif registry == "htx":
            topic = msg.get("sub") or msg.get("req")
            if isinstance(topic, str) and (t := _HTX_TOPIC.match(topic)):
                if t[2] in ("depth", "mbp"):
                    options.setdefault("book_channel", t[2])
                    if t[2] == "depth" and t[3]:
                        options.setdefault("depth_type", t[3])
                _add(found, _glued(t[1]))
    if not symbols:
        symbols = found
    if registry == "htx" and urls:
        link = urlsplit(urls[0]).path.strip("/")
        if link in ("ws", "feed"):
            options.setdefault("link", link)
    return CaptureInfo(str(path), "cryptofeed", registry, options, symbols, channel, exchange or "")


def describe_hftbacktest(path: str | Path, *, scan_lines: int = 5000) -> CaptureInfo:
    """hftbacktest captures are Binance combined streams: symbols from the stream names."""
    path = Path(path)
    symbols: list[str] = []
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            for i, line in enumerate(fh):
                if i >= scan_lines:
                    break
                if m := _STREAM_NAME.search(line[:200]):
                    _add(symbols, _glued(m[1].decode()))
    except (OSError, EOFError):
        pass
    return CaptureInfo(str(path), "hftbacktest", "binance", {}, symbols, "ws", "")
