"""Byte-range splits of one TFRecord file: every record exactly once, even with fake headers."""

from __future__ import annotations

import uuid

import fsspec
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import A2O_GZIP_SHARDS, A2O_SHARDS
from tfrecord_numpy import CorruptRecordError, TFRecordError, TruncatedRecordError, read_records
from tfrecord_numpy.framing import HEADER_BYTES, encode_record, encode_records
from tfrecord_numpy.split import (
    NeedMore,
    SplitReport,
    find_record_start,
    iter_split_records,
    plan_splits,
    reconcile_splits,
    shift_error,
)


def _memory_file(data: bytes) -> str:
    url = f"memory://tfn-split/{uuid.uuid4().hex}"
    with fsspec.open(url, "wb") as f:
        f.write(data)
    return url


def _drop(url: str) -> None:
    fsspec.filesystem("memory").rm(url.removeprefix("memory://"))


def _run(url: str, start: int, end: int, known: bool, chunk_bytes: int) -> tuple[SplitReport, list[bytes]]:
    split = iter_split_records(url, start, end, known_start=known, chunk_bytes=chunk_bytes)
    records: list[bytes] = []
    error = None
    try:
        for i, offset, view in split:
            assert i == len(records) and start <= offset < end
            records.append(bytes(view))
    except TFRecordError as exc:
        error = exc
    return split.report(error), records


def read_by_splits(
    url: str, splits: list[tuple[int, int]], chunk_bytes: int = 4096
) -> tuple[list[bytes], list[SplitReport], int]:
    """The coordinator protocol, serially: run every split blind, reconcile, re-run."""
    runs = [_run(url, s, e, s == 0, chunk_bytes) for s, e in splits]
    reruns = []

    def rerun(i: int, boundary: int) -> SplitReport:
        reruns.append(i)
        runs[i] = _run(url, boundary, splits[i][1], True, chunk_bytes)
        return runs[i][0]

    accepted = reconcile_splits([r for r, _ in runs], rerun)
    out: list[bytes] = []
    for i, report in enumerate(accepted):
        if report.error is not None:
            raise shift_error(report.error, report.index_base)
        assert report.index_base == len(out)
        out.extend(runs[i][1])
    assert len(accepted) == len(splits)
    return out, accepted, len(reruns)


# --------------------------------------------------------------------------- sans-I/O


def test_core_never_imports_dask():
    import subprocess
    import sys

    code = (
        "import sys, tfrecord_numpy, tfrecord_numpy.a2o, tfrecord_numpy.perch.local, tfrecord_numpy.split, "
        "tfrecord_numpy.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed', 'pandas'))\n"
        "assert not bad, bad"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_find_record_start_basic_and_need_more():
    recs = encode_records([b"alpha", b"b" * 100, b""])
    assert find_record_start(recs, 0) == 0
    assert find_record_start(recs, 1000) == 1000
    second = len(encode_record(b"alpha"))
    assert find_record_start(recs[1:], 1) == second
    # only part of the second record: asks for exactly the rest of it
    got = find_record_start(recs[1 : second + 20], 1)
    assert got == NeedMore(keep=second, want=HEADER_BYTES + 100 + 4)
    # the same bytes at the end of the file: no whole record there
    assert find_record_start(recs[1 : second + 20], 1, at_eof=True) is None
    # nothing but noise: keep only the last 11 bytes (a header may start there)
    noise = bytes(range(1, 200))
    assert find_record_start(noise, 50) == NeedMore(keep=50 + len(noise) - 11, want=HEADER_BYTES)
    assert find_record_start(b"", 7) == NeedMore(keep=7, want=HEADER_BYTES)
    assert find_record_start(b"", 7, at_eof=True) is None


def test_find_record_start_respects_max_record_bytes():
    rec = encode_record(b"x" * 300)
    assert find_record_start(rec, 0, max_record_bytes=299) == NeedMore(keep=len(rec) - 11, want=HEADER_BYTES)
    assert find_record_start(rec, 0, max_record_bytes=299, at_eof=True) is None
    assert find_record_start(rec, 0, max_record_bytes=300, at_eof=True) == 0
    # a huge max (no zero-byte prefilter) finds it too
    assert find_record_start(rec, 0, max_record_bytes=1 << 62, at_eof=True) == 0


def test_find_record_start_payload_crc_must_match():
    good = encode_record(b"payload")
    bad = bytearray(good)
    bad[-1] ^= 1
    assert find_record_start(bytes(bad) + good, 0, at_eof=True) == len(good)


# --------------------------------------------------------------------------- planning


def test_plan_splits_cover_the_file(tmp_path):
    data = encode_records([bytes(100)] * 50)
    p = tmp_path / "f.tfrecord"
    p.write_bytes(data)
    for split_bytes in (1, 7, 100, 1000, len(data) - 1, len(data), 10 * len(data)):
        splits = plan_splits(str(p), split_bytes=split_bytes)
        assert splits[0][0] == 0 and splits[-1][1] == len(data)
        assert all(a[1] == b[0] for a, b in zip(splits, splits[1:]))
        assert all(e - s <= split_bytes for s, e in splits)  # uncompressed: no whole-file exception
        assert len(splits) == -(-len(data) // split_bytes)
    assert plan_splits(str(p), split_bytes=len(data)) == [(0, len(data))]
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert plan_splits(str(empty), split_bytes=10) == [(0, 0)]
    with pytest.raises(ValueError):
        plan_splits(str(p), split_bytes=0)


def test_plan_splits_compressed_is_one_split(tmp_path):
    gz = A2O_GZIP_SHARDS[0]
    assert plan_splits(str(gz), split_bytes=1000) == [(0, gz.stat().st_size)]
    # gzip without the suffix: found by its magic bytes
    hidden = tmp_path / "noext"
    hidden.write_bytes(gz.read_bytes())
    assert plan_splits(str(hidden), split_bytes=1000) == [(0, gz.stat().st_size)]
    plain = A2O_SHARDS[0]
    assert len(plan_splits(str(plain), split_bytes=100_000)) > 1
    assert plan_splits(str(plain), split_bytes=100_000, compression="gzip") == [(0, plain.stat().st_size)]


# --------------------------------------------------------------------------- reading splits


def test_golden_shard_by_splits():
    shard = str(A2O_SHARDS[0])
    want = list(read_records(shard))
    for split_bytes in (50_000, 300_000, 10 << 20):
        got, accepted, reruns = read_by_splits(shard, plan_splits(shard, split_bytes=split_bytes), 1 << 16)
        assert got == want and reruns == 0
        assert accepted[-1].end_boundary == A2O_SHARDS[0].stat().st_size


def test_fake_header_is_caught_and_rerun_from_the_known_boundary():
    fake = encode_records([b"fake-one", b"fake-two"])
    real = [b"A" * 40 + fake + b"B" * 40, b"second", b"third" * 30]
    data = encode_records(real)
    url = _memory_file(data)
    try:
        fake_at = HEADER_BYTES + 40
        split = iter_split_records(url, fake_at - 3, len(data))
        recs = []
        with pytest.raises(CorruptRecordError):  # the fake chain runs into "B" * 40
            for _, _, v in split:
                recs.append(bytes(v))
        assert split.sync == fake_at and recs == [b"fake-one", b"fake-two"]
        got, accepted, reruns = read_by_splits(url, [(0, fake_at - 3), (fake_at - 3, len(data))])
        assert got == real and reruns == 1
        assert accepted[1].known_start and accepted[1].sync == len(encode_record(real[0]))
    finally:
        _drop(url)


def test_known_start_never_scans():
    data = encode_records([b"one", b"two"])
    url = _memory_file(data)
    try:
        with pytest.raises(CorruptRecordError) as info:
            list(iter_split_records(url, 1, len(data), known_start=True))
        assert info.value.offset == 1
    finally:
        _drop(url)


def test_split_errors_are_located_in_the_whole_file():
    recs = [bytes([i]) * 50 for i in range(10)]
    data = bytearray(encode_records(recs))
    size = len(encode_record(recs[0]))
    data[7 * size + 20] ^= 0xFF  # payload of record 7
    url = _memory_file(bytes(data))
    try:
        with pytest.raises(CorruptRecordError) as whole:
            list(read_records(url))
        with pytest.raises(CorruptRecordError) as split:
            read_by_splits(url, plan_splits(url, split_bytes=3 * size + 5))
        assert (split.value.index, split.value.offset) == (whole.value.index, whole.value.offset) == (7, 7 * size)
    finally:
        _drop(url)


def test_truncated_tail_by_splits():
    data = encode_records([b"x" * 100] * 6)
    url = _memory_file(data[:-30])
    try:
        with pytest.raises(TruncatedRecordError) as whole:
            list(read_records(url))
        with pytest.raises(TruncatedRecordError) as split:
            read_by_splits(url, plan_splits(url, split_bytes=150))
        assert (split.value.index, split.value.offset) == (whole.value.index, whole.value.offset)
    finally:
        _drop(url)


# --------------------------------------------------------------------------- the property


_plain = st.binary(min_size=0, max_size=120)


@st.composite
def _payload(draw, depth: int = 0):
    """A payload; often one that holds complete framed records (fake headers with valid CRCs)."""
    kind = draw(st.sampled_from(["plain", "plain", "nested", "nested", "exact", "zeros"] if depth < 2 else ["plain"]))
    if kind == "plain":
        return draw(_plain)
    if kind == "zeros":
        return bytes(draw(st.integers(0, 80)))
    inner = draw(st.lists(_payload(depth + 1), min_size=1, max_size=3))
    framed = encode_records(inner)
    if kind == "exact":  # the payload is itself a valid TFRecord stream
        return framed
    return draw(_plain) + framed + draw(_plain)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    payloads=st.lists(_payload(), min_size=0, max_size=12),
    cuts=st.lists(st.floats(0, 1, exclude_min=True, exclude_max=True), max_size=8),
    chunk_bytes=st.sampled_from([12, 33, 4096]),
)
def test_splits_deliver_every_record_exactly_once(payloads, cuts, chunk_bytes):
    data = encode_records(payloads)
    size = len(data)
    points = sorted({int(c * size) for c in cuts} - {0, size})
    bounds = [0, *points, size]
    splits = [(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)] or [(0, 0)]
    url = _memory_file(data)
    try:
        got, accepted, reruns = read_by_splits(url, splits, chunk_bytes)
        assert got == list(read_records(url)) == payloads
        assert sum(r.records for r in accepted) == len(payloads)
        assert accepted[-1].end_boundary == size
        if reruns:
            event("a split synced on a fake header and was re-run")
    finally:
        _drop(url)
