"""The inflate backends: zlib-ng when installed, the stdlib ``zlib`` otherwise.

Every compression behaviour of the reader (round trip, gzip members, truncation,
damage, the bomb limit) runs under each backend, and the backends must agree
byte for byte and message for message: zlib-ng was chosen because it keeps the
stdlib's ``decompressobj`` semantics exactly (see benchmarks/inflate.py).
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import sys
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfrecord_numpy import (
    CompressionError,
    CorruptRecordError,
    RecordTooLargeError,
    TFRecordError,
    TruncatedRecordError,
    read_records,
    write_records,
)
from tfrecord_numpy import compression as comp
from tfrecord_numpy.compression import DecompressingReader, StreamTruncated
from tfrecord_numpy.framing import encode_record, encode_records, masked_crc

HAVE_ZLIB_NG = True
try:
    import zlib_ng  # noqa: F401
except ImportError:
    HAVE_ZLIB_NG = False

BACKENDS = [
    pytest.param("zlib-ng", marks=pytest.mark.skipif(not HAVE_ZLIB_NG, reason="zlib-ng not installed")),
    "zlib",
]
RECORDS = [bytes(range(256)) * k + bytes(5000 * (k % 3)) for k in range(12)]
STREAM = encode_records(RECORDS)


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch) -> comp.InflateBackend:
    """The backend under test, made the one every new reader uses."""
    b = comp.load_backend(request.param)
    monkeypatch.setattr(comp, "BACKEND", b)
    return b


def _read(data: bytes, compression: str | None, **kw) -> tuple[list[bytes], TFRecordError | None]:
    got: list[bytes] = []
    try:
        for r in read_records(io.BytesIO(data), compression=compression, **kw):
            got.append(r)
    except TFRecordError as exc:
        return got, exc
    return got, None


def _read_with(backend: comp.InflateBackend, data: bytes, compression: str | None) -> tuple[int, str | None, str]:
    """(records read, error class, error message) of reading ``data`` with ``backend``."""
    saved = comp.BACKEND
    comp.BACKEND = backend
    try:
        got, err = _read(data, compression)
    finally:
        comp.BACKEND = saved
    return len(got), type(err).__name__ if err else None, str(err) if err else ""


def _inflate_all(data: bytes, compression: str, backend: comp.InflateBackend, **kw) -> bytes:
    with DecompressingReader(io.BytesIO(data), compression, backend=backend, **kw) as r:
        return r.read()


# --------------------------------------------------------------------------- selection


def test_the_fast_backend_is_used_when_installed():
    zng = pytest.importorskip("zlib_ng")
    assert comp.select_backend("auto").name == "zlib-ng"
    assert comp.select_backend("auto").decompressobj is zng.zlib_ng.decompressobj
    if os.environ.get(comp.BACKEND_ENV, "auto").strip().lower() in ("", "auto"):
        assert comp.BACKEND.name == "zlib-ng"
        reader = DecompressingReader(io.BytesIO(gzip.compress(STREAM)), "gzip")
        assert reader._backend is comp.BACKEND  # what read_records' readers get


def test_stdlib_fallback_when_zlib_ng_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "zlib_ng", None)  # import zlib_ng -> ImportError
    monkeypatch.delenv(comp.BACKEND_ENV, raising=False)
    assert comp.select_backend() is comp.STDLIB
    with pytest.raises(ImportError, match="zlib-ng"):
        comp.select_backend("zlib-ng")


def test_environment_forces_a_backend(monkeypatch):
    monkeypatch.setenv(comp.BACKEND_ENV, "zlib")
    assert comp.select_backend() is comp.STDLIB
    monkeypatch.setenv(comp.BACKEND_ENV, "Auto ")
    assert comp.select_backend().name == ("zlib-ng" if HAVE_ZLIB_NG else "zlib")
    monkeypatch.setenv(comp.BACKEND_ENV, "brotli")
    with pytest.raises(ValueError, match="unknown inflate backend 'brotli'"):
        comp.select_backend()


# --------------------------------------------------------------------------- behaviours, per backend


@pytest.mark.parametrize("compression", ["gzip", "zlib"])
def test_round_trip(backend, tmp_path, compression):
    out = tmp_path / "f.tfrecord"
    write_records(out, RECORDS, compression=compression)
    assert list(read_records(out, compression=compression)) == RECORDS


@pytest.mark.parametrize("compression", ["gzip", "zlib"])
@pytest.mark.parametrize("input_chunk", [1, 7, 4096])
def test_small_input_chunks_and_bounded_reads(backend, compression, input_chunk):
    """Tiny input blocks (the header split across reads) and ``read(n)`` never past ``n``."""
    data = gzip.compress(STREAM) if compression == "gzip" else zlib.compress(STREAM)
    assert _inflate_all(data, compression, backend, input_chunk=input_chunk) == STREAM
    with DecompressingReader(io.BytesIO(data), compression, backend=backend, input_chunk=input_chunk) as r:
        parts = []
        while part := r.read(1000):
            assert len(part) <= 1000
            parts.append(part)
    assert b"".join(parts) == STREAM


def test_concatenated_gzip_members_and_zero_padding(backend):
    a, b = encode_records(RECORDS[:5]), encode_records(RECORDS[5:])
    blob = gzip.compress(a) + gzip.compress(b) + gzip.compress(b"") + bytes(512)
    assert _read(blob, "gzip") == (RECORDS, None)


def test_trailing_data_after_zlib_is_an_error(backend):
    got, err = _read(zlib.compress(STREAM) + b"junk", "zlib")
    assert isinstance(err, CompressionError) and "trailing data after the zlib stream" in str(err)


def test_garbage_after_a_gzip_member_is_an_error(backend):
    got, err = _read(gzip.compress(STREAM) + b"junk", "gzip")
    assert got == RECORDS
    assert type(err) is CompressionError and "not a valid gzip stream" in str(err)


@pytest.mark.parametrize("compression", ["gzip", "zlib"])
def test_truncated_stream(backend, compression):
    data = gzip.compress(STREAM) if compression == "gzip" else zlib.compress(STREAM)
    cut = data[: len(data) - 20]
    with pytest.raises(StreamTruncated, match=f"^{compression} stream ends before its end marker"):
        _inflate_all(cut, compression, backend)
    got, err = _read(cut, compression)
    assert type(err) is TruncatedRecordError
    assert got == RECORDS[: len(got)] and len(got) == err.index
    assert f"{compression} stream ends before its end marker (after " in str(err)
    # the same records and the same message (decompressed bytes, index, offset) as the stdlib's
    assert _read_with(backend, cut, compression) == _read_with(comp.STDLIB, cut, compression)


def _gzip_with_all_header_fields(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = c.compress(data) + c.flush()
    head = b"\x1f\x8b\x08\x1e" + bytes(6) + struct.pack("<H", 2) + b"xy" + b"name\x00" + b"comment\x00"
    head += struct.pack("<H", zlib.crc32(head) & 0xFFFF)
    return head + body + struct.pack("<II", zlib.crc32(data), len(data))


def _damaged() -> dict[str, tuple[str, bytes]]:
    gz, zz = gzip.compress(STREAM, mtime=0), zlib.compress(STREAM)
    full = _gzip_with_all_header_fields(STREAM)

    def flip(b: bytes, i: int, bit: int = 1) -> bytes:
        out = bytearray(b)
        out[i] ^= bit
        return bytes(out)

    zdict = zlib.compressobj(6, zlib.DEFLATED, 15, 8, 0, zdict=b"dictionary")
    return {
        "gzip data CRC": ("gzip", flip(gz, -6)),
        "gzip ISIZE": ("gzip", flip(gz, -1)),
        "gzip header CRC": ("gzip", flip(full, 27)),  # FHCRC: the two bytes after the comment
        "gzip reserved flag": ("gzip", gz[:3] + b"\x20" + gz[4:]),
        "gzip method": ("gzip", gz[:2] + b"\x07" + gz[3:]),
        "gzip block type": ("gzip", gz[:10] + bytes([gz[10] | 0b110]) + gz[11:]),  # BTYPE 11: reserved
        "zlib Adler-32": ("zlib", flip(zz, -1)),
        "zlib header check": ("zlib", flip(zz, 1)),
        "zlib window size": ("zlib", bytes([0x88, (31 - (0x88 << 8) % 31) % 31]) + zz[2:]),
        "zlib preset dictionary": ("zlib", zdict.compress(STREAM) + zdict.flush()),
        "gzip read as zlib": ("zlib", gz),
        "zlib read as gzip": ("gzip", zz),
    }


DAMAGED = _damaged()


def test_gzip_header_fields_are_read(backend):
    assert _read(_gzip_with_all_header_fields(STREAM), "gzip") == (RECORDS, None)


@pytest.mark.parametrize("case", sorted(DAMAGED))
def test_damaged_stream_is_a_compression_error(backend, case):
    compression, data = DAMAGED[case]
    got, err = _read(data, compression)
    assert type(err) is CompressionError, err
    assert f"not a valid {compression} stream: " in str(err)
    assert got == RECORDS[: len(got)]
    # the same records before the error and the same message as the stdlib's
    assert _read_with(backend, data, compression) == _read_with(comp.STDLIB, data, compression)


def _bomb(length: int, zeros: int, compression: str) -> bytes:
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
def test_bomb_limit(backend, compression):
    import tracemalloc

    bomb = _bomb(1 << 33, 64 << 20, compression)  # an 8 GiB record claimed, 64 MiB of zeros
    tracemalloc.start()
    try:
        with pytest.raises(RecordTooLargeError) as info:
            list(read_records(io.BytesIO(bomb), compression=compression, max_record_bytes=16 << 20))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.value.index == 0 and info.value.offset == 0
    assert peak < 48 << 20
    # the stream itself: one read returns at most what was asked for
    with DecompressingReader(io.BytesIO(bomb), compression, backend=backend) as r:
        assert len(r.read(1 << 20)) <= 1 << 20
    zeros = gzip.compress(bytes(8 << 20), 9) if compression == "gzip" else zlib.compress(bytes(8 << 20), 9)
    assert isinstance(_read(zeros, compression)[1], CorruptRecordError)


# --------------------------------------------------------------------------- the backends agree


@pytest.mark.skipif(not HAVE_ZLIB_NG, reason="zlib-ng not installed")
@settings(max_examples=150, deadline=None)
@given(
    compression=st.sampled_from(["gzip", "zlib"]),
    records=st.lists(st.binary(max_size=3000) | st.integers(0, 70_000).map(bytes), min_size=1, max_size=8),
    cut=st.integers(min_value=0),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 7)), max_size=2),
    level=st.sampled_from([1, 6, 9]),
)
def test_zlib_ng_and_stdlib_agree_on_any_damage(compression, records, cut, flips, level):
    """Truncated anywhere, bits flipped anywhere: the same records, error class and message."""
    stream = encode_records(records)
    data = bytearray(gzip.compress(stream, level) if compression == "gzip" else zlib.compress(stream, level))
    for pos, bit in flips:
        data[pos % len(data)] ^= 1 << bit
    data = data[: len(data) - cut % (len(data) + 1)]
    zng = comp.load_backend("zlib-ng")
    assert _read_with(zng, bytes(data), compression) == _read_with(comp.STDLIB, bytes(data), compression)


@pytest.mark.skipif(not HAVE_ZLIB_NG, reason="zlib-ng not installed")
def test_zlib_ng_and_stdlib_agree_at_every_cut():
    """Every truncation point of a small gzip file: the same records and the same message."""
    data = gzip.compress(encode_record(b"a" * 300) + encode_record(bytes(range(256)) * 3), 6)
    zng = comp.load_backend("zlib-ng")
    for cut in range(len(data) + 1):
        assert _read_with(zng, data[:cut], "gzip") == _read_with(comp.STDLIB, data[:cut], "gzip"), cut
