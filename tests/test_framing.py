"""Framing: CRCs, compression, corrupt files, round trips — against TensorFlow's files."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import A2O_GZIP_SHARDS, A2O_SHARDS, CORRUPT, DATA
from tfrecord_numpy import (
    CompressionError,
    CorruptRecordError,
    RecordTooLargeError,
    RecordWriter,
    TFRecordError,
    TruncatedRecordError,
    read_records,
    write_records,
)
from tfrecord_numpy.framing import RecordScanner, crc32c, decode_records, encode_record, masked_crc
from tfrecord_numpy.reader import iter_record_views

MANIFEST = json.loads((DATA / "manifest.json").read_text())


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _crc32c_by_hand(data: bytes) -> int:
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) bit by bit: no crc32c package."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def _mask_by_hand(crc: int) -> int:
    """TFRecord's mask (tensorflow/core/lib/hash/crc32c.h): rotate right by 15, add 0xa282ead8."""
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_masked_crc_known_value():
    # the hand CRC first, against CRC-32C's published check value
    assert _crc32c_by_hand(b"123456789") == 0xE3069283
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"56789", crc32c(b"1234")) == 0xE3069283  # continued over pieces
    # TFRecord header of a zero-length record: 8 zero length bytes and their masked CRC
    assert _crc32c_by_hand(b"\x00" * 8) == 0x8C28B28A
    assert masked_crc(b"\x00" * 8) == _mask_by_hand(0x8C28B28A) == 0x07980329
    assert masked_crc(b"") == _mask_by_hand(0) == 0xA282EAD8
    assert encode_record(b"") == bytes.fromhex("0000000000000000 29039807 d8ea82a2")


def test_every_crc_of_a_file_tensorflow_wrote():
    """Headers and footers of examples.tfrecord (TensorFlow 2.21) recomputed by hand,
    and each record framed by us byte for byte as TensorFlow framed it."""
    raw = (DATA / "examples" / "examples.tfrecord").read_bytes()
    pos = records = 0
    while pos < len(raw):
        length = int.from_bytes(raw[pos : pos + 8], "little")
        end = pos + 12 + length
        assert raw[pos + 8 : pos + 12] == _mask_by_hand(_crc32c_by_hand(raw[pos : pos + 8])).to_bytes(4, "little")
        assert raw[end : end + 4] == _mask_by_hand(_crc32c_by_hand(raw[pos + 12 : end])).to_bytes(4, "little")
        assert encode_record(raw[pos + 12 : end]) == raw[pos : end + 4]
        pos, records = end + 4, records + 1
    assert pos == len(raw) and records == 22


@pytest.mark.parametrize("path", A2O_SHARDS, ids=lambda p: p.name)
def test_a2o_record_counts_and_offsets(path):
    entry = next(f for f in MANIFEST["files"] if f["path"] == f"a2o/{path.name}")
    recs = list(read_records(path))
    assert len(recs) == entry["records"]
    # framing overhead: 16 bytes per record, no slack
    assert sum(len(r) + 16 for r in recs) == path.stat().st_size


@pytest.mark.parametrize("plain,gz", list(zip(A2O_SHARDS, A2O_GZIP_SHARDS)), ids=lambda p: p.name)
def test_gzip_equals_plain(plain, gz):
    assert list(read_records(gz)) == list(read_records(plain))
    assert list(read_records(gz, compression="gzip")) == list(read_records(plain, compression=None))


@pytest.mark.parametrize("path", A2O_SHARDS, ids=lambda p: p.name)
def test_write_back_is_byte_identical(path, tmp_path):
    out = tmp_path / "copy.tfrecord"
    write_records(out, read_records(path))
    assert out.read_bytes() == path.read_bytes()


def test_sources_path_str_url_fileobj(tmp_path):
    path = A2O_SHARDS[0]
    want = list(read_records(path))
    assert list(read_records(str(path))) == want
    assert list(read_records(f"file://{path}")) == want
    with open(path, "rb") as f:
        assert list(read_records(f)) == want
    assert list(read_records(io.BytesIO(path.read_bytes()))) == want


def test_auto_sniffs_gzip_without_suffix(tmp_path):
    src = A2O_GZIP_SHARDS[0]
    renamed = tmp_path / "noext"
    renamed.write_bytes(src.read_bytes())
    assert list(read_records(renamed)) == list(read_records(A2O_SHARDS[0]))
    assert list(read_records(io.BytesIO(src.read_bytes()))) == list(read_records(A2O_SHARDS[0]))


@pytest.mark.parametrize("suffix,comp", [(".zz", None), (".zlib", None), ("", "zlib")])
def test_zlib(tmp_path, suffix, comp):
    recs = list(read_records(A2O_SHARDS[1]))
    out = tmp_path / f"z{suffix}"
    write_records(out, recs, compression="zlib")
    assert zlib.decompress(out.read_bytes())[:8] == len(recs[0]).to_bytes(8, "little")
    assert list(read_records(out, compression=comp or "auto")) == recs


def test_zlib_without_suffix_needs_the_option(tmp_path):
    out = tmp_path / "plainname"
    write_records(out, [b"abc"], compression="zlib")
    with pytest.raises(CorruptRecordError, match="compressed"):
        list(read_records(out))


def test_concatenated_gzip_members(tmp_path):
    a = encode_record(b"one") + encode_record(b"two")
    b = encode_record(b"three")
    out = tmp_path / "multi.gz"
    out.write_bytes(gzip.compress(a) + gzip.compress(b))
    assert list(read_records(out)) == [b"one", b"two", b"three"]


# --------------------------------------------------------------------------- corrupt goldens


def _read_all(path, **kw):
    got = []
    try:
        for r in read_records(path, **kw):
            got.append(r)
    except TFRecordError as exc:
        return got, exc
    return got, None


CORRUPT_CASES = {
    # name: (our error class, TF's count of good records before the error or crash/silence)
    "payload_crc_flipped_r1": CorruptRecordError,
    "length_crc_flipped_r1": CorruptRecordError,
    "truncated_in_payload_r1": TruncatedRecordError,
    "truncated_in_header_r1": TruncatedRecordError,  # TF: silent loss
    "huge_length_2p62_r1": RecordTooLargeError,  # TF: SIGSEGV
    "trailing_garbage_5b": TruncatedRecordError,  # TF: silent
    "empty": None,
    "truncated_gzip.gz": TruncatedRecordError,
}


@pytest.mark.parametrize("name", sorted(CORRUPT_CASES))
def test_corrupt_files_match_tensorflow_then_raise(name, corrupt_expected):
    exp = corrupt_expected["files"][name]
    got, err = _read_all(DATA / exp["file"])
    tf = exp["framing"]
    good = tf.get("records_yielded", 0)
    if tf["outcome"] == "crash":
        good = 1  # TF dies before yielding; record 0 is intact (see the golden's note)
    assert len(got) == good
    for rec, want in zip(got, tf["yielded"]):
        assert len(rec) == want["len"] and _sha(rec) == want["sha256"]
    cls = CORRUPT_CASES[name]
    if cls is None:
        assert err is None
        return
    assert type(err) is cls
    assert err.path == str(DATA / exp["file"])
    assert err.index == good
    assert err.offset == corrupt_expected["source"]["record_offsets"][good]
    msg = str(err)
    assert exp["file"].split("/")[-1] in msg and f"record {good}" in msg and f"offset {err.offset}" in msg


def test_which_crc_is_named(corrupt_expected):
    _, err = _read_all(CORRUPT / "payload_crc_flipped_r1")
    assert err.which == "data" and "data CRC" in str(err)
    _, err = _read_all(CORRUPT / "length_crc_flipped_r1")
    assert err.which == "length" and "length CRC" in str(err)


def test_huge_length_is_truncation_when_limit_is_lifted():
    got, err = _read_all(CORRUPT / "huge_length_2p62_r1", max_record_bytes=1 << 63)
    assert len(got) == 1 and isinstance(err, TruncatedRecordError) and err.index == 1


def test_huge_length_does_not_allocate():
    import tracemalloc

    data = (CORRUPT / "huge_length_2p62_r1").read_bytes()
    tracemalloc.start()
    _, err = _read_all(io.BytesIO(data), max_record_bytes=1 << 63)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert isinstance(err, TruncatedRecordError)
    assert peak < 64 << 20  # bounded by the bytes present, not by 2**62


def test_verify_false_skips_crc(corrupt_expected):
    got, err = _read_all(CORRUPT / "payload_crc_flipped_r1", verify=False)
    assert err is None and len(got) == 3
    assert _sha(got[1]) == corrupt_expected["files"]["trailing_garbage_5b"]["framing"]["yielded"][1]["sha256"]


@pytest.mark.parametrize("case", ["gzip_read_as_none", "none_read_as_gzip", "gzip_read_as_zlib"])
def test_wrong_compression_is_a_clear_error(case, corrupt_expected):
    exp = corrupt_expected["wrong_compression"][case]
    comp = {"NONE": None, "GZIP": "gzip", "ZLIB": "zlib"}[exp["compression"]]
    got, err = _read_all(DATA / exp["file"], compression=comp)
    assert got == []
    assert isinstance(err, (CorruptRecordError, CompressionError))
    assert err.index == 0 and err.offset == 0
    if comp is None:
        assert "compression" in str(err)


def test_skip_corrupt_scanner_resyncs():
    recs = [bytes([i]) * (100 + i) for i in range(5)]
    data = bytearray(b"".join(encode_record(r) for r in recs))
    second = len(encode_record(recs[0]))
    data[second + 3] ^= 0xFF  # damage record 1's length field
    third = second + len(encode_record(recs[1]))
    data[third + 20] ^= 0xFF  # damage record 2's payload
    scanner = RecordScanner(skip_corrupt=True)
    got = [bytes(v) for _, _, v in iter_record_views(io.BytesIO(bytes(data)), scanner, chunk_bytes=64)]
    assert got == [recs[0], recs[3], recs[4]]
    assert len(scanner.skipped) == 2 and scanner.truncated_tail is None


def test_small_chunks_and_growth():
    recs = [bytes(range(256)) * k for k in (0, 1, 7, 300)]
    blob = b"".join(encode_record(r) for r in recs)
    scanner = RecordScanner()
    got = [bytes(v) for _, _, v in iter_record_views(io.BytesIO(blob), scanner, chunk_bytes=16)]
    assert got == recs and scanner.index == 4 and scanner.offset == len(blob)


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(st.binary(max_size=3000), max_size=12),
    compression=st.sampled_from([None, "gzip", "zlib"]),
)
def test_round_trip(tmp_path_factory, records, compression):
    out = tmp_path_factory.mktemp("rt") / "f.tfrecord"
    write_records(out, records, compression=compression)
    assert list(read_records(out, compression=compression or None)) == records
    if compression != "zlib":
        assert list(read_records(out)) == records
    if compression is None:
        assert decode_records(out.read_bytes()) == records


@settings(max_examples=60, deadline=None)
@given(records=st.lists(st.binary(max_size=500), min_size=1, max_size=6), cut=st.integers(min_value=1))
def test_any_truncation_is_an_error_never_silent(records, cut):
    blob = b"".join(encode_record(r) for r in records)
    cut = cut % len(blob)
    if cut == 0:
        return
    got, err = _read_all(io.BytesIO(blob[:cut]))
    boundaries = np.cumsum([len(r) + 16 for r in records])
    if cut in boundaries:
        assert err is None and len(got) == list(boundaries).index(cut) + 1
    else:
        assert isinstance(err, TruncatedRecordError)
        assert got == records[: len(got)]


@settings(max_examples=80, deadline=None)
@given(records=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=5), data=st.data())
def test_any_bit_flip_is_detected(records, data):
    blob = bytearray(b"".join(encode_record(r) for r in records))
    pos = data.draw(st.integers(0, len(blob) - 1))
    blob[pos] ^= 1 << data.draw(st.integers(0, 7))
    got, err = _read_all(io.BytesIO(bytes(blob)))
    assert err is not None
    assert got == records[: len(got)]


def test_record_writer_context_manager_and_fileobj():
    buf = io.BytesIO()
    with RecordWriter(buf) as w:
        w.write(b"a")
        w.write(memoryview(b"bc"))
    assert not buf.closed and w.records_written == 2
    assert list(read_records(io.BytesIO(buf.getvalue()))) == [b"a", b"bc"]
    gz = io.BytesIO()
    with RecordWriter(gz, compression="gzip") as w:
        w.write(b"x" * 10000)
    assert gzip.decompress(gz.getvalue()) == encode_record(b"x" * 10000)


def _bomb(length: int, zeros: int, compression: str) -> bytes:
    import struct

    header = struct.pack("<Q", length)
    header += masked_crc(header).to_bytes(4, "little")
    c = zlib.compressobj(9, zlib.DEFLATED, 31 if compression == "gzip" else 15)
    out = [c.compress(header)]
    chunk = bytes(1 << 20)
    for _ in range(zeros >> 20):
        out.append(c.compress(chunk))
    out.append(c.flush())
    return b"".join(out)


@pytest.mark.parametrize("compression", ["gzip", "zlib"])
def test_decompression_bomb_is_an_error_without_inflating_it(compression):
    import tracemalloc

    bomb = _bomb(1 << 33, 64 << 20, compression)  # a 8 GiB record claimed, 64 MiB of zeros
    assert len(bomb) < 100_000
    tracemalloc.start()
    with pytest.raises(RecordTooLargeError) as info:
        list(read_records(io.BytesIO(bomb), compression=compression, max_record_bytes=16 << 20))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert info.value.index == 0 and info.value.offset == 0
    assert peak < 48 << 20
    # zeros alone: the first header's CRC fails at once
    zeros = zlib.compress(bytes(32 << 20), 9) if compression == "zlib" else gzip.compress(bytes(32 << 20), 9)
    with pytest.raises(CorruptRecordError):
        list(read_records(io.BytesIO(zeros), compression=compression))


def test_record_too_large_limit_is_configurable(tmp_path):
    out = tmp_path / "big"
    write_records(out, [b"x" * 5000])
    with pytest.raises(RecordTooLargeError, match="max_record_bytes=4096"):
        list(read_records(out, max_record_bytes=4096))
    assert list(read_records(out, max_record_bytes=5000)) == [b"x" * 5000]


def test_a_callers_file_object_is_not_closed():
    gz = A2O_GZIP_SHARDS[0].read_bytes()
    for data in (gz, A2O_SHARDS[0].read_bytes()):
        f = io.BytesIO(data)
        assert len(list(read_records(f))) == 5
        assert not f.closed
