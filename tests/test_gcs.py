"""``gs://`` sources and destinations against a real GCS emulator (fake-gcs-server).

What is checked: extraction from and to a bucket gives the golden output;
transient faults (503, dropped connections, bodies cut short) change
nothing in the output; a permanent fault fails after bounded attempts,
naming the URL and the byte offset; objects stored with
``Content-Encoding: gzip`` are read in full where gcsfs's own file object
truncates them; and globs and prefixes list remote shards.
"""

from __future__ import annotations

import gzip
import json
import pickle
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from conftest import A2O, A2O_GZIP_SHARDS, A2O_SHARDS
from gcs_emulator import fast_gcsfs_backoff, fast_remote_backoff, fault_proxy, gcs_bucket, gcs_emulator  # noqa: F401
from tfrecord_numpy import read_records
from tfrecord_numpy.a2o import extract
from tfrecord_numpy.atomic import is_tmp_name
from tfrecord_numpy.framing import RecordScanner
from tfrecord_numpy.reader import iter_record_views
from tfrecord_numpy.remote import RemoteReadError, is_transient, open_input, should_use_remote
from tfrecord_numpy.storage import expand_sources

SITES_PATH = A2O / "site_name_to_id_mapping.json"
SITES = json.loads(SITES_PATH.read_text())
GOLDEN = A2O / "golden"
SMALL_BLOCK = 64 << 10  # many requests per ~1.2 MB shard
GZIP_ENCODED = {"content_encoding": "gzip"}  # gcsfs's spelling of the Content-Encoding metadata


def _pairs(text: str):
    return json.loads(text, object_pairs_hook=lambda kv: kv)  # keeps key order


def assert_golden_local(out: Path, stems: list[str]) -> None:
    for stem in stems:
        assert (out / "embeddings" / f"{stem}.npy").read_bytes() == (GOLDEN / f"{stem}.npy").read_bytes(), stem
        got = (out / "metadata" / f"{stem}.json").read_text()
        assert _pairs(got) == _pairs((GOLDEN / f"{stem}.json").read_text()), stem


def stem_of(p: Path | str) -> str:
    return str(p).rsplit("/", 1)[-1].split(".")[0]


def gcs_fs(options: dict):
    from fsspec.core import url_to_fs

    return url_to_fs("gs://x", **options)[0]


def upload_shards(options: dict, bucket: str, prefix: str, shards: list[Path]) -> list[str]:
    fs = gcs_fs(options)
    urls = []
    for shard in shards:
        fs.pipe(f"{bucket}/{prefix}/{shard.name}", shard.read_bytes())
        urls.append(f"gs://{bucket}/{prefix}/{shard.name}")
    fs.invalidate_cache()
    return urls


@pytest.fixture
def routed(gcs_emulator) -> None:
    """Fail fast (rather than hang in fsspec's read loop) if ``gs://`` sources
    are not yet opened through :func:`open_input` by ``storage.open_source``."""
    from tfrecord_numpy.remote import DecodedInput, RangedInput
    from tfrecord_numpy.storage import open_source

    opts = gcs_emulator.storage_options
    bucket = f"probe-{uuid.uuid4().hex[:12]}"
    gcs_emulator.create_bucket(bucket)
    gcs_fs(opts).pipe(f"{bucket}/probe", b"probe")
    opened = open_source(f"gs://{bucket}/probe", compression="auto", storage_options=opts)
    try:
        raw, seen = opened.raw, 0
        while not isinstance(raw, (RangedInput, DecodedInput)) and hasattr(raw, "_raw") and seen < 5:
            raw, seen = raw._raw, seen + 1
        if not isinstance(raw, (RangedInput, DecodedInput)):
            pytest.fail("storage.open_source does not open gs:// URLs through tfrecord_numpy.remote.open_input")
    finally:
        opened.close()


def records_of(stream) -> list[bytes]:
    scanner = RecordScanner(path=getattr(stream, "name", None))
    return [bytes(v) for _, _, v in iter_record_views(stream, scanner, chunk_bytes=1 << 20)]


# --------------------------------------------------------------------------- routing and errors (no emulator)


@pytest.mark.parametrize(
    "url, remote",
    [
        ("gs://bucket/a/b", True),
        ("gcs://bucket/a", True),
        ("/tmp/x.tfrecord", False),
        ("relative/x", False),
        ("file:///tmp/x", False),
        ("memory://x/y", False),
        ("simplecache::gs://bucket/a", False),
        (Path("/tmp/x"), False),
    ],
)
def test_should_use_remote(url, remote):
    assert should_use_remote(url) is remote


def test_remote_read_error_is_both_kinds_and_pickles():
    from tfrecord_numpy import TFRecordError

    err = RemoteReadError("gave up", path="gs://b/o", offset=1234)
    assert isinstance(err, TFRecordError) and isinstance(err, OSError)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is RemoteReadError and str(back) == str(err)
    assert "gs://b/o" in str(back) and "1234" in str(back)


def test_is_transient_classification():
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    assert not is_transient(FileNotFoundError("x"))
    assert not is_transient(PermissionError("x"))
    assert not is_transient(ValueError("Bad Request"))
    assert not is_transient(OSError("Forbidden: b/o"))  # gcsfs's 403

    class Http(Exception):
        def __init__(self, code):
            self.code = code

    assert is_transient(Http(503)) and is_transient(Http(429)) and not is_transient(Http(404))


class _SlowMemoryFS:
    """Just enough of an fsspec filesystem to watch when blocks are requested."""

    def __init__(self, data: bytes, delay: float = 0.0) -> None:
        self.data = data
        self.delay = delay
        self.calls: list[tuple[int, int]] = []

    def cat_file(self, path, start=None, end=None, **kw):
        self.calls.append((start, end))
        time.sleep(self.delay)
        return self.data[start:end]


@pytest.mark.parametrize("prefetch", [True, False])
def test_prefetch_requests_the_next_block_while_this_one_is_read(prefetch):
    from tfrecord_numpy.remote import RangedInput

    data = bytes(range(256)) * 1000
    fs = _SlowMemoryFS(data)
    # concurrency=1: one block ahead (concurrent windows: tests/test_remote_concurrency.py)
    f = RangedInput(fs, "x", url="mem://x", size=len(data), block_size=10_000, prefetch=prefetch, concurrency=1)
    assert f.read(1) == data[:1]
    deadline = time.monotonic() + 60  # a net against a hang, not a time limit: exits at the 2nd request
    while prefetch and len(fs.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fs.calls[:2] == ([(0, 10_000), (10_000, 20_000)] if prefetch else [(0, 10_000)])
    assert len(fs.calls) == (2 if prefetch else 1)  # never more than one block ahead
    assert f.read() == data[1:]
    assert f.tell() == len(data)
    f.close()


def test_short_bodies_resume_at_the_exact_byte():
    """A backend that hands back fewer bytes than asked: kept, and the rest asked for."""
    from tfrecord_numpy.remote import RangedInput

    data = np.random.default_rng(0).integers(0, 256, 300_001, dtype=np.uint8).tobytes()

    class Stingy(_SlowMemoryFS):
        def cat_file(self, path, start=None, end=None, **kw):
            self.calls.append((start, end))
            return self.data[start : start + max(1, (end - start) // 3)]

    fs = Stingy(data)
    # concurrency=1: requests in object order (the concurrent case: tests/test_remote_concurrency.py)
    f = RangedInput(
        fs, "x", url="mem://x", size=len(data), block_size=100_000, retries=20, retry_delay=0, concurrency=1
    )
    assert f.read() == data
    starts = [s for s, _ in fs.calls]
    assert starts == sorted(starts) and len(set(starts)) == len(starts)  # never the same byte twice
    assert f.attempts_failed > 0


def test_http_server_without_range_support_is_fetched_once(tmp_path):
    """A plain web server ignores ``Range``: the full body is used, not refetched per block."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    gets = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            gets.append(self.headers.get("Range"))
            super().do_GET()

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(A2O)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{A2O_SHARDS[1].name}"
        assert should_use_remote(url)
        with open_input(url, block_size=SMALL_BLOCK) as f:
            assert f.read() == A2O_SHARDS[1].read_bytes()
        assert len(gets) == 1 and gets[0] is not None
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- direct open_input


def test_open_input_reads_exact_bytes_and_records(gcs_emulator, gcs_bucket):
    opts = gcs_emulator.storage_options
    (url,) = upload_shards(opts, gcs_bucket, "plain", [A2O_SHARDS[0]])
    want = A2O_SHARDS[0].read_bytes()
    for prefetch in (True, False):
        with open_input(url, storage_options=opts, block_size=SMALL_BLOCK, prefetch=prefetch) as f:
            assert f.name == url and not f.seekable()
            assert f.read() == want
            assert f.tell() == len(want)
            assert f.attempts_failed == 0
    with open_input(url, storage_options=opts, block_size=SMALL_BLOCK) as f:
        assert records_of(f) == list(read_records(A2O_SHARDS[0]))


def test_open_input_empty_object_and_missing_object(gcs_emulator, gcs_bucket):
    opts = gcs_emulator.storage_options
    fs = gcs_fs(opts)
    fs.pipe(f"{gcs_bucket}/empty", b"")
    with open_input(f"gs://{gcs_bucket}/empty", storage_options=opts) as f:
        assert f.read() == b""
    with pytest.raises(FileNotFoundError):
        open_input(f"gs://{gcs_bucket}/nope", storage_options=opts)


# --------------------------------------------------------------------------- transcoding


@pytest.mark.parametrize("uploader", ["gcsfs", "json-api"])
def test_transcoded_object_gcsfs_truncates_open_input_does_not(gcs_emulator, gcs_bucket, uploader):
    """``Content-Encoding: gzip`` objects: gcsfs's file object stops at the stored (compressed) size."""
    opts = gcs_emulator.storage_options
    shard = A2O_SHARDS[1]
    content = shard.read_bytes()
    gz = next(p for p in A2O_GZIP_SHARDS if p.name.startswith(shard.name)).read_bytes()
    assert gzip.decompress(gz) == content and len(gz) < len(content)
    name = f"transcoded/{shard.name}"
    fs = gcs_fs(opts)
    if uploader == "gcsfs":
        fs.pipe(f"{gcs_bucket}/{name}", gz, fixed_key_metadata=GZIP_ENCODED)
    else:
        gcs_emulator.upload(gcs_bucket, name, gz, content_encoding="gzip")
    fs.invalidate_cache()
    info = fs.info(f"{gcs_bucket}/{name}")
    assert info["contentEncoding"] == "gzip" and info["size"] == len(gz)

    # the bug: a correct prefix, silently cut at the compressed size (should a
    # gcsfs release fix this, this assertion says so; open_input stays correct)
    with fs.open(f"{gcs_bucket}/{name}", "rb") as f:
        truncated = f.read()
    assert len(truncated) == len(gz) < len(content)
    assert truncated == content[: len(truncated)]

    url = f"gs://{gcs_bucket}/{name}"
    with open_input(url, storage_options=opts, block_size=SMALL_BLOCK) as f:
        assert getattr(f, "transcoded", False)
        assert f.read() == content
    with open_input(url, storage_options=opts, block_size=SMALL_BLOCK) as f:
        assert records_of(f) == list(read_records(shard))


def test_content_encoding_gzip_on_plain_bytes_reads_the_stored_bytes(gcs_emulator, gcs_bucket):
    """Metadata that says gzip over bytes that are not: the stored bytes are the content."""
    opts = gcs_emulator.storage_options
    data = A2O_SHARDS[2].read_bytes()
    gcs_emulator.upload(gcs_bucket, "mislabelled", data, content_encoding="gzip")
    with open_input(f"gs://{gcs_bucket}/mislabelled", storage_options=opts, block_size=SMALL_BLOCK) as f:
        assert f.read() == data


def test_transcoded_shards_extract_to_golden(gcs_emulator, gcs_bucket, tmp_path, routed):
    opts = gcs_emulator.storage_options
    fs = gcs_fs(opts)
    for gz_path in A2O_GZIP_SHARDS:
        fs.pipe(f"{gcs_bucket}/tc/{stem_of(gz_path)}", gz_path.read_bytes(), fixed_key_metadata=GZIP_ENCODED)
    fs.invalidate_cache()
    summary = extract(f"gs://{gcs_bucket}/tc/*", tmp_path, sites=SITES, workers=1, quiet=True, storage_options=opts)
    stems = [stem_of(p) for p in A2O_SHARDS]
    assert summary["shards_extracted"] == 3 and summary["records"] == 13
    assert_golden_local(tmp_path, stems)


def test_transcoded_gz_named_shards_extract_to_golden(gcs_emulator, gcs_bucket, tmp_path, routed):
    """``x.gz`` uploaded with ``Content-Encoding: gzip`` (``gsutil -h Content-Encoding:gzip cp``):
    the object's content is the TFRecord itself, whatever the suffix says."""
    opts = gcs_emulator.storage_options
    fs = gcs_fs(opts)
    for gz_path in A2O_GZIP_SHARDS:
        fs.pipe(f"{gcs_bucket}/tcgz/{gz_path.name}", gz_path.read_bytes(), fixed_key_metadata=GZIP_ENCODED)
    fs.invalidate_cache()
    extract(f"gs://{gcs_bucket}/tcgz/", tmp_path, sites=SITES, workers=1, quiet=True, storage_options=opts)
    assert_golden_local(tmp_path, [stem_of(p) for p in A2O_SHARDS])


# --------------------------------------------------------------------------- extraction from a bucket


@pytest.mark.parametrize("kind", ["plain", "gzip"])
def test_extract_from_gcs_matches_golden(gcs_emulator, gcs_bucket, tmp_path, kind):
    opts = gcs_emulator.storage_options
    shards = A2O_SHARDS if kind == "plain" else A2O_GZIP_SHARDS
    urls = upload_shards(opts, gcs_bucket, kind, shards)
    sites_url = f"gs://{gcs_bucket}/sites/site_name_to_id_mapping.json"
    gcs_fs(opts).pipe(sites_url, SITES_PATH.read_bytes())
    summary = extract(urls, tmp_path, sites=sites_url, workers=1, quiet=True, storage_options=opts)
    assert summary["shards"] == 3 and summary["shards_extracted"] == 3 and summary["records"] == 13
    assert_golden_local(tmp_path, [stem_of(p) for p in shards])
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert {e["source"] for e in manifest["shards"].values()} == set(urls)
    assert [manifest["shards"][stem_of(u)]["source_size"] for u in urls] == [p.stat().st_size for p in shards]


# --------------------------------------------------------------------------- faults


# burst 1: gcsfs's own retries absorb the fault.  A longer burst outlasts
# gcsfs's 6 attempts (and, for dropped keep-alive connections, aiohttp's one
# silent re-send per attempt: hence 13), so the error reaches open_input,
# which resumes.  "short" bodies look complete to any HTTP client: only
# open_input's length check sees them.
GCSFS_TOLERATES = {"503": 6, "drop": 12, "truncate": 6, "short": 0}
FAULTS = [
    ("503", 1),
    ("503", 7),
    ("drop", 1),
    ("drop", 13),
    ("truncate", 1),
    ("truncate", 7),
    ("short", 1),
    ("short", 3),
]


@pytest.mark.parametrize("mode, burst", FAULTS)
def test_open_input_through_faults_is_byte_exact(
    gcs_emulator, gcs_bucket, fault_proxy, fast_gcsfs_backoff, mode, burst
):
    (url,) = upload_shards(gcs_emulator.storage_options, gcs_bucket, "f", [A2O_SHARDS[0]])
    proxy = fault_proxy(mode=mode, every=4, burst=burst, max_faults=3 * burst)
    want = A2O_SHARDS[0].read_bytes()
    # concurrency=1: a burst of faults then hits one block, so who absorbs it (gcsfs or us) is
    # deterministic; faults under concurrent requests: tests/test_remote_concurrency.py
    opened = open_input(
        url, storage_options=proxy.storage_options, block_size=SMALL_BLOCK, retry_delay=0.01, concurrency=1
    )
    with opened as f:
        got = f.read()
        failed = f.attempts_failed
    assert proxy.faults == 3 * burst
    assert got == want
    if burst > GCSFS_TOLERATES[mode]:
        assert failed > 0  # open_input itself resumed
    else:
        assert failed == 0  # gcsfs retried under it


@pytest.mark.parametrize("mode, burst", [("503", 7), ("drop", 1), ("truncate", 7), ("short", 1)])
def test_extract_through_faults_matches_golden(
    gcs_emulator, gcs_bucket, fault_proxy, fast_gcsfs_backoff, fast_remote_backoff, tmp_path, routed, mode, burst
):
    urls = upload_shards(gcs_emulator.storage_options, gcs_bucket, "f", A2O_SHARDS)
    proxy = fault_proxy(mode=mode, every=2, burst=burst, max_faults=2 * burst)
    summary = extract(urls, tmp_path, sites=SITES, workers=1, quiet=True, storage_options=proxy.storage_options)
    assert proxy.faults == 2 * burst
    assert summary["shards_extracted"] == 3
    assert_golden_local(tmp_path, [stem_of(p) for p in A2O_SHARDS])


@pytest.mark.parametrize("mode, burst", [("short", 2), ("truncate", 7)])
def test_transcoded_object_through_faults(gcs_emulator, gcs_bucket, fault_proxy, fast_gcsfs_backoff, mode, burst):
    """Resume works on the stored gzip bytes too: ranges of a transcoded object are exact."""
    gz = A2O_GZIP_SHARDS[0].read_bytes()
    gcs_emulator.upload(gcs_bucket, "tc/shard", gz, content_encoding="gzip")
    proxy = fault_proxy(mode=mode, every=3, burst=burst, max_faults=3 * burst)
    url = f"gs://{gcs_bucket}/tc/shard"
    opts = proxy.storage_options
    # concurrency=1: the burst hits one block, beyond what gcsfs absorbs
    with open_input(url, storage_options=opts, block_size=SMALL_BLOCK, retry_delay=0.01, concurrency=1) as f:
        assert f.read() == A2O_SHARDS[0].read_bytes()
        assert f.attempts_failed > 0
    assert proxy.faults == 3 * burst


def test_object_replaced_mid_read_is_an_error_not_a_mix(gcs_emulator, gcs_bucket):
    """The generation read first is pinned: a resumed read never splices two versions."""
    opts = gcs_emulator.storage_options
    fs = gcs_fs(opts)
    old, new = A2O_SHARDS[1].read_bytes(), A2O_SHARDS[2].read_bytes()[: len(A2O_SHARDS[1].read_bytes())]
    fs.pipe(f"{gcs_bucket}/v", old)
    fs.invalidate_cache()
    f = open_input(f"gs://{gcs_bucket}/v", storage_options=opts, block_size=SMALL_BLOCK, prefetch=False)
    assert f.read(SMALL_BLOCK) == old[:SMALL_BLOCK]
    fs.pipe(f"{gcs_bucket}/v", new)
    with pytest.raises(RemoteReadError) as info:
        f.read()
    assert info.value.offset == SMALL_BLOCK and "FileNotFoundError" in str(info.value)
    f.close()


def _record_our_sleeps(monkeypatch) -> list[float]:
    """The back-off waits tfrecord_numpy.remote asks for (they still happen)."""
    import sys

    waits: list[float] = []
    real_sleep = time.sleep

    def sleep(seconds: float) -> None:
        if sys._getframe(1).f_globals.get("__name__") == "tfrecord_numpy.remote":
            waits.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    return waits


def test_permanent_failure_gives_up_with_url_and_offset(
    gcs_emulator, gcs_bucket, fault_proxy, fast_gcsfs_backoff, monkeypatch
):
    (url,) = upload_shards(gcs_emulator.storage_options, gcs_bucket, "perm", [A2O_SHARDS[0]])
    # the first two downloads pass, every one after fails
    proxy = fault_proxy(mode="503", every=3, burst=None)
    # concurrency=1: requests in object order, so the failing block and the request count are exact
    f = open_input(
        url, storage_options=proxy.storage_options, block_size=SMALL_BLOCK, retries=2, retry_delay=0.01, concurrency=1
    )
    waits = _record_our_sleeps(monkeypatch)
    with pytest.raises(RemoteReadError) as info:
        f.read()
    f.close()
    err = info.value
    assert err.path == url and err.offset == 2 * SMALL_BLOCK
    assert url in str(err) and str(2 * SMALL_BLOCK) in str(err) and "3 failed attempts" in str(err)
    assert isinstance(err, OSError)
    assert proxy.media_requests == 2 + 3 * 6  # 3 of our attempts, each retried 6 times by gcsfs
    # bounded waiting, counted instead of timed: one back-off between attempts,
    # retry_delay doubling (0.01 s, 0.02 s, less their jitter), nothing more
    assert len(waits) == 2 and sum(waits) <= 0.01 + 0.02, waits


def test_permanent_short_bodies_in_extract_fail_cleanly(
    gcs_emulator, gcs_bucket, fault_proxy, fast_remote_backoff, tmp_path, routed
):
    urls = upload_shards(gcs_emulator.storage_options, gcs_bucket, "perm", A2O_SHARDS)
    bad = urls[1]
    proxy = fault_proxy(mode="short", every=1, burst=None, match=A2O_SHARDS[1].name)
    with pytest.raises(RemoteReadError) as info:
        extract(urls, tmp_path, sites=SITES, workers=1, quiet=True, storage_options=proxy.storage_options)
    assert bad in str(info.value) and "offset" in str(info.value)
    assert (tmp_path / "embeddings" / f"{stem_of(urls[0])}.npy").exists()
    assert not (tmp_path / "embeddings" / f"{stem_of(bad)}.npy").exists()
    assert not [p for p in tmp_path.rglob("*") if is_tmp_name(p.name)]


# --------------------------------------------------------------------------- writing to a bucket


def _objects(fs, root: str) -> list[str]:
    fs.invalidate_cache()
    return sorted(fs.find(root))


def test_extract_to_gcs_destination_and_rerun(gcs_emulator, gcs_bucket, tmp_path):
    opts = gcs_emulator.storage_options
    fs = gcs_fs(opts)
    dest = f"gs://{gcs_bucket}/out"
    summary = extract(A2O_SHARDS, dest, sites=SITES, workers=1, quiet=True, storage_options=opts)
    assert summary["shards_extracted"] == 3
    stems = [stem_of(p) for p in A2O_SHARDS]
    expected = sorted(
        [f"{gcs_bucket}/out/manifest.json"]
        + [f"{gcs_bucket}/out/embeddings/{s}.npy" for s in stems]
        + [f"{gcs_bucket}/out/metadata/{s}.json" for s in stems]
    )
    assert _objects(fs, f"{gcs_bucket}/out") == expected  # nothing temporary left
    for s in stems:
        assert fs.cat_file(f"{gcs_bucket}/out/embeddings/{s}.npy") == (GOLDEN / f"{s}.npy").read_bytes()
        assert _pairs(fs.cat_file(f"{gcs_bucket}/out/metadata/{s}.json").decode()) == _pairs(
            (GOLDEN / f"{s}.json").read_text()
        )
    again = extract(A2O_SHARDS, dest, sites=SITES, workers=1, quiet=True, storage_options=opts)
    assert again["shards_already_complete"] == 3 and again["shards_extracted"] == 0


def test_rerun_on_a_bucket_verifies_outputs_from_object_metadata(gcs_emulator, gcs_bucket, monkeypatch):
    """CRC32C is what GCS keeps for every object: a rerun compares it, downloading no output."""
    import gcsfs

    opts = gcs_emulator.storage_options
    dest = f"gs://{gcs_bucket}/meta-out"
    extract(A2O_SHARDS, dest, sites=SITES, workers=1, quiet=True, storage_options=opts)
    opened: list[str] = []
    real_open = gcsfs.GCSFileSystem._open

    def watching_open(self, path, mode="rb", *a, **k):
        if "r" in mode and ("/embeddings/" in path or "/metadata/" in path):
            opened.append(path)
        return real_open(self, path, mode, *a, **k)

    monkeypatch.setattr(gcsfs.GCSFileSystem, "_open", watching_open)
    again = extract(A2O_SHARDS, dest, sites=SITES, workers=1, quiet=True, storage_options=opts)
    assert again["shards_already_complete"] == 3
    assert opened == []  # no output was read back


def test_gcs_to_gcs_failure_publishes_nothing_partial_and_rerun_finishes(
    gcs_emulator, gcs_bucket, fault_proxy, fast_remote_backoff, tmp_path, routed
):
    urls = upload_shards(gcs_emulator.storage_options, gcs_bucket, "in", A2O_SHARDS)
    dest = f"gs://{gcs_bucket}/out"
    proxy = fault_proxy(mode="short", every=1, burst=None, match=f"in%2F{A2O_SHARDS[1].name}")
    with pytest.raises(RemoteReadError):
        extract(urls, dest, sites=SITES, workers=1, quiet=True, storage_options=proxy.storage_options)
    fs = gcs_fs(gcs_emulator.storage_options)
    left = _objects(fs, f"{gcs_bucket}/out")
    assert not [p for p in left if is_tmp_name(p)]
    assert f"{gcs_bucket}/out/embeddings/{stem_of(urls[0])}.npy" in left
    assert not [p for p in left if stem_of(urls[1]) in p]  # no final object for the failed shard
    summary = extract(urls, dest, sites=SITES, workers=1, quiet=True, storage_options=gcs_emulator.storage_options)
    assert summary["shards_already_complete"] == 1 and summary["shards_extracted"] == 2
    for s in map(stem_of, urls):
        assert fs.cat_file(f"{gcs_bucket}/out/embeddings/{s}.npy") == (GOLDEN / f"{s}.npy").read_bytes()


# --------------------------------------------------------------------------- listing


def test_expand_sources_globs_and_prefixes(gcs_emulator, gcs_bucket):
    opts = gcs_emulator.storage_options
    urls = upload_shards(opts, gcs_bucket, "data/shards", A2O_SHARDS)
    gcs_fs(opts).pipe(f"{gcs_bucket}/data/shards/.hidden", b"x")
    gcs_fs(opts).pipe(f"{gcs_bucket}/data/other.txt", b"x")
    assert expand_sources(f"gs://{gcs_bucket}/data/shards/embeddings-*", storage_options=opts) == urls
    assert expand_sources(f"gs://{gcs_bucket}/data/shards", storage_options=opts) == urls
    assert expand_sources(f"gs://{gcs_bucket}/data/shards/", storage_options=opts) == urls
    assert expand_sources(f"gs://{gcs_bucket}/data/*/embeddings-0000[02]-*", storage_options=opts) == [urls[0], urls[2]]
    with pytest.raises(FileNotFoundError):
        expand_sources(f"gs://{gcs_bucket}/data/shards/nothing-*", storage_options=opts)


def test_one_writer_per_bucket_dest(gcs_emulator, gcs_bucket):
    """The DEST lock on a bucket: created only if absent (ifGenerationMatch=0), refused while held."""
    from tfrecord_numpy.lock import LOCK_NAME, DestinationLocked, DestLock

    fs = gcs_fs(gcs_emulator.storage_options)
    root = f"{gcs_bucket}/locked-dest"
    first = DestLock(fs, root).acquire()
    try:
        assert fs.exists(f"{root}/{LOCK_NAME}")
        with pytest.raises(DestinationLocked, match="destination in use"):
            DestLock(fs, root).acquire()
    finally:
        first.release()
    assert not fs.exists(f"{root}/{LOCK_NAME}")
    DestLock(fs, root).acquire().release()  # free again
