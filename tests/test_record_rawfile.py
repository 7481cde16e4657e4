"""arbwire's raw format: self-describing, round-trips a real capture to identical tops, and a
damaged file says where it broke after giving everything before it."""

from __future__ import annotations

import json

import msgspec
import pytest
import zstandard

from arbwire.cli import main
from arbwire.record.importers import Kind, read_cryptofeed, read_hftbacktest
from arbwire.record.rawfile import RawHeader, RawReader, RawWriter, RecordingError, write_recording
from arbwire.record.replay import Emitter, Replayer

HFT = "hftbacktest/binance_spot_ethusdt_20240808.gz"
HEADER = RawHeader(venue="binance", registry="binance", symbols=["ETH-USDT"])


@pytest.fixture(scope="module")
def eth_records(real_data):
    return list(read_hftbacktest(real_data / HFT))


@pytest.fixture(scope="module")
def eth_tops(real_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tops") / "hft.jsonl"
    assert main(["replay", str(real_data / HFT), "--emit", "tops", "--out", str(out)]) == 0
    return out.read_text()


def _tops(paths, tmp_path, name="tops.jsonl"):
    out = tmp_path / name
    r = Replayer(emit=["tops"], out=Emitter(out))
    r.add_paths(paths)
    summary = r.run()
    return out.read_text(), summary


def test_file_is_plain_zstd_with_a_msgpack_header_then_record_blocks(tmp_path, eth_records):
    path = tmp_path / "eth.raw.zst"
    assert write_recording(path, HEADER, eth_records[:100], block_records=40) == 100
    objects = [msgspec.msgpack.decode(frame) for frame in _zstd_frames(path.read_bytes())]
    header = objects[0]
    assert header["format"] == "arbwire-raw" and header["version"] == 1
    assert (header["venue"], header["registry"], header["symbols"]) == ("binance", "binance", ["ETH-USDT"])
    assert {"options", "ws_url", "rest_url", "stream_id", "part"} <= set(header)
    blocks = objects[1:]
    assert [len(b) for b in blocks] == [40, 40, 20]
    kind, ns, payload, url = blocks[0][0]
    first = eth_records[0]
    assert (kind, ns, payload, url) == ("recv", first.recv_ns, first.payload, "")


def _zstd_frames(data: bytes):
    """Each zstd frame's content, with nothing but the zstd library."""
    dctx = zstandard.ZstdDecompressor()
    while data:
        dobj = dctx.decompressobj()
        content = dobj.decompress(data)
        assert dobj.eof
        yield content
        data = dobj.unused_data


def test_reader_gives_back_exactly_what_was_written(tmp_path, real_data):
    records = list(read_cryptofeed(real_data / "cryptofeed" / "GATEIO.ws.1.0"))
    path = tmp_path / "gate.raw.zst"
    write_recording(path, RawHeader(venue="gateio", registry="gateio", symbols=["HAI-ETH"]), records, block_records=7)
    reader = RawReader(path)
    back = list(reader)
    assert [(r.kind, r.recv_ns, r.payload, r.url) for r in back] == [
        (r.kind, r.recv_ns, r.payload, r.url) for r in records
    ]
    assert {r.kind for r in back} == {Kind.OPEN, Kind.SENT, Kind.RECV}


def test_round_trip_of_a_real_capture_replays_to_identical_tops(tmp_path, eth_records, eth_tops):
    path = tmp_path / "eth.raw.zst"
    write_recording(path, HEADER, eth_records)
    tops, summary = _tops([path], tmp_path)
    assert summary["ok"] and summary["frames"] == 33617
    assert tops == eth_tops and tops.count("\n") > 3000


def test_rotated_parts_given_in_order_continue_one_stream(tmp_path, eth_records, eth_tops):
    writer = RawWriter(tmp_path / "raw", HEADER, rotate_bytes=200_000, rotate_s=3600)
    for i in range(0, len(eth_records), 1000):
        chunk = eth_records[i : i + 1000]
        writer.write_block([(k, r.recv_ns, r.payload, r.url) for r in chunk for k in ["http" if r.kind is Kind.HTTP else "recv"]])
    writer.close()
    assert len(writer.paths) >= 4
    headers = [RawReader(p).header for p in writer.paths]
    assert [h.part for h in headers] == list(range(len(writer.paths)))
    assert len({h.stream_id for h in headers}) == 1
    tops, summary = _tops(writer.paths, tmp_path)
    assert tops == eth_tops
    assert list(summary["venues"]) == ["binance"]
    # a later part alone has no snapshot: the book is never guessed
    alone, summary = _tops(writer.paths[2:3], tmp_path, "alone.jsonl")
    assert alone == ""
    assert summary["venues"]["binance"]["books"]["ETH-USDT"]["state"] == "BUFFERING"


def test_rotation_by_recorded_time(tmp_path, eth_records):
    writer = RawWriter(tmp_path / "raw", HEADER, rotate_s=60)
    for i in range(0, len(eth_records), 500):
        writer.write_block([("recv", r.recv_ns, r.payload, "") for r in eth_records[i : i + 500]])
    writer.close()
    span = (eth_records[-1].recv_ns - eth_records[0].recv_ns) / 1e9
    assert len(writer.paths) == pytest.approx(span / 60, abs=1.5)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_file_reports_the_break_and_keeps_what_came_before(tmp_path, eth_records, eth_tops, damage, capsys):
    path = tmp_path / "eth.raw.zst"
    write_recording(path, HEADER, eth_records, block_records=2000)
    data = bytearray(path.read_bytes())
    cut = len(data) // 2
    if damage == "truncate":
        del data[cut:]
    else:
        data[cut] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RecordingError) as info:
        list(RawReader(path))
    err = info.value
    assert err.records == 16000 and err.block == 8 and 0 < err.offset <= cut
    assert ("truncated" if damage == "truncate" else "corrupt") in err.reason

    out = tmp_path / "tops.jsonl"
    code = main(["replay", str(path), "--emit", "tops", "--out", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    assert f"at byte {err.offset}" in captured.err and "read 16000 records" in captured.err
    summary = json.loads(captured.out.splitlines()[-1])
    assert not summary["ok"] and summary["records"] == 16000
    assert summary["files"][0]["error_offset"] == err.offset
    got = out.read_text()
    assert got and eth_tops.startswith(got)  # every top before the break, exactly


def test_unreadable_header_and_non_recordings(tmp_path, capsys):
    bad = tmp_path / "bad.raw.zst"
    bad.write_bytes(zstandard.ZstdCompressor().compress(msgspec.msgpack.encode({"format": "other"})))
    with pytest.raises(RecordingError, match="not an arbwire recording"):
        RawReader(bad)
    half = tmp_path / "half.raw.zst"
    full = zstandard.ZstdCompressor().compress(msgspec.msgpack.encode(HEADER))
    half.write_bytes(full[: len(full) // 2])
    with pytest.raises(RecordingError, match="truncated"):
        RawReader(half)
    assert main(["replay", str(half), "--format", "arbwire"]) == 1
    assert "truncated" in capsys.readouterr().err


def test_truncated_foreign_captures_report_the_break(tmp_path, real_data, capsys):
    gz = (real_data / HFT).read_bytes()
    cut = tmp_path / "cut.gz"
    cut.write_bytes(gz[: len(gz) // 3])
    out = tmp_path / "tops.jsonl"
    assert main(["replay", str(cut), "--emit", "tops", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "cut.gz" in err and "EOFError" in err and "records" in err
    assert out.read_text().count("\n") > 100
    bad = tmp_path / "OKX.ws.1.0"
    lines = (real_data / "cryptofeed" / "OKX.ws.1.0").read_text().splitlines()
    bad.write_text("\n".join(lines[:50] + ["garbage that is no capture line"] + lines[50:]) + "\n")
    assert main(["replay", str(bad), "--format", "cryptofeed"]) == 1
    assert f"{bad}:51" in capsys.readouterr().err
