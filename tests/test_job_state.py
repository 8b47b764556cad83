"""The job's state you can trust: durable progress, source identity, one writer
per DEST, clean stops, whole files only, bounded time on bad data."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tfrecord_numpy import SchemaError, read_records, write_records
from tfrecord_numpy.a2o import extract
from tfrecord_numpy.framing import RecordScanner, encode_records
from tfrecord_numpy.lock import LOCK_NAME, DestinationLocked, DestLock
from tfrecord_numpy.perch.synth import a2o_example, write_a2o_shard
from tfrecord_numpy.reader import iter_record_views

CLI = [sys.executable, "-m", "tfrecord_numpy.cli"]


def outputs(out: Path) -> dict[str, bytes]:
    """The published outputs (what a user reads), by relative path."""
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.relative_to(out).parts[0] in ("embeddings", "metadata")
    }


def recorded(out: Path) -> dict[str, dict]:
    """Shards the manifest and its journal record as complete."""
    shards = {}
    if (out / "manifest.json").exists():
        shards.update(json.loads((out / "manifest.json").read_text())["shards"])
    for p in (out / ".journal").glob("*.json") if (out / ".journal").exists() else []:
        try:
            item = json.loads(p.read_text())
        except ValueError:
            continue
        shards[item["stem"]] = item["entry"]
    return shards


def make_shards(folder: Path, n: int, records: int = 3, **kw) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"embeddings-{i:05d}-of-{n:05d}"
        write_a2o_shard(p, records, seed=i, **kw)
        paths.append(p)
    return paths


def session_pids(sid: int) -> list[int]:
    """Live processes of a session (the job started with start_new_session)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[3]) == sid:  # state, ppid, pgrp, session
            pids.append(int(d.name))
    return pids


def wait_for(predicate, proc: subprocess.Popen, what: str, limit_s: float = 120) -> None:
    """Poll until ``predicate()``; a safety net against hangs, not a speed check."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"job ended (rc {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"never saw {what}")
        time.sleep(0.01)


# --------------------------------------------------------------------------- durable progress


@pytest.mark.slow
def test_kill_9_with_workers_keeps_every_recorded_shard(tmp_path):
    src = make_shards(tmp_path / "src", 8, records=30)
    ref = tmp_path / "ref"
    extract(src, ref, workers=1, quiet=True)
    out = tmp_path / "out"
    cmd = [*CLI, "extract", *map(str, src), "--out", str(out), "--workers", "2", "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True)
    wait_for(lambda: len(recorded(out)) >= 2, proc, "two recorded shards")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = recorded(out)
    assert len(before) >= 2
    summary = tmp_path / "summary.json"
    rerun = subprocess.run([*cmd, "--summary-json", str(summary)], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    s = json.loads(summary.read_text())
    assert s["shards_already_complete"] >= len(before)  # nothing recorded was redone
    assert s["shards_extracted"] + s["shards_already_complete"] == 8
    assert outputs(out) == outputs(ref)
    assert not list((out / ".journal").glob("*.json"))  # folded into manifest.json


def test_recording_a_shard_is_constant_work(tmp_path, monkeypatch):
    """Each shard is one small journal file; manifest.json is written once per run."""
    from tfrecord_numpy import journal
    from tfrecord_numpy.perch import manifest as manifest_mod

    writes: list[str] = []
    real = journal.write_json_atomic
    monkeypatch.setattr(journal, "write_json_atomic", lambda fs, p, o: (writes.append(p), real(fs, p, o)))
    sizes = []
    real_record = manifest_mod.Manifest.record

    def record(self, stem, entry):
        real_record(self, stem, entry)
        sizes.append(os.path.getsize(f"{self.journal}/{stem}.json"))

    monkeypatch.setattr(manifest_mod.Manifest, "record", record)
    src = make_shards(tmp_path / "src", 60, records=1, windows=1, channels=1, dims=4)
    extract(src, tmp_path / "out", workers=1, quiet=True)
    assert len(writes) == 1 and writes[0].endswith("manifest.json")
    assert len(sizes) == 60
    assert max(sizes) - min(sizes) < 16  # no growth with the shards recorded so far
    assert len(recorded(tmp_path / "out")) == 60


# --------------------------------------------------------------------------- identity


def test_rewritten_source_of_the_same_size_is_redone(tmp_path):
    (src,) = make_shards(tmp_path / "src", 1, records=4)
    out = tmp_path / "out"
    extract([src], out, workers=1, quiet=True)
    first = outputs(out)
    size = src.stat().st_size
    write_a2o_shard(src, 4, seed=99)  # other values, same size
    assert src.stat().st_size == size
    st = src.stat()
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    summary = extract([src], out, workers=1, quiet=True)
    assert summary["shards_extracted"] == 1
    assert outputs(out) != first
    fresh = tmp_path / "fresh"
    extract([src], fresh, workers=1, quiet=True)
    assert outputs(out) == outputs(fresh)
    entry = recorded(out)[src.name]
    assert entry["source_identity"]["size"] == size and "mtime" in entry["source_identity"]


def test_same_output_name_from_another_folder_is_refused(tmp_path):
    (a,) = make_shards(tmp_path / "a", 1)
    (b,) = make_shards(tmp_path / "b", 1, records=2)
    out = tmp_path / "out"
    extract([a], out, workers=1, quiet=True)
    first = outputs(out)
    with pytest.raises(ValueError) as info:
        extract([b], out, workers=1, quiet=True)
    assert str(a) in str(info.value) and str(b) in str(info.value)
    assert outputs(out) == first
    extract([b], out, workers=1, quiet=True, overwrite=True)  # said explicitly: replaced
    assert recorded(out)[b.name]["source"] == str(b)


def test_overwrite_of_one_shard_keeps_the_others(tmp_path):
    src = make_shards(tmp_path / "src", 3)
    out = tmp_path / "out"
    extract(src, out, workers=1, quiet=True)
    summary = extract(src[:1], out, workers=1, quiet=True, overwrite=True)
    assert summary["shards_extracted"] == 1
    assert set(recorded(out)) == {p.name for p in src}
    again = extract(src, out, workers=1, quiet=True)
    assert again["shards_already_complete"] == 3


def test_manifest_paths_are_confined_to_dest(tmp_path):
    (src,) = make_shards(tmp_path / "src", 1)
    out = tmp_path / "out"
    extract([src], out, workers=1, quiet=True)
    manifest = json.loads((out / "manifest.json").read_text())
    victim = tmp_path / "victim.npy"
    victim.write_bytes((out / "embeddings" / f"{src.name}.npy").read_bytes())
    entry = manifest["shards"][src.name]
    entry["embeddings"]["path"] = "../victim.npy"  # a manifest must never send us outside DEST
    (out / "manifest.json").write_text(json.dumps(manifest))
    summary = extract([src], out, workers=1, quiet=True)
    assert summary["shards_extracted"] == 1  # not trusted: redone
    assert recorded(out)[src.name]["embeddings"]["path"] == f"embeddings/{src.name}.npy"


def test_dest_outputs_are_never_sources(tmp_path):
    src = make_shards(tmp_path / "work", 2)
    out = tmp_path / "work" / "out"
    extract(src, out, workers=1, quiet=True)
    first = outputs(out)
    # a recursive glob that also matches DEST's own files
    summary = extract([str(tmp_path / "work" / "**" / "*")], out, workers=1, quiet=True)
    assert summary["shards"] == 2
    assert outputs(out) == first


# --------------------------------------------------------------------------- one writer


def test_second_run_into_a_dest_in_use_is_refused(tmp_path):
    (src,) = make_shards(tmp_path / "src", 1)
    out = tmp_path / "out"
    out.mkdir()
    import fsspec

    held = DestLock(fsspec.filesystem("file"), str(out)).acquire()
    try:
        with pytest.raises(DestinationLocked, match=f"pid {os.getpid()}"):
            extract([src], out, workers=1, quiet=True)
        proc = subprocess.run(
            [*CLI, "extract", str(src), "--out", str(out), "--quiet"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 1
        assert "destination in use" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        held.release()
    assert not (out / LOCK_NAME).exists()
    extract([src], out, workers=1, quiet=True)


def test_lock_of_a_dead_process_is_taken_over(tmp_path):
    (src,) = make_shards(tmp_path / "src", 1)
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    (out / LOCK_NAME).write_text(
        json.dumps({"host": socket.gethostname(), "pid": dead.pid, "run": "x", "started": 0, "heartbeat": 0})
    )
    summary = extract([src], out, workers=1, quiet=True)
    assert summary["shards_extracted"] == 1
    assert not (out / LOCK_NAME).exists()


def test_lock_on_another_filesystem(tmp_path):
    """The same lock on an fsspec filesystem that is not a local disk."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.makedirs("/locktest", exist_ok=True)
    a = DestLock(fs, "/locktest").acquire()
    with pytest.raises(DestinationLocked):
        DestLock(fs, "/locktest").acquire()
    a.release()
    DestLock(fs, "/locktest").acquire().release()


# --------------------------------------------------------------------------- stops


def _start_job(tmp_path: Path, n: int = 6, records: int = 40) -> tuple[subprocess.Popen, Path, list[Path]]:
    src = make_shards(tmp_path / "src", n, records=records)
    out = tmp_path / "out"
    cmd = [*CLI, "extract", *map(str, src), "--out", str(out), "--workers", "2", "--quiet"]
    # started as a background shell job would be: SIGINT ignored (the job must still stop on it)
    proc = subprocess.Popen(
        cmd,
        start_new_session=True,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    return proc, out, src


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_to_the_parent_stops_everything_and_keeps_what_is_published(tmp_path, sig, code):
    proc, out, src = _start_job(tmp_path, n=12, records=30)  # plenty left to do when the signal comes
    wait_for(lambda: len(recorded(out)) >= 1, proc, "a recorded shard")
    proc.send_signal(sig)  # to the parent alone
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    deadline = time.monotonic() + 30  # a safety net: children are reaped asynchronously
    while session_pids(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert session_pids(proc.pid) == []  # no worker, no forkserver left
    done = json.loads((out / "manifest.json").read_text())["shards"]  # compacted on the way out
    assert len(done) >= 1
    for stem, entry in done.items():
        assert (out / entry["embeddings"]["path"]).exists()
    rerun = subprocess.run(
        [*CLI, "extract", *map(str, src), "--out", str(out), "--workers", "2", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert len(recorded(out)) == len(src)


@pytest.mark.slow
def test_ctrl_c_at_any_moment_of_start_up_is_a_clean_stop(tmp_path):
    """Ctrl-C while modules load, while the plan is made or while workers start:
    exit 130 or 0 with one line, never a traceback (from the parent or from a
    half-started worker), never a process left behind; the rerun completes."""
    src = make_shards(tmp_path / "src", 4, records=20)
    out = tmp_path / "out"
    cmd = [*CLI, "extract", *map(str, src), "--out", str(out), "--workers", "2", "--quiet"]
    for delay in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.85, 1.0):
        proc = subprocess.Popen(cmd + ["--overwrite"], start_new_session=True, stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, 130), (delay, err)
        assert "Traceback" not in err, (delay, err)
        deadline = time.monotonic() + 30  # a safety net: children are reaped asynchronously
        while session_pids(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert session_pids(proc.pid) == [], delay
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert len(recorded(out)) == len(src)


def test_signal_gate_holds_a_stop_until_the_block_ends():
    from tfrecord_numpy.perch.local import SignalGate, Terminated

    gate = SignalGate()
    with pytest.raises(Terminated) as stop:
        with gate.deferred():
            with gate.deferred():  # nested: the stop waits for the outer block
                gate.signalled(signal.SIGTERM)
                gate.signalled(signal.SIGINT)  # the first one is kept
            reached = True
    assert reached and stop.value.signum == signal.SIGTERM
    with pytest.raises(Terminated):
        gate.signalled(signal.SIGINT)  # outside a block: at once
    with gate.deferred():
        pass  # nothing pending: no stop


def test_package_names_load_on_first_use():
    """``import tfrecord_numpy.cli`` loads neither numpy nor protobuf, nor even
    argparse or typing (so the CLI catches Ctrl-C from nearly its first moment);
    every public name still resolves."""
    code = (
        "import sys, tfrecord_numpy.cli, tfrecord_numpy as t;"
        "print('numpy' in sys.modules, 'google.protobuf' in sys.modules);"
        "print(sorted({'argparse', 'json', 'typing', 'importlib.resources'} & set(sys.modules)));"
        "print(all(getattr(t, n) is not None for n in t.__all__), sorted(t.__all__) == sorted(t._EXPORTS))"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert got == ["False", "False", "[]", "True", "True"]  # not even argparse or typing before main()
    import tfrecord_numpy

    with pytest.raises(AttributeError):
        tfrecord_numpy.no_such_name  # noqa: B018


@pytest.mark.slow
def test_a_dead_worker_is_named_in_one_line(tmp_path):
    proc, out, src = _start_job(tmp_path, n=4, records=60)

    def workers() -> list[int]:
        return [p for p in session_pids(proc.pid) if p != proc.pid and _ppid(p) != proc.pid]

    wait_for(lambda: bool(workers()) and any(out.rglob("*.tmp-*")), proc, "a worker writing")
    for pid in workers():
        os.kill(pid, signal.SIGKILL)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "worker process died" in lines[0], err
    assert any(p.name in lines[0] for p in src)


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def test_worker_counts_below_one_are_usage_errors(tmp_path):
    (src,) = make_shards(tmp_path / "src", 1)
    for n in ("0", "-3"):
        proc = subprocess.run(
            [*CLI, "extract", str(src), "--out", str(tmp_path / "o"), "--workers", n],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 2 and "--workers" in proc.stderr
    with pytest.raises(ValueError, match="workers"):
        extract([src], tmp_path / "o", workers=0, quiet=True)


# --------------------------------------------------------------------------- writers


def test_writers_publish_whole_files_only(tmp_path):
    def failing():
        yield b"one"
        yield b"two"
        raise RuntimeError("the source broke")

    for compression in (None, "gzip", "zlib"):
        dest = tmp_path / f"out-{compression}.tfrecord"
        with pytest.raises(RuntimeError):
            write_records(dest, failing(), compression=compression)
        assert list(tmp_path.iterdir()) == [] or not dest.exists()
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    from tfrecord_numpy import RecordWriter

    dest = tmp_path / "ctx.tfrecord"
    with pytest.raises(KeyError):
        with RecordWriter(dest) as w:
            w.write(b"x")
            raise KeyError("stop")
    assert not dest.exists()
    write_records(dest, [b"a", b"b"])
    assert list(read_records(dest)) == [b"a", b"b"]


# --------------------------------------------------------------------------- bad data


def test_resync_over_damage_is_vectorised(monkeypatch):
    """Skipping 8 MiB of zeros tries a handful of header positions in Python, not 8 million."""
    from tfrecord_numpy import framing

    calls = 0
    real = framing.check_header

    def counting(*a, **k):
        nonlocal calls
        calls += 1
        return real(*a, **k)

    monkeypatch.setattr(framing, "check_header", counting)
    good = [os.urandom(100) for _ in range(4)]
    for garbage in (bytes(8 << 20), b"\xff" * (8 << 20), np.random.default_rng(0).bytes(8 << 20)):
        data = encode_records(good[:2]) + garbage + encode_records(good[2:])
        calls = 0
        scanner = RecordScanner(skip_corrupt=True)
        got = [bytes(v) for _, _, v in iter_record_views(io.BytesIO(data), scanner)]
        assert got == good
        assert len(scanner.skipped) == 1 and scanner.skipped[0].offset == len(encode_records(good[:2]))
        assert calls < 1000, calls


def test_embeddings_a_npy_cannot_hold_are_refused(tmp_path):
    strings = np.array([[[b"a", b"b"]]], dtype=object)
    rec = a2o_example("20201014T010000+1030_Arkaba-Dry-A_49500.flac", 0.0, strings)
    bad = tmp_path / "src" / "strings"
    bad.parent.mkdir()
    write_records(bad, [rec])
    with pytest.raises(SchemaError) as info:
        extract([bad], tmp_path / "out", workers=1, quiet=True)
    assert info.value.index == 0 and info.value.path == str(bad)
    assert not (tmp_path / "out" / "embeddings" / "strings.npy").exists()


# --------------------------------------------------------------------------- odd inputs


def test_symlinked_shards_in_a_directory_are_followed(tmp_path):
    (real,) = make_shards(tmp_path / "store", 1)
    folder = tmp_path / "links"
    folder.mkdir()
    (folder / real.name).symlink_to(real)
    summary = extract([folder], tmp_path / "out", workers=1, quiet=True)
    assert summary["shards"] == 1 and summary["records"] == 3


def test_names_with_glob_characters_are_taken_literally(tmp_path):
    (src,) = make_shards(tmp_path / "src[1]", 1)
    summary = extract([src], tmp_path / "out", workers=1, quiet=True)
    assert summary["shards"] == 1 and summary["records"] == 3


@pytest.mark.parametrize("length", [0x8B1F, 0x088B1F])
def test_auto_compression_never_takes_a_valid_tfrecord_for_gzip(tmp_path, length):
    path = tmp_path / "magic.tfrecord"
    write_records(path, [b"x" * length, b"y"])
    assert path.read_bytes()[:2] == b"\x1f\x8b"  # the record length starts like a gzip stream
    assert [len(r) for r in read_records(path)] == [length, 1]
    from tfrecord_numpy.split import is_compressed

    assert not is_compressed(path)


def test_embeddings_with_no_windows_give_an_empty_matrix_of_the_stored_dtype(tmp_path):
    rec = a2o_example("20201014T010000+1030_Arkaba-Dry-A_49500.flac", 0.0, np.zeros((0, 5, 16), np.float16))
    src = tmp_path / "src" / "empty-windows"
    src.parent.mkdir()
    write_records(src, [rec, rec])
    extract([src], tmp_path / "out", workers=1, quiet=True)
    arr = np.load(tmp_path / "out" / "embeddings" / "empty-windows.npy")
    assert arr.shape == (0, 16) and arr.dtype == np.float16


def test_a_stalled_server_ends_in_an_error_naming_the_url_and_offset(tmp_path, monkeypatch):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tfrecord_numpy import remote
    from tfrecord_numpy.remote import RemoteReadError

    body = encode_records([b"a" * 100, b"b" * 100])
    release = threading.Event()

    class Stalling(BaseHTTPRequestHandler):
        def do_HEAD(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

        def do_GET(self):
            release.wait(30)  # never answers in time

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(remote, "DEFAULT_REQUEST_TIMEOUT", 0.3)
    monkeypatch.setattr(remote, "DEFAULT_RETRY_DELAY", 0.01)
    monkeypatch.setattr(remote, "DEFAULT_RETRIES", 2)
    url = f"http://127.0.0.1:{server.server_address[1]}/shard.tfrecord"
    try:
        with pytest.raises(RemoteReadError) as info:
            list(read_records(url, compression=None))
    finally:
        release.set()
        server.shutdown()
        server.server_close()
    assert info.value.path == url and info.value.offset == 0
    assert url in str(info.value) and "offset 0" in str(info.value)


def test_memory_sources_and_outputs(tmp_path):
    """memory:// is read right (its store shares one file object per path) and
    written in-process; worker processes cannot reach it, so asking for them is refused."""
    import fsspec

    src = make_shards(tmp_path / "src", 2)
    fs = fsspec.filesystem("memory")
    for p in src:
        fs.pipe(f"/memsrc/{p.name}", p.read_bytes())
    try:
        summary = extract(["memory://memsrc"], "memory://memout", quiet=True)
        assert summary["shards"] == 2 and summary["workers"] == 1
        ref = tmp_path / "ref"
        extract(src, ref, workers=1, quiet=True)
        for p in src:
            assert fs.cat(f"/memout/embeddings/{p.name}.npy") == (ref / "embeddings" / f"{p.name}.npy").read_bytes()
            assert fs.cat(f"/memout/metadata/{p.name}.json") == (ref / "metadata" / f"{p.name}.json").read_bytes()
        with pytest.raises(ValueError, match="workers=1"):
            extract(["memory://memsrc"], "memory://memout2", workers=2, quiet=True)
    finally:
        fs.rm("/memsrc", recursive=True)
        for d in ("/memout", "/memout2"):
            if fs.exists(d):
                fs.rm(d, recursive=True)


def test_planning_an_http_source_downloads_nothing(tmp_path):
    """Planning asks for metadata only; the one download is the extraction's own read."""
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    (src,) = make_shards(tmp_path / "site", 1, records=20)
    served: list[tuple[str, str | None, int]] = []

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(tmp_path / "site"), **k)

        def send_head(self):
            f = super().send_head()
            if f is not None:  # an object exists and its body would be sent
                served.append((self.command, self.headers.get("Range"), 0))
            return f

        def log_message(self, *a):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{src.name}"
    try:
        from tfrecord_numpy.perch.options import ExtractOptions
        from tfrecord_numpy.perch.plan import plan_job

        out = tmp_path / "out"
        out.mkdir()
        plan_job([url], out, ExtractOptions())
        assert [c for c, _, _ in served if c == "GET"] == []  # metadata requests only (a 404 probe sends no body)
        served.clear()
        summary = extract([url], out, workers=1, quiet=True)
        assert summary["records"] == 20
    finally:
        server.shutdown()
        server.server_close()


def test_readers_take_one_source_or_many_as_the_cli_does(tmp_path):
    """read_records / read_examples: a path, a list, a glob, a directory or a file object."""
    from tfrecord_numpy import read_examples

    src = make_shards(tmp_path / "src", 3, records=2)
    one = [list(read_records(p)) for p in src]
    every = [r for recs in one for r in recs]
    assert list(read_records(src)) == every
    assert list(read_records(tmp_path / "src")) == every
    assert list(read_records(str(tmp_path / "src" / "embeddings-*"))) == every
    with open(src[1], "rb") as f:
        assert list(read_records([src[0], f])) == one[0] + one[1]
    parsed = list(read_examples(tmp_path / "src"))
    assert [p["filename"] for p in parsed] == [read_examples_one(r) for r in every]
    bad = tmp_path / "src" / "embeddings-00001-of-00003"
    data = bytearray(bad.read_bytes())
    data[-1] ^= 1  # the last record's data CRC
    bad.write_bytes(bytes(data))
    from tfrecord_numpy import CorruptRecordError

    with pytest.raises(CorruptRecordError) as info:
        list(read_examples(tmp_path / "src"))
    assert info.value.path == str(bad) and info.value.index == 1 and info.value.offset == len(one[1][0]) + 16


def read_examples_one(record: bytes):
    from tfrecord_numpy import parse_example

    return parse_example(record)["filename"]


def test_old_sha256_manifests_still_verify_and_crc32c_is_checked(tmp_path):
    """A manifest written with sha256 (as 0.1 did) is verified, not redone; a
    damaged output under a crc32c entry is caught and redone."""
    src = make_shards(tmp_path / "src", 2)
    out = tmp_path / "out"
    extract(src, out, workers=1, quiet=True, checksum="sha256")
    again = extract(src, out, workers=1, quiet=True)  # now crc32c by default: old entries still count
    assert again["shards_already_complete"] == 2
    redo = extract(src, out, workers=1, quiet=True, overwrite=True)
    assert redo["shards_extracted"] == 2
    entry = recorded(out)[src[0].name]
    assert "crc32c" in entry["embeddings"] and "sha256" not in entry["embeddings"]
    npy = out / entry["embeddings"]["path"]
    data = bytearray(npy.read_bytes())
    data[-1] ^= 0xFF  # same size, other bytes
    npy.write_bytes(bytes(data))
    fixed = extract(src, out, workers=1, quiet=True)
    assert fixed["shards_extracted"] == 1 and fixed["shards_already_complete"] == 1


def test_crc32c_combine_matches_the_crc_of_the_joined_bytes():
    import crc32c

    from tfrecord_numpy.checksum import crc32c_combine

    rng = np.random.default_rng(7)
    data = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    for cut in (0, 1, 7, 128, 129, 4095, 4999, 5000):
        a, b = data[:cut], data[cut:]
        assert crc32c_combine(crc32c.crc32c(a), crc32c.crc32c(b), len(b)) == crc32c.crc32c(data), cut
    big = 600_000_123  # a real shard's body length: the operator for it, not the bytes
    assert crc32c_combine(0x12345678, 0, big) != crc32c_combine(0x12345678, 0, big + 1)


@pytest.mark.parametrize("checksum", ["crc32c", "sha256"])
def test_npy_checksum_comes_from_the_stream_not_a_pre_scan_or_a_read_back(tmp_path, monkeypatch, checksum):
    """With CRC32C the shard is not pre-scanned for its row count and its .npy is
    not read back: the rows' CRC, taken as they are written, is combined with the
    final header's.  The recorded value is the file's true CRC32C."""
    import base64
    import hashlib

    import crc32c

    from tfrecord_numpy.perch import manifest as manifest_mod
    from tfrecord_numpy.perch import shard as shard_mod

    scans = []
    real_predict = shard_mod.predict_rows
    monkeypatch.setattr(shard_mod, "predict_rows", lambda *a, **k: scans.append(1) or real_predict(*a, **k))
    read_back = []
    real_checksum_of = manifest_mod.checksum_of
    monkeypatch.setattr(
        manifest_mod,
        "checksum_of",
        lambda fs, path, *a, **k: read_back.append(path) or real_checksum_of(fs, path, *a, **k),
    )
    src = make_shards(tmp_path / "src", 2, records=5)
    out = tmp_path / "out"
    extract(src, out, workers=1, quiet=True, checksum=checksum)
    npy_read_back = [p for p in read_back if p.endswith(".npy")]
    if checksum == "crc32c":
        assert scans == [] and npy_read_back == []
    else:
        assert len(scans) == 2 and npy_read_back == []  # sha256: the predicted header, hashed as written
    for entry in recorded(out).values():
        data = (out / entry["embeddings"]["path"]).read_bytes()
        want = (
            base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()
            if checksum == "crc32c"
            else hashlib.sha256(data).hexdigest()
        )
        assert entry["embeddings"][checksum] == want


def test_progress_costs_nothing_when_quiet_and_little_with_a_bar(tmp_path, monkeypatch):
    """--quiet asks no stream position at all; a bar asks once per few MB, not per record."""
    from tfrecord_numpy.perch import job as job_mod
    from tfrecord_numpy.storage import OpenedSource

    calls = 0
    real = OpenedSource.raw_position

    def counting(self):
        nonlocal calls
        calls += 1
        return real(self)

    monkeypatch.setattr(OpenedSource, "raw_position", counting)
    src = make_shards(tmp_path / "src", 1, records=40)  # 40 records, ~12 MB
    extract(src, tmp_path / "quiet", workers=1, quiet=True)
    assert calls == 0

    class Bar:
        def __init__(self, **kw):
            self.n = 0

        def update(self, n):
            self.n += n

        def set_description(self, text):
            pass

        def close(self):
            pass

    monkeypatch.setattr(job_mod.sys.stderr, "isatty", lambda: True)
    monkeypatch.setattr("tqdm.tqdm", Bar)
    summary = extract(src, tmp_path / "bar", workers=1, quiet=False)
    assert summary["records"] == 40
    assert 1 <= calls <= 4  # every 4 MiB of output, not 40 times


def test_a_full_disk_names_the_file_and_publishes_nothing(tmp_path, monkeypatch):
    import errno

    from tfrecord_numpy import atomic

    (src,) = make_shards(tmp_path / "src", 1, records=4)
    written = 0

    class FillingDisk:
        """The file under an output: the disk fills up midway through the shard."""

        def __init__(self, f):
            self.f = f

        def write(self, data):
            nonlocal written
            written += len(data)
            if written > 500_000:
                raise OSError(errno.ENOSPC, "No space left on device")  # as the OS says it: no file name
            return self.f.write(data)

        def __getattr__(self, attr):
            return getattr(self.f, attr)

    real_init = atomic._Named.__init__
    monkeypatch.setattr(atomic._Named, "__init__", lambda self, f, name: real_init(self, FillingDisk(f), name))
    out = tmp_path / "out"
    with pytest.raises(OSError) as info:
        extract([src], out, workers=1, quiet=True)
    assert info.value.errno == errno.ENOSPC and str(out) in str(info.value) and src.name in str(info.value)
    assert outputs(out) == {} and not [p for p in out.rglob("*") if ".tmp-" in p.name]
