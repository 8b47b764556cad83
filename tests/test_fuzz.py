"""A short fuzz run of every target in fuzz/, and a regression test per bug it found.

The targets and their invariants live in ``fuzz/fuzz_targets.py`` (shared with
the atheris harness, see fuzz/README.md): a value or one of our
``TFRecordError``s for every input, peak allocation at most 64 x input +
slack, and the differential checks (fast paths against general ones,
compressed against plain, chunked against whole).  Here they run under the
dependency-free mutation engine for at least ``FUZZ_MIN_INPUTS`` mutants and
at least ``FUZZ_SECONDS`` per target (about 8 s in all), so CI needs no
atheris.  ``FUZZ_SEED`` picks another deterministic stream of inputs.

No check here reads a clock: instead of the harness's 1 s per input (kept for
atheris campaigns), each input's work is counted -- Python and C calls, see
tests/workcount.py -- and bounded by ``WORK_PER_BYTE * size + WORK_SLACK``.
"""

from __future__ import annotations

import gzip
import io
import os
import random
import signal
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

FUZZ_DIR = Path(__file__).resolve().parents[1] / "fuzz"
sys.path.insert(0, str(FUZZ_DIR))

import fuzz_seeds  # noqa: E402
import fuzz_targets as ft  # noqa: E402
from fuzz_mutate import Mutator, varint  # noqa: E402

from tfrecord_numpy import a2o, parse_example, parse_tensor, read_records  # noqa: E402
from tfrecord_numpy.errors import DecodeError, SchemaError, TFRecordError  # noqa: E402
from tfrecord_numpy.example import VarLenFeature, encode_example  # noqa: E402
from tfrecord_numpy.framing import encode_records  # noqa: E402
from tfrecord_numpy.perch.records import decode_a2o_record  # noqa: E402
from tfrecord_numpy.tensor import serialize_shape  # noqa: E402
from workcount import TooMuchWork, calls_of, count_calls, hang_net  # noqa: E402

SECONDS = float(os.environ.get("FUZZ_SECONDS", "0.5"))
MIN_INPUTS = int(os.environ.get("FUZZ_MIN_INPUTS", "100"))
SEED = int(os.environ.get("FUZZ_SEED", "0"))
#: Work bound of one input: calls <= WORK_PER_BYTE * target.size(data) + WORK_SLACK.
#: Measured over seeds and 2-4 s of mutants per target (FUZZ_SEED 0, 1, 2), with
#: 2000 calls taken off as overhead: at most 6.8 calls per counted byte (tensor;
#: records_framed 6.0, example_spec 3.1, a2o_record 2.9, example 2.3, the
#: readers and filename under 1) and at most ~600 calls for inputs under 64
#: bytes.  32 and 10,000 leave 4-5x (16x) of room; a quadratic parser makes
#: millions of calls on a 4 KiB input (see test_work_count_catches_quadratic).
WORK_PER_BYTE = 32
WORK_SLACK = 10_000


def _ld(tag: int, body: bytes) -> bytes:
    """A protobuf length-delimited field with a one-byte tag."""
    return bytes((tag,)) + varint(len(body)) + body


def _entry(key: bytes, feature: bytes) -> bytes:
    return _ld(0x0A, _ld(0x0A, key) + _ld(0x12, feature))


def _example(*entries: bytes) -> bytes:
    return _ld(0x0A, b"".join(entries))


@pytest.fixture(autouse=True, scope="module")
def _harness():
    """The harness lowers tensor.MAX_FILL_BYTES; give the other tests their default back."""
    from tfrecord_numpy import tensor

    saved = tensor.MAX_FILL_BYTES
    ft.setup()
    yield
    tensor.MAX_FILL_BYTES = saved


# ----------------------------------------------------------------------------- the short run


@pytest.mark.parametrize("name", list(ft.TARGETS))
def test_short_fuzz_run(name: str) -> None:
    """Seeds, then mutants for SECONDS: every input keeps every invariant."""
    target = ft.TARGETS[name]
    seeds = fuzz_seeds.seeds(name)
    assert seeds, "every target starts from seeds out of tests/data"
    for s in seeds:
        _run(target, s)
    mut = Mutator(seeds, random.Random(f"{name}:{SEED}"), target.max_len)
    deadline = time.monotonic() + SECONDS  # a budget for more inputs, never a limit
    n = 0
    while n < MIN_INPUTS or time.monotonic() < deadline:
        _run(target, mut.next())
        n += 1


def _run(target: ft.Target, data: bytes) -> None:
    limit = WORK_PER_BYTE * target.size(data) + WORK_SLACK
    try:
        # memory and the differential checks; the hard SIGALRM stays as a hang net
        ft.run_one(target, data, check_time=False)
        calls_of(target.fn, data, expect=TFRecordError, limit=limit)
    except (Exception, TooMuchWork) as exc:
        pytest.fail(
            f"{target.name}: {type(exc).__name__}: {exc}\n"
            f"reproduce: python3 fuzz/run.py {target.name} --reproduce FILE  (FILE holding bytes.fromhex of)\n"
            f"{data.hex()}"
        )


# ----------------------------------------------------------------------------- memory and work

#: 4x the most calls per byte measured on the cases below (3.0, int64_unpacked)
LINEAR_CALLS_PER_BYTE = 12


@pytest.mark.parametrize(
    "case",
    [
        "bytes_list_of_empty_values",
        "bytes_list_of_1_byte_values",
        "int64_one_value_per_packed_chunk",
        "int64_unpacked",
        "float_unpacked",
        "many_features",
        "varlen_bytes",
        "string_tensor_of_empty_strings",
        "tensor_with_a_megabyte_of_dims",
    ],
)
def test_large_adversarial_inputs_stay_linear(case: str) -> None:
    """Fuzz inputs are small, so the 64 x n memory bound and the call bound
    are checked on ~128 KB worst cases too."""
    n = 1 << 17
    spec = None
    if case == "bytes_list_of_empty_values":
        data = _example(_entry(b"k", _ld(0x0A, b"\x0a\x00" * (n // 2))))
    elif case == "bytes_list_of_1_byte_values":
        data = _example(_entry(b"k", _ld(0x0A, b"\x0a\x01A" * (n // 3))))
    elif case == "int64_one_value_per_packed_chunk":
        data = _example(_entry(b"k", _ld(0x1A, b"\x0a\x01\x01" * (n // 3))))
    elif case == "int64_unpacked":
        data = _example(_entry(b"k", _ld(0x1A, b"\x08\x01" * (n // 2))))
    elif case == "float_unpacked":
        data = _example(_entry(b"k", _ld(0x12, b"\x0d\x00\x00\x80\x3f" * (n // 5))))
    elif case == "many_features":
        data = _example(*(_entry(str(i).encode(), b"\x12\x00") for i in range(n // 12)))
    elif case == "varlen_bytes":
        data = _example(_entry(b"k", _ld(0x0A, b"\x0a\x01A" * (n // 3))))
        spec = {"k": VarLenFeature("string")}
    elif case == "string_tensor_of_empty_strings":
        data = b"\x08\x07" + _ld(0x12, serialize_shape((n,))) + _ld(0x22, b"\x00" * n)
    else:
        data = b"\x08\x01" + _ld(0x12, b"\x12\x00" * (n // 2))

    def call() -> None:
        try:
            if data.startswith(b"\x08"):
                parse_tensor(data)
            else:
                parse_example(data, spec)
        except TFRecordError:
            pass

    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    call()
    peak = tracemalloc.get_traced_memory()[1] - base
    if not was:
        tracemalloc.stop()
    assert peak <= ft.MEMORY_FACTOR * len(data) + ft.PARSER_SLACK, f"{peak / len(data):.1f} x the input"
    # linear work: measured 0.8 (float_unpacked) to 3.0 (int64_unpacked) calls
    # per byte, the same per byte at n = 2**14, 2**17 and 2**18, plus < 100
    limit = LINEAR_CALLS_PER_BYTE * len(data) + 1000
    with count_calls(limit) as work:
        call()
    assert work.calls <= limit, f"{work.calls / len(data):.1f} calls per byte"


def test_work_count_catches_quadratic() -> None:
    """The call count is deterministic, grows 2x with a linear job's input and
    stops a quadratic one at its limit long before it would finish."""

    def linear(data: bytes) -> None:
        for b in data:
            abs(b)

    def quadratic(data: bytes) -> None:
        for i in range(len(data)):
            for b in data[:i]:
                abs(b)

    profile = sys.getprofile()
    assert calls_of(linear, bytes(1000)) == calls_of(linear, bytes(1000))
    assert 1000 <= calls_of(linear, bytes(1000)) <= 1010
    assert calls_of(linear, bytes(2000)) - calls_of(linear, bytes(1000)) == 1000
    assert calls_of(quadratic, bytes(200)) >= 200 * 199 // 2
    n = 4096  # the fuzz targets' max_len
    with pytest.raises(TooMuchWork):
        calls_of(quadratic, bytes(n), limit=WORK_PER_BYTE * n + WORK_SLACK)
    with pytest.raises(TooMuchWork):  # an ``except Exception`` in the code cannot hide it
        calls_of(lambda: _swallow(quadratic, bytes(n)), limit=LINEAR_CALLS_PER_BYTE * n + 1000)
    assert sys.getprofile() is profile


def test_hang_net_breaks_an_endless_loop() -> None:
    """The safety net against hangs fires (when, does not matter: nothing is timed)."""
    if not hasattr(signal, "setitimer"):
        pytest.skip("no SIGALRM on this platform")
    with pytest.raises(TooMuchWork, match="hang"), hang_net(0.05):
        while True:
            pass
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def _swallow(fn, data: bytes) -> None:
    try:
        fn(data)
    except Exception:
        pass


# ----------------------------------------------------------------------------- regressions


def test_a2o_sequence_id_longer_than_int_digit_limit_is_schema_error() -> None:
    """a2o.py: int() of a > 4300-digit sequence id raised a bare ValueError."""
    name = "20200120T043000Z_Fowlers-Gap-Wet-B_" + "1" * 5000 + ".flac"
    with pytest.raises(SchemaError, match="5000 digits"):
        a2o.parse_filename(name)
    with pytest.raises(SchemaError):
        a2o.parse_filename(name.encode())
    assert a2o.parse_filename(name.replace("1" * 5000, "1" * 4000)).file_seq_id == int("1" * 4000)


def _small_a2o() -> bytes:
    return fuzz_seeds.a2o_payloads()[0]


def test_fast_path_rejects_padded_tag_before_features() -> None:
    """fastpath.py: a padded Example tag (8A 00) was decoded; TensorFlow skips the field."""
    good = _small_a2o()
    assert good[0] == 0x0A
    bad = b"\x8a\x00" + good[1:]
    ft.t_a2o_record(bad)  # fast and general path agree
    with pytest.raises(SchemaError, match="required"):
        decode_a2o_record(memoryview(bad))


def test_fast_path_rejects_padded_tag_inside_features() -> None:
    """fastpath.py: a padded map-entry tag is a DecodeError in TensorFlow's parser."""
    good = _small_a2o()
    fields = good[1:]
    length, used = _read_varint(fields)
    body = fields[used:]
    padded = b"\x8a\x00" + body[1:]  # the first map entry's tag, padded
    bad = b"\x0a" + varint(len(padded)) + padded
    ft.t_a2o_record(bad)
    with pytest.raises(DecodeError):
        decode_a2o_record(memoryview(bad))


def test_fast_path_padded_tags_everywhere_agree_with_general_path() -> None:
    """Pad each one-byte tag of a real record in turn: both paths always agree."""
    good = _small_a2o()
    for i in range(len(good)):
        if good[i] in (0x0A, 0x12, 0x1A):
            ft.t_a2o_record(good[:i] + bytes((good[i] | 0x80, 0)) + good[i + 1 :])


def _read_varint(b: bytes) -> tuple[int, int]:
    v = shift = i = 0
    while True:
        v |= (b[i] & 0x7F) << shift
        shift += 7
        i += 1
        if b[i - 1] < 0x80:
            return v, i


def test_tensor_repeated_shape_fields_merge_like_protobuf() -> None:
    """tensor.py: a second tensor_shape replaced the first; protobuf (and TF) merge them."""
    two_dims = bytes.fromhex("08161202120012021200")  # uint32, shape {dim{}} shape {dim{}}
    assert parse_tensor(two_dims).shape == (0, 0)
    # shape [7], content, then a shape holding only an unknown field: still [7]
    content = np.arange(7, dtype=np.int8).tobytes()
    t = b"\x08\x06" + _ld(0x12, serialize_shape((7,))) + _ld(0x22, content) + _ld(0x12, b"\x08\x03")
    assert parse_tensor(t).tolist() == list(range(7))
    ft.t_tensor(two_dims)
    ft.t_tensor(t)


def test_tensor_unknown_rank_last_value_wins() -> None:
    """tensor.py: unknown_rank=1 then unknown_rank=0 is a known rank, as in protobuf."""
    t = b"\x08\x01" + _ld(0x12, b"\x18\x01") + _ld(0x12, b"\x18\x00")
    assert parse_tensor(t).shape == ()
    with pytest.raises(SchemaError, match="unknown rank"):
        parse_tensor(b"\x08\x01" + _ld(0x12, b"\x18\x00") + _ld(0x12, b"\x18\x01"))


def test_tensor_empty_tensor_content_means_value_fields() -> None:
    """tensor.py: an empty tensor_content was taken as content (SchemaError); TF zero-fills."""
    assert parse_tensor(bytes.fromhex("080a12002200")).tolist() is False  # bool scalar -> False
    # content, then an empty content: the last one wins, so zeros
    t = b"\x08\x12" + _ld(0x12, b"") + _ld(0x22, b"\x01" * 16) + _ld(0x22, b"")
    assert parse_tensor(t) == np.complex128(0)
    ft.t_tensor(t)


def test_string_tensor_without_values_is_empty_strings() -> None:
    """tensor.py: zero-filling a string tensor gave int 0 elements, not b""."""
    assert parse_tensor(b"\x08\x07").tolist() == b""
    t = b"\x08\x07" + _ld(0x12, serialize_shape((3,)))
    out = parse_tensor(t)
    assert out.dtype == object and out.tolist() == [b"", b"", b""]
    ft.t_tensor(t)


def test_tensor_with_more_than_64_dims_is_schema_error() -> None:
    """tensor.py: numpy's 64-dim limit surfaced as numpy's ValueError."""
    t = b"\x08\x0e" + _ld(0x12, serialize_shape((1,) * 65)) + _ld(0x22, b"\x00\x00")
    with pytest.raises(SchemaError, match="64"):
        parse_tensor(t)
    assert parse_tensor(b"\x08\x0e" + _ld(0x12, serialize_shape((1,) * 64)) + _ld(0x22, b"\x00\x00")).ndim == 64


@pytest.mark.parametrize("dtype", [1, 4, 7, 18])
def test_tensor_zero_size_shape_numpy_cannot_hold_is_schema_error(dtype: int) -> None:
    """tensor.py: [0, 2**62, 2**62] has no elements, yet numpy's reshape raised ValueError."""
    for content in (b"", b"\x00"):
        t = bytes((0x08, dtype)) + _ld(0x12, serialize_shape((0, 1 << 62, 1 << 62))) + _ld(0x22, content)
        with pytest.raises(SchemaError, match="too many elements"):
            parse_tensor(t)


def test_string_tensor_huge_shape_small_content_does_not_allocate() -> None:
    """tensor.py: a [2**30] string tensor allocated 8 GiB before reading its 1-byte content."""
    t = b"\x08\x07" + _ld(0x12, serialize_shape((1 << 30,))) + _ld(0x22, b"\x00")
    was = tracemalloc.is_tracing()
    if not was:
        tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    with pytest.raises(SchemaError, match="cannot hold"):
        parse_tensor(t)
    peak = tracemalloc.get_traced_memory()[1] - base
    if not was:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize(
    "case, data",
    [
        ("6-byte tag", b"\x88\x80\x80\x80\x80\x00\x01" + b"\x12\x00" + b"\x22\x04\x00\x00\x80\x3f"),
        ("6-byte length", b"\x08\x01\x12\x80\x80\x80\x80\x80\x00\x22\x04\x00\x00\x80\x3f"),
        ("dim name not UTF-8", b"\x08\x01\x12\x07\x12\x05\x08\x01\x12\x01\xff\x22\x04\x00\x00\x80\x3f"),
    ],
)
def test_tensor_fast_path_leaves_malformed_encodings_to_protobuf(case: str, data: bytes) -> None:
    """tensor.py: the hand walk accepted tags/lengths/names protobuf (and TF) refuse."""
    with pytest.raises(DecodeError):
        parse_tensor(data)
    ft.t_tensor(data)


def test_tensor_fast_path_leaves_groups_to_protobuf() -> None:
    """tensor.py: an unknown group made the hand walk raise; protobuf skips it."""
    t = b"\x08\x01\x12\x00\x22\x04\x00\x00\x80\x3f\x2b\x2c"
    assert parse_tensor(t) == np.float32(1.0)
    ok_name = b"\x08\x01\x12\x07\x12\x05\x08\x01\x12\x01x\x22\x04\x00\x00\x80\x3f"
    assert parse_tensor(ok_name).tolist() == [1.0]
    ft.t_tensor(t)


@pytest.mark.parametrize("group", ["6b00006c", "6b02006c", "6b03046c", "6b05000000006c"])
def test_protobuf_view_field_number_0_inside_unknown_group(group: str) -> None:
    """example.py: upb skips an unknown group's fields without refusing field number 0."""
    data = bytes.fromhex("0a00" + group)
    assert parse_example(data) == {}
    ft.t_example(data)
    with pytest.raises(DecodeError):
        parse_example(bytes.fromhex("6b046c"))  # an end-group of field 0 still mismatches


def test_protobuf_view_many_tiny_values_stays_under_the_bound() -> None:
    """example.py: spans and per-chunk arrays cost 69x / 94x the input; now plain values."""
    empties = _example(_entry(b"k", _ld(0x0A, b"\x0a\x00" * 1000)))
    assert parse_example(empties)["k"] == [b""] * 1000
    chunks = _example(_entry(b"k", _ld(0x1A, b"\x0a\x01\x05" * 999 + b"\x08\x07" + _ld(0x0A, varint(3) * 60))))
    got = parse_example(chunks)["k"]
    assert got.dtype == np.int64 and got.tolist() == [5] * 999 + [7] + [3] * 60
    mixed = _example(_entry(b"k", _ld(0x1A, b"\x0a\x02\x01\xff") + _ld(0x1A, b"\x0a\x01\x02")))
    with pytest.raises(DecodeError):
        parse_example(mixed)  # a truncated varint inside a short packed chunk is still an error
    neg = _example(_entry(b"k", _ld(0x1A, _ld(0x0A, varint(-1)) + _ld(0x0A, varint(1 << 63)))))
    assert parse_example(neg)["k"].tolist() == [-1, -(1 << 63)]


def _retained_after(fn) -> int:
    """Bytes still allocated after ``fn`` raised and was forgotten, with the cyclic GC off."""
    import gc

    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    gc.collect()
    gc.disable()
    try:
        before = tracemalloc.get_traced_memory()[0]
        try:
            fn()
        except TFRecordError:
            pass
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        gc.enable()
        gc.collect()
        if not was_tracing:
            tracemalloc.stop()


def test_framing_errors_do_not_pin_the_callers_buffer() -> None:
    """framing.py: an error's traceback held _scan's frame and so the whole read
    buffer, in a cycle only the cyclic GC frees (8 MiB per failed read)."""
    from tfrecord_numpy.framing import RecordScanner, decode_records

    bad = fuzz_seeds.record_streams()[6]  # a flipped data CRC

    kept = []

    def scan() -> None:
        buf = bytearray(4 << 20)
        buf[: len(bad)] = bad
        _, _, err = RecordScanner().scan(memoryview(buf)[: len(bad)])
        assert err is not None and err.__traceback__ is None
        kept.append(err)  # the caller keeps the error, not the buffer

    assert _retained_after(scan) < 1 << 20
    assert _retained_after(lambda: RecordScanner().finish(5)) < 1 << 20
    assert _retained_after(lambda: decode_records(bad + bytes(4 << 20))) < 1 << 20


def test_failed_read_records_does_not_pin_its_buffer() -> None:
    """A failed read must not keep its read buffer alive through the error's traceback."""
    bad = fuzz_seeds.record_streams()[6]
    assert _retained_after(lambda: list(read_records(io.BytesIO(bad), compression=None))) < 1 << 20
    big = bad + bytes(4 << 20)  # a buffer that has grown to megabytes before the error
    assert _retained_after(lambda: list(read_records(io.BytesIO(big), compression=None))) < 1 << 20


# ----------------------------------------------------------------------------- harness self-checks


def test_inflated_size_counts_members_and_stops_at_damage() -> None:
    one = gzip.compress(b"a" * 1000, mtime=0)
    assert ft.inflated_size(one + one, ft._GZIP_WBITS) == 2000
    assert ft.inflated_size(one + b"junk", ft._GZIP_WBITS) == 1000
    assert ft.inflated_size(b"\x00" * 10, ft._GZIP_WBITS) == 0


def test_findings_are_reported_not_swallowed() -> None:
    """The harness itself: a foreign exception escapes run_one, ours do not."""

    def boom(data: bytes) -> None:
        if data == b"x":
            raise IndexError("found")
        raise SchemaError("ours")

    t = ft.Target("boom", boom)
    ft.run_one(t, b"y", check_time=False)
    with pytest.raises(IndexError):
        ft.run_one(t, b"x", check_time=False)
    hog = ft.Target("hog", lambda d: bytearray(4 << 20))
    with pytest.raises(ft.Finding, match="peak allocation"):
        ft.run_one(hog, b"z", check_time=False)


def test_framed_target_sees_every_seed_stream() -> None:
    """The framed target's modes all read a good stream back whole."""
    stream = encode_records([b"", b"a", b"bc" * 100])
    for mode in range(256):
        ft.t_records_framed(bytes((mode,)) + stream)
    assert list(read_records(io.BytesIO(gzip.compress(stream)), compression="auto")) == [b"", b"a", b"bc" * 100]


def test_example_round_trip_check_covers_canonical_bytes() -> None:
    for s in fuzz_seeds.example_payloads():
        ft.t_example(s)
    assert encode_example(parse_example(_small_a2o())) == _small_a2o()


@pytest.mark.parametrize(
    "data",
    [
        b"\x08\x11\x12\x01\x12\x02",
        b"\x08\x02\x12\x01\x12\x02",
        b"\x08\x00\x12\x01\x12\n",
        b"\x08\x01\x12\x04\x12\x09\x08\x01\x22\x00",
        b"\x08\x01\x12\x02\x12",
    ],
)
def test_canonical_tensor_scan_stays_inside_the_shape(data: bytes) -> None:
    """Found by the fuzzer: a dim that runs past the shape's end in the
    one-pass layout read must fall back, never index past the buffer."""
    from tfrecord_numpy.tensor import _canonical_tensor

    assert _canonical_tensor(memoryview(data)) is None
    try:
        parse_tensor(data)
    except TFRecordError:
        pass
