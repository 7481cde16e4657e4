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
