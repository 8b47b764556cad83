"""Embeddings read straight into the output array: same answers as the general path."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import A2O_SHARDS, CORRUPT
from test_extract import _entry, _feature, _varint
from tfrecord_numpy import CorruptRecordError, TruncatedRecordError, read_records, write_records
from tfrecord_numpy.perch.direct import DoesNotFit, iter_a2o_into
from tfrecord_numpy.perch.records import decode_a2o_record
from tfrecord_numpy.perch.synth import iter_a2o_records
from tfrecord_numpy.tensor import serialize_tensor


def _general(records: list[bytes]):
    return [decode_a2o_record(memoryview(r)) for r in records]


def _direct(records: list[bytes], out: np.ndarray | None = None):
    want = _general(records)
    if out is None:
        rows = sum(r.embedding.shape[0] * r.embedding.shape[1] for r in want)
        out = np.zeros((rows, want[0].embedding.shape[2]), want[0].embedding.dtype)
    blob = io.BytesIO()
    write_records(blob, records)
    got = [(rec, row) for _, _, rec, row in iter_a2o_into(io.BytesIO(blob.getvalue()), out)]
    return want, got, out


def _assert_same(want, got, out):
    assert len(want) == len(got)
    row = 0
    for w, (g, first) in zip(want, got):
        assert first == row
        assert g.filename == w.filename
        assert np.float32(g.timestamp_s).tobytes() == np.float32(w.timestamp_s).tobytes()
        assert g.embedding.dtype == w.embedding.dtype and g.embedding.shape == w.embedding.shape
        assert g.embedding.tobytes() == w.embedding.tobytes()
        assert np.shares_memory(g.embedding, out)
        row += w.embedding.shape[0] * w.embedding.shape[1]
    assert row == len(out)


@pytest.mark.parametrize("shard", A2O_SHARDS, ids=lambda p: p.name)
def test_corpus(shard):
    _assert_same(*_direct(list(read_records(shard))))


def test_float16_short_minutes_and_logits_heads():
    recs = list(iter_a2o_records(7, dims=24, dtype="float16", minutes_per_recording=3, last_windows=2, nuisances=True))
    _assert_same(*_direct(recs))


def _record(emb, ts=60.0, name=b"20201014T010000+1030_Arkaba-Dry-A_49500.flac", order=(0, 1, 2, 3), unpacked_ts=False):
    shape = b"".join(_varint(d) for d in emb.shape)
    ts_feature = (
        (b"\x12" + _varint(5) + b"\x0d" + np.float32(ts).tobytes())
        if unpacked_ts
        else _feature(0x12, np.float32(ts).tobytes())
    )
    entries = [
        _entry(b"embedding_shape", _feature(0x1A, shape)),
        _entry(b"embedding", _feature(0x0A, serialize_tensor(emb))),
        _entry(b"filename", _feature(0x0A, name)),
        _entry(b"timestamp_s", ts_feature),
    ]
    body = b"".join(entries[i] for i in order)
    return b"\x0a" + _varint(len(body)) + body


@settings(max_examples=80, deadline=None)
@given(
    T=st.integers(1, 5),
    C=st.integers(1, 4),
    D=st.integers(1, 40),
    dtype=st.sampled_from(["float32", "float16", "float64"]),
    order=st.permutations([0, 1, 2, 3]),
    unpacked=st.booleans(),
    n=st.integers(1, 4),
)
def test_any_layout_gives_the_general_answer(T, C, D, dtype, order, unpacked, n):
    recs = [
        _record(
            np.arange(T * C * D, dtype=dtype).reshape(T, C, D) + i,
            ts=60.0 * i,
            order=tuple(order),
            unpacked_ts=unpacked,
        )
        for i in range(n)
    ]
    _assert_same(*_direct(recs))


def _damaged(offset_in_record1: int) -> bytes:
    recs = list(read_records(A2O_SHARDS[0]))[:3]
    blob = io.BytesIO()
    write_records(blob, recs)
    data = bytearray(blob.getvalue())
    data[len(recs[0]) + 16 + offset_in_record1] ^= 0x01
    return bytes(data)


@pytest.mark.parametrize(
    "where,which", [(3, "length"), (12 + 500, "data"), (12 + 307_000, "data"), (12 + 307_370, "data")]
)
def test_damage_anywhere_is_found(where, which):
    out = np.zeros((180, 1280), np.float32)
    got = []
    with pytest.raises(CorruptRecordError) as info:
        for index, offset, rec, row in iter_a2o_into(io.BytesIO(_damaged(where)), out, path="x"):
            got.append(index)
    assert got == [0] and info.value.index == 1 and info.value.offset == 307390 and info.value.which == which


@pytest.mark.parametrize("name", ["truncated_in_payload_r1", "truncated_in_header_r1", "trailing_garbage_5b"])
def test_truncation_is_found(name):
    out = np.zeros((180, 1280), np.float32)
    with pytest.raises(TruncatedRecordError) as info:
        for _ in iter_a2o_into(io.BytesIO((CORRUPT / name).read_bytes()), out, path=name):
            pass
    assert info.value.offset in (307390, 614780)


def test_a_record_that_does_not_fit_is_refused_before_writing():
    recs = list(read_records(A2O_SHARDS[0]))
    with pytest.raises(DoesNotFit):
        _direct(recs, out=np.zeros((300, 1280), np.float16))
    out = np.full((100, 1280), 7, np.float32)  # room for one record of 60 rows, not two
    with pytest.raises(DoesNotFit):
        _direct(recs, out=out)
    assert np.all(out[60:] == 7)


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_damaged_streams_end_in_our_errors_or_the_general_answer(data):
    """Random bit flips and cuts: an error of ours (or DoesNotFit), or the same
    records the general reader + decoder give for the same bytes."""
    from tfrecord_numpy import TFRecordError

    emb = np.arange(2 * 3 * 50, dtype=np.float32).reshape(2, 3, 50)
    recs = [_record(emb + i, ts=60.0 * i) for i in range(3)]
    blob = io.BytesIO()
    write_records(blob, recs)
    raw = bytearray(blob.getvalue())
    for _ in range(data.draw(st.integers(0, 3))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    raw = bytes(raw[: data.draw(st.integers(0, len(raw)))])
    out = np.zeros((18, 50), np.float32)
    got, err = [], None
    try:
        for _, _, rec, _ in iter_a2o_into(io.BytesIO(raw), out):
            got.append((rec.filename, np.float32(rec.timestamp_s).tobytes(), rec.embedding.tobytes()))
    except (TFRecordError, DoesNotFit) as exc:
        err = exc
    want, want_err = [], None
    try:
        for r in read_records(io.BytesIO(raw), compression=None):
            d = decode_a2o_record(memoryview(r))
            want.append((d.filename, np.float32(d.timestamp_s).tobytes(), d.embedding.tobytes()))
    except TFRecordError as exc:
        want_err = exc
    assert got == want[: len(got)]
    if err is None:
        assert want_err is None and got == want


class _CountingStream(io.BytesIO):
    """A stream that counts the reads the direct path makes."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def readinto(self, b) -> int:  # type: ignore[override]
        self.reads += 1
        return super().readinto(b)


def test_direct_reads_twice_per_record_and_parses_a_repeated_layout_once(monkeypatch):
    """The next record's header and prefix come with the previous record's tail,
    and a layout seen on the previous record (same bytes before the tensor, same
    length) is not parsed again."""
    import tfrecord_numpy.perch.fastpath as fastpath

    records = list(iter_a2o_records(40, windows=2, channels=3, dims=16, seed=3))
    parsed = []
    real = fastpath.embedding_layout
    monkeypatch.setattr(fastpath, "embedding_layout", lambda p, n: parsed.append(n) or real(p, n))
    blob = io.BytesIO()
    write_records(blob, records)
    stream = _CountingStream(blob.getvalue())
    want = _general(records)
    out = np.zeros((40 * 6, 16), np.float32)
    got = [(rec, row) for _, _, rec, row in iter_a2o_into(stream, out)]
    _assert_same(want, got, out)
    assert stream.reads <= 2 * 40 + 3  # tensor bytes, then tail + next lead; the first lead; EOF twice
    # the layout is parsed again only where the bytes before the tensor changed
    heads = {bytes(memoryview(r)[: real(memoryview(r)[:256], len(r)).content_start]) for r in records}
    assert len(parsed) <= len(heads) + 1 < 40


def test_direct_layout_memo_never_serves_a_record_whose_head_changed():
    """Records of one length whose bytes before the tensor differ (another dtype
    or shape of the same size) are parsed, not taken from the previous record."""
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    b = np.arange(24, dtype=np.int32).reshape(2, 3, 4)  # same bytes, another dtype
    recs = [
        _entry_record(a),
        _entry_record(b),
    ]
    assert len(recs[0]) == len(recs[1])
    out = np.zeros((12, 4), np.float32)
    with pytest.raises(DoesNotFit):
        list(iter_a2o_into(io.BytesIO(_framed(recs)), out))


def _entry_record(arr: np.ndarray) -> bytes:
    from tfrecord_numpy.perch.synth import a2o_example

    return a2o_example("20200101T000000Z_Arkaba-Dry-A_1.flac", 0.0, arr)


def _framed(records: list[bytes]) -> bytes:
    blob = io.BytesIO()
    write_records(blob, records)
    return blob.getvalue()


def _same_record(got, want) -> None:
    assert got.filename == want.filename
    assert np.float32(got.timestamp_s).tobytes() == np.float32(want.timestamp_s).tobytes()
    assert got.embedding.dtype == want.embedding.dtype and got.embedding.shape == want.embedding.shape
    assert got.embedding.tobytes() == want.embedding.tobytes()


@settings(max_examples=80, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 3), st.integers(1, 9)), min_size=1, max_size=5),
    dtypes=st.lists(st.sampled_from(["float32", "float16", "int32", "float64"]), min_size=1, max_size=5),
    order=st.permutations([0, 1, 2, 3]),
    repeats=st.integers(1, 3),
    data=st.data(),
)
def test_memoising_decoder_gives_the_general_answer(shapes, dtypes, order, repeats, data):
    """The job's decoder remembers the last layout; runs of records that keep it,
    change it, or keep their length while changing dtype or shape, all decode
    exactly as decode_a2o_record decodes each alone (errors included)."""
    from tfrecord_numpy import TFRecordError
    from tfrecord_numpy.perch.records import A2ODecoder

    decode = A2ODecoder()
    i = 0
    for shape, dtype in zip(shapes, dtypes):
        for _ in range(repeats):
            raw = bytearray(_record(np.arange(np.prod(shape), dtype=dtype).reshape(shape) + i, 5.0 * i, order=order))
            if data.draw(st.booleans()):  # now and then a flipped bit
                pos = data.draw(st.integers(0, len(raw) - 1))
                raw[pos] ^= 1 << data.draw(st.integers(0, 7))
            view = memoryview(bytes(raw))
            try:
                want = decode_a2o_record(view)
            except TFRecordError as exc:
                with pytest.raises(type(exc)):
                    decode(view)
            else:
                _same_record(decode(view), want)
            i += 1


def test_memoising_decoder_walks_a_repeated_layout_once(monkeypatch):
    import tfrecord_numpy.perch.fastpath as fastpath
    import tfrecord_numpy.perch.records as records_mod

    calls = []
    real = fastpath.embedding_layout
    monkeypatch.setattr(fastpath, "embedding_layout", lambda p, n: calls.append(n) or real(p, n))
    decode = records_mod.A2ODecoder()
    recs = list(read_records(A2O_SHARDS[0]))
    for r in recs:
        _same_record(decode(memoryview(r)), decode_a2o_record(memoryview(r)))
    assert 1 <= len(calls) < len(recs) / 2


def test_tail_memo_walks_a_recordings_tail_once_and_sees_a_changed_name(monkeypatch):
    """After the tensor, records of one recording differ only in timestamp_s: the
    entries are walked once; a same-length but different filename is read anew."""
    import tfrecord_numpy.perch.fastpath as fastpath
    from tfrecord_numpy.perch.records import A2ODecoder

    walks = []
    real = fastpath.other_a2o_features
    monkeypatch.setattr(fastpath, "other_a2o_features", lambda *a: walks.append(1) or real(*a))
    emb = np.arange(2 * 3 * 8, dtype=np.float32).reshape(2, 3, 8)
    names = [b"20200101T000000Z_Arkaba-Dry-A_1.flac"] * 5 + [b"20200101T000000Z_Arkaba-Dry-A_2.flac"] * 5
    recs = [_record(emb + i, ts=60.0 * i, name=n) for i, n in enumerate(names)]
    decode = A2ODecoder()
    for r in recs:
        _same_record(decode(memoryview(r)), decode_a2o_record(memoryview(r)))
    assert len(walks) == 2  # once per recording
    out = np.zeros((60, 8), np.float32)
    walks.clear()
    got = [rec.filename for _, _, rec, _ in iter_a2o_into(io.BytesIO(_framed(recs)), out)]
    assert got == [n.decode() for n in names] and len(walks) == 2
