"""arbwire's own raw recording format: every frame as received, with its receive time.

A file is a plain sequence of zstd frames (``zstd -d`` decompresses it), each
written with a content checksum:

* frame 0: a msgpack map, the header (``RawHeader``): ``format: "arbwire-raw"``,
  ``version``, the venue's session name, the registry name, symbols, session
  options and endpoints, so a replay knows which session to build; plus the
  recording's ``stream_id`` and this file's ``part`` number (rotation).
* every later frame: a msgpack array of records ``[kind, ns, payload, url]``,
  ``kind`` one of ``"open"`` (link opened to ``url``), ``"recv"`` (a WebSocket
  frame received), ``"sent"`` (a frame the client sent), ``"http"`` (a REST
  response body to a GET of ``url``) and ``"drop"`` (the recorder's bounded queue
  dropped ``payload`` = the decimal count of records here: the recording has a hole).

Records are in the order the client saw them, which is the order a replay feeds
them. A file cut short (a crash) or damaged is read up to the last whole frame;
``RecordingError`` then says where it broke and how much was read.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec
import zstandard

from arbwire.record.importers import Kind, Record
from arbwire.venues.base import Endpoints

FORMAT = "arbwire-raw"
VERSION = 1
SUFFIX = ".raw.zst"

KIND_NAMES = {"open": Kind.OPEN, "sent": Kind.SENT, "recv": Kind.RECV, "http": Kind.HTTP, "drop": Kind.DROP}
NAMES_BY_KIND = {v: k for k, v in KIND_NAMES.items()}

RawItem = tuple[str, int, bytes, str]
"""One record as the recorder buffers it: (kind, ns, payload, url)."""


class RawHeader(msgspec.Struct, kw_only=True, omit_defaults=False):
    """What a replay needs to rebuild the session that recorded the file."""

    venue: str  # the session's name (``binance-usdm``)
    registry: str  # ``make_session`` name (``binance``)
    symbols: list[str]
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    ws_url: str = ""
    rest_url: str = ""
    stream_id: str = ""  # the same for every part of one recording
    part: int = 0
    created_ns: int = 0
    format: str = FORMAT
    version: int = VERSION
    writer: str = ""

    def endpoints(self) -> Endpoints | None:
        if not self.ws_url and not self.rest_url:
            return None
        return Endpoints(self.ws_url, self.rest_url)


class RecordingError(ValueError):
    """A recording that can't be read past some point: says where and how much was read."""

    def __init__(self, path: str | Path, reason: str, *, offset: int, block: int, records: int, last_ns: int = 0):
        self.path = str(path)
        self.reason = reason
        self.offset = offset
        self.block = block
        self.records = records
        self.last_ns = last_ns
        last = f", the last received at {_iso(last_ns)}" if last_ns else ""
        super().__init__(
            f"{path}: {reason} at byte {offset}, after {block} whole blocks; "
            f"read {records} records before it{last}"
        )


def _iso(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + f".{ns % 1_000_000_000:09d}Z"


_encoder = msgspec.msgpack.Encoder()
_header_decoder = msgspec.msgpack.Decoder(RawHeader)
_block_decoder = msgspec.msgpack.Decoder(list[tuple[str, int, bytes, str]])


def _stamp(ns: int) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(ns / 1e9)) + f"_{ns % 1_000_000_000 // 1000:06d}Z"


class RawWriter:
    """Writes one venue stream's records as zstd frames, rotating files by size and time.

    Not thread-safe by itself: the recorder calls it from one worker thread only.
    ``write_block`` compresses one frame (zstd releases the GIL) and appends it.
    """

    def __init__(
        self,
        directory: str | Path,
        header: RawHeader,
        *,
        rotate_bytes: int = 256 << 20,
        rotate_s: float = 3600.0,
        level: int = 3,
    ) -> None:
        self.directory = Path(directory)
        self.header = header
        self.rotate_bytes = rotate_bytes
        self.rotate_ns = int(rotate_s * 1e9)
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
        self._fh: Any = None
        self._file_bytes = 0
        self._file_started_ns = 0
        self.part = header.part - 1
        self.paths: list[Path] = []
        self.records = 0
        self.bytes = 0
        if not header.stream_id:
            header.stream_id = f"{header.venue}-{_stamp(header.created_ns or time.time_ns())}"

    def _open(self, first_ns: int) -> None:
        self.close()
        self.part += 1
        self.directory.mkdir(parents=True, exist_ok=True)
        header = msgspec.structs.replace(self.header, part=self.part, created_ns=first_ns)
        path = self.directory / f"{header.venue}-{_stamp(first_ns)}-{self.part:04d}{SUFFIX}"
        self._fh = open(path, "wb")  # noqa: SIM115 - kept open across blocks, closed in close()
        self.paths.append(path)
        self._file_bytes = 0
        self._file_started_ns = first_ns
        self._write_frame(_encoder.encode(header))

    def _write_frame(self, raw: bytes) -> None:
        frame = self._cctx.compress(raw)
        self._fh.write(frame)
        self._fh.flush()
        self._file_bytes += len(frame)
        self.bytes += len(frame)

    def write_block(self, items: Sequence[RawItem]) -> None:
        """One zstd frame of records; opens or rotates the file first when due."""
        if not items:
            return
        first_ns = items[0][1]
        if (
            self._fh is None
            or self._file_bytes >= self.rotate_bytes
            or (self.rotate_ns and first_ns - self._file_started_ns >= self.rotate_ns)
        ):
            self._open(first_ns)
        self._write_frame(_encoder.encode(items))
        self.records += len(items)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def write_recording(
    path: str | Path, header: RawHeader, records: Sequence[Record] | Any, *, block_records: int = 4096
) -> int:
    """Write ``records`` (e.g. an imported capture) to one file at ``path``; returns the count."""
    path = Path(path)
    cctx = zstandard.ZstdCompressor(level=3, write_checksum=True, write_content_size=True)
    count = 0
    with open(path, "wb") as fh:
        fh.write(cctx.compress(_encoder.encode(header)))
        block: list[RawItem] = []
        for r in records:
            block.append((NAMES_BY_KIND[r.kind], r.recv_ns, bytes(r.payload), r.url))
            if len(block) >= block_records:
                fh.write(cctx.compress(_encoder.encode(block)))
                count += len(block)
                block = []
        if block:
            fh.write(cctx.compress(_encoder.encode(block)))
            count += len(block)
    return count


class RawReader:
    """Reads a recording: ``header`` at once (raises ``RecordingError`` if unreadable),
    then records by iteration; a damaged or cut file raises ``RecordingError`` at the
    break, after yielding every record before it."""

    CHUNK = 1 << 20

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records = 0
        self.skipped = 0  # records of a kind this reader does not know
        self.blocks = 0
        self.last_ns = 0
        self._fh = open(self.path, "rb")  # noqa: SIM115 - closed when iteration ends
        self._buf = b""
        self._offset = 0  # byte offset of self._buf[0]
        self._dctx = zstandard.ZstdDecompressor()
        try:
            first = self._next_frame()
            if first is None:
                raise self._error("empty file: no header", self._offset)
            try:
                self.header = _header_decoder.decode(first)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise self._error(f"not an arbwire recording header ({exc})", 0) from None
            if self.header.format != FORMAT:
                raise self._error(f"not an arbwire recording (format {self.header.format!r})", 0)
            if self.header.version > VERSION:
                raise self._error(f"recording version {self.header.version} is newer than {VERSION}", 0)
        except BaseException:
            self._fh.close()
            raise

    def _error(self, reason: str, offset: int) -> RecordingError:
        return RecordingError(
            self.path, reason, offset=offset, block=self.blocks, records=self.records, last_ns=self.last_ns
        )

    def _next_frame(self) -> bytes | None:
        """The next frame's content, or None at a clean end of file."""
        if not self._buf:
            self._buf = self._fh.read(self.CHUNK)
            if not self._buf:
                return None
        start = self._offset
        dobj = self._dctx.decompressobj()
        out: list[bytes] = []
        data = self._buf
        fed = 0  # bytes of this frame fed before ``data``
        while True:
            try:
                out.append(dobj.decompress(data))
            except zstandard.ZstdError as exc:
                raise self._error(f"corrupt zstd frame ({exc})", start) from None
            if dobj.eof:
                rest = dobj.unused_data
                self._offset = start + fed + len(data) - len(rest)
                self._buf = rest
                return b"".join(out)
            fed += len(data)
            data = self._fh.read(self.CHUNK)
            if not data:
                self._buf = b""
                raise self._error("file ends inside a block (truncated)", start)

    def __iter__(self) -> Iterator[Record]:
        try:
            while True:
                start = self._offset
                content = self._next_frame()
                if content is None:
                    return
                try:
                    items = _block_decoder.decode(content)
                except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                    raise self._error(f"corrupt block ({exc})", start) from None
                self.blocks += 1
                for kind, ns, payload, url in items:
                    k = KIND_NAMES.get(kind)
                    self.records += 1
                    if k is None:  # a kind from a newer writer: skipped, never fatal
                        self.skipped += 1
                        continue
                    self.last_ns = ns
                    yield Record(k, ns, payload, url, self.records)
        finally:
            self._fh.close()


def is_recording(path: str | Path) -> bool:
    """True when ``path`` starts with a zstd frame (arbwire recordings are zstd)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x28\xb5\x2f\xfd"
    except OSError:
        return False


def list_recordings(directory: str | Path) -> list[Path]:
    """Every recording under ``directory``, in name order (name = venue, start time, part)."""
    return sorted(Path(directory).rglob(f"*{SUFFIX}"), key=lambda p: (p.parent.name, p.name))


__all__ = [
    "FORMAT",
    "RawHeader",
    "RawReader",
    "RawWriter",
    "RecordingError",
    "SUFFIX",
    "is_recording",
    "list_recordings",
    "write_recording",
]
