"""Seed inputs for every fuzz target, built from the golden corpus in tests/data.

The corpus records are TensorFlow-written, so seeds start the fuzzer on real
encodings (packed lists, map order, TensorProto layouts, A2O names) rather
than on random bytes it would need hours to climb out of.  The A2O records are
307 KB each; their seeds keep the real filename, timestamp and layout but a
small embedding, so one input runs in microseconds, not milliseconds.

Built deterministically in memory (tests use them directly); ``make_corpus.py``
writes them to ``fuzz/corpus/<target>/`` for atheris.
"""

from __future__ import annotations

import functools
import gzip
import zlib
from pathlib import Path

import numpy as np

from tfrecord_numpy.example import encode_example, parse_example
from tfrecord_numpy.framing import encode_record, encode_records
from tfrecord_numpy.perch.records import _general_decode
from tfrecord_numpy.reader import read_records
from tfrecord_numpy.tensor import parse_tensor, serialize_tensor

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
#: seeds larger than this are left out (the fuzzer's max_len is about this size)
MAX_SEED = 8192


def _records(path: Path) -> list[bytes]:
    return list(read_records(str(path), compression=None))


@functools.cache
def example_payloads() -> tuple[bytes, ...]:
    """The 22 Examples of examples.tfrecord (7 ordinary, 15 hand-made protobuf quirks)."""
    return tuple(_records(DATA / "examples" / "examples.tfrecord"))


@functools.cache
def tensor_payloads() -> tuple[bytes, ...]:
    """Every serialized TensorProto of tensors.tfrecord (the big one shrunk)."""
    out = []
    for rec in _records(DATA / "tensors" / "tensors.tfrecord"):
        t = parse_example(rec)["tensor"][0]
        if len(t) > MAX_SEED:  # float32_12x5x1280: keep its layout, not its size
            t = serialize_tensor(parse_tensor(t)[:2, :2, :4].copy())
        out.append(t)
    return tuple(out)


@functools.cache
def tensor_examples() -> tuple[bytes, ...]:
    """The small Examples of tensors.tfrecord ({name, tensor}), as Example seeds."""
    return tuple(r for r in _records(DATA / "tensors" / "tensors.tfrecord") if len(r) <= 2048)


@functools.cache
def a2o_fields() -> tuple[tuple[bytes, np.float32, np.ndarray], ...]:
    """(filename, timestamp_s, embedding) of each of the 13 A2O corpus records."""
    out = []
    for shard in sorted((DATA / "a2o").glob("embeddings-*")):
        for rec in _records(shard):
            fn, ts, emb, _ = _general_decode(rec)
            out.append((fn, ts, parse_tensor(emb)))
    return tuple(out)


def small_a2o_record(fn: bytes, ts: np.float32, emb: np.ndarray) -> bytes:
    """An A2O record as TensorFlow lays it out (upb's map order), with ``emb`` as embedding."""
    return encode_example(
        {
            "timestamp_s": np.array([ts], dtype=np.float32),
            "filename": [fn],
            "embedding": [serialize_tensor(emb)],
            "embedding_shape": np.array(emb.shape, dtype=np.int64),
        }
    )


@functools.cache
def a2o_payloads() -> tuple[bytes, ...]:
    """Small-embedding versions of the 13 A2O records, plus a few shapes and dtypes."""
    out = []
    for i, (fn, ts, emb) in enumerate(a2o_fields()):
        t, c, d = [(1, 1, 4), (2, 1, 3), (1, 2, 2), (2, 2, 4)][i % 4]
        out.append(small_a2o_record(fn, ts, np.ascontiguousarray(emb[:t, :c, :d])))
    fn, ts, emb = a2o_fields()[0]
    out.append(small_a2o_record(fn, ts, np.zeros((0, 5, 8), np.float32)))
    out.append(small_a2o_record(fn, ts, emb[:1, :1, :4].astype(np.float16)))
    # a record with an extra logits head, as some Perch exports carry
    extra = parse_example(out[0])
    extra["logits"] = np.arange(3, dtype=np.float32)
    out.append(encode_example(extra))
    return tuple(out)


@functools.cache
def a2o_filenames() -> tuple[bytes, ...]:
    """The corpus's 13 names, plus the edge cases the notebook's regex cares about."""
    names = [fn for fn, _, _ in a2o_fields()]
    names += [
        b"site_0285/20200120T043000+1030_Fowlers-Gap-Wet-B_231604.flac",
        b"20200229T000000Z_Bon-Bon-Station-Dry-A_0007.flac",
        b"20201231T235959-0300_X-Y-Dry-B_1.flac",
        b"20200120T043000+1030_Caf\xc3\xa9-Wet-A_1.flac",
        b"20200120T043000+1030_a-Wet-A_.flac",
        b"20200230T043000+1030_a-Wet-A_1.flac",
        b"20200120T043000+1030_a-Wet-A_1_1xflac",
        b"20200120T043000+9999_a-Wet-A_1.flac",
        b"00010101T000000+2359_a-Wet-A_1.flac",
        b"99991231T235959-2359_a-Wet-A_1.flac",
        b"20200120T043000Z_a-Wet-A_1.flac 20200120T043000Z_b-Dry-B_2.flac",
    ]
    return tuple(names)


def _corrupt_variants(stream: bytes) -> list[bytes]:
    """The damage tests/data/corrupt/ holds, applied to a small stream of records."""
    first = int.from_bytes(stream[:8], "little")
    payload_crc = 12 + first
    out = [
        stream[:payload_crc] + bytes([stream[payload_crc] ^ 1]) + stream[payload_crc + 1 :],  # data CRC
        stream[:8] + bytes([stream[8] ^ 1]) + stream[9:],  # length CRC
        stream[: 12 + first // 2],  # inside a payload
        stream[: 16 + first + 5],  # inside the next header
        stream + b"\x00\x01\x02\x03\x04",  # trailing garbage
        b"",
    ]
    huge = (1 << 62).to_bytes(8, "little")
    out.append(huge + _header_crc(huge) + b"\x00" * 16)  # length 2**62, valid length CRC
    return out


def _header_crc(length8: bytes) -> bytes:
    from tfrecord_numpy.framing import masked_crc

    return masked_crc(length8).to_bytes(4, "little")


@functools.cache
def record_streams() -> tuple[bytes, ...]:
    """Uncompressed TFRecord streams of a few small corpus records, whole and damaged."""
    ex = example_payloads()
    streams = [
        encode_records(ex[:3]),
        encode_records(ex[7:10]),
        encode_records(tensor_payloads()[:4]),
        encode_records(a2o_payloads()[:2]),
        encode_record(b""),
        encode_records([b"", b"a", b"bc"]),
    ]
    streams += _corrupt_variants(streams[0])
    streams += _corrupt_variants(streams[3])
    return tuple(s for s in streams if len(s) <= MAX_SEED)


def gzip_bytes(data: bytes) -> bytes:
    """gzip with a fixed mtime, so seeds are reproducible."""
    return gzip.compress(data, mtime=0)


@functools.cache
def compressed_streams(kind: str) -> tuple[bytes, ...]:
    """``record_streams`` compressed as ``kind``, plus real damaged and multi-member cases."""
    plain = record_streams()[:6]
    if kind == "gzip":
        out = [gzip_bytes(s) for s in plain]
        out.append(gzip_bytes(plain[0]) + gzip_bytes(plain[1]))  # concatenated members
        out.append(gzip_bytes(plain[0]) + b"\x00" * 8)  # zero padding after the last member
        real = (DATA / "corrupt" / "truncated_gzip.gz").read_bytes()
        out.append(real[:2048])  # the corpus's truncated gzip (head only)
        shard = sorted((DATA / "a2o_gzip").iterdir())[0].read_bytes()
        out.append(shard[:1024])
    else:
        out = [zlib.compress(s, 9) for s in plain]
        out.append(zlib.compress(plain[0]) + b"junk")  # trailing data after the stream
        out.append(zlib.compress(plain[0])[:-3])  # truncated
    return tuple(out)


# ----------------------------------------------------------------------------- per target

#: spec table size for example_spec's first byte (kept in sync by fuzz_targets)
SPEC_MODES = 64


def seeds(target: str) -> list[bytes]:
    """The seed inputs of one target (see fuzz_targets.TARGETS for the input layouts)."""
    if target == "records_none":
        return list(record_streams())
    if target in ("records_gzip", "records_zlib"):
        return list(compressed_streams(target.split("_")[1]))
    if target == "records_auto":
        return list(record_streams()[:6]) + list(compressed_streams("gzip")) + list(compressed_streams("zlib"))
    if target == "records_framed":
        # first byte: mode (compression, verify, skip_corrupt, chunk size)
        return [bytes([m]) + s for i, s in enumerate(record_streams()) for m in (i % 256, (i * 37 + 5) % 256)]
    if target == "example":
        return list(example_payloads()) + list(a2o_payloads()) + list(tensor_examples()[:20])
    if target == "example_spec":
        bodies = list(example_payloads()) + list(a2o_payloads()[:4])
        return [bytes([(i * 7) % 256]) + b for i, b in enumerate(bodies)] + [
            bytes([0x80 | (i % 128)]) + b for i, b in enumerate(bodies)
        ]
    if target == "tensor":
        return list(tensor_payloads())
    if target == "a2o_record":
        return list(a2o_payloads())
    if target == "filename":
        return list(a2o_filenames())
    raise KeyError(target)
