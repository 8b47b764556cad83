"""The command line: sites, verify, progress bar, exit codes."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import select
import struct
import subprocess
import sys
import termios

import pytest

from conftest import A2O, A2O_SHARDS, CORRUPT
from test_a2o import EXPECTED_FROM_RESPONSE, api_url  # noqa: F401  (fixture)
from tfrecord_numpy.cli import main

SITES = A2O / "site_name_to_id_mapping.json"


def test_sites_command_against_local_server(api_url, tmp_path, capsys):
    out = tmp_path / "sub" / "mapping.json"
    assert main(["sites", "--out", str(out), "--api-url", f"{api_url}/sites?direction=asc&items=500"]) == 0
    assert json.loads(out.read_text()) == EXPECTED_FROM_RESPONSE
    assert f"wrote {len(EXPECTED_FROM_RESPONSE)} sites" in capsys.readouterr().err
    # the rebuilt mapping drives an extraction
    assert main(["sites", "--out", str(tmp_path / "bad.json"), "--api-url", f"{api_url}/fail"]) == 1
    assert not (tmp_path / "bad.json").exists()
    assert "HTTP 500" in capsys.readouterr().err


def test_verify_command(capsys):
    assert main(["verify", str(A2O_SHARDS[0]), str(A2O_SHARDS[1])]) == 0
    out = capsys.readouterr().out
    assert "5 records" in out and "4 records" in out and "total\t9 records" in out
    assert main(["verify", str(CORRUPT / "payload_crc_flipped_r1")]) == 1
    err = capsys.readouterr().err
    assert "CorruptRecordError" in err and "record 1" in err and "offset 307390" in err


def test_usage_errors_exit_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecord_numpy.cli", "extract", "--out", str(tmp_path)], capture_output=True, text=True
    )
    assert proc.returncode == 2 and "SOURCE" in proc.stderr
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfrecord_numpy.cli",
            "extract",
            str(A2O_SHARDS[0]),
            "--out",
            str(tmp_path),
            "--on-corrupt",
            "maybe",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2


def test_missing_source_exit_1(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tfrecord_numpy.cli", "extract", str(tmp_path / "nope*"), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "nope" in proc.stderr


def _run_on_pty(args: list[str]) -> tuple[int, str]:
    """Run the CLI with stderr on a terminal; return (exit code, what the terminal got)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
    proc = subprocess.Popen(
        [sys.executable, "-m", "tfrecord_numpy.cli", *args], stdout=subprocess.DEVNULL, stderr=slave, close_fds=True
    )
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        if not ready:
            break
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("quiet,workers", [(False, 1), (False, 2), (True, 1), (True, 2)])
def test_progress_bar_on_a_terminal(tmp_path, quiet, workers):
    args = ["extract", *map(str, A2O_SHARDS), "--out", str(tmp_path), "--sites", str(SITES), "--workers", str(workers)]
    code, screen = _run_on_pty(args + (["--quiet"] if quiet else []))
    assert code == 0
    if quiet:
        assert screen == ""
    else:
        assert "shards 3/3" in screen and "100%" in screen  # tqdm's bar over bytes and shards
        assert "780 rows" in screen  # the summary


def _extract_golden(out, *options: str) -> subprocess.CompletedProcess:
    """``tfrecord-numpy extract`` of the golden shards into ``out``."""
    args = ["extract", *map(str, A2O_SHARDS), "--out", str(out), "--sites", str(SITES), *options]
    return subprocess.run(
        [sys.executable, "-m", "tfrecord_numpy.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_no_bar_when_stderr_is_not_a_terminal(tmp_path):
    proc = _extract_golden(tmp_path, "--workers", "1")
    assert proc.returncode == 0
    assert "%|" not in proc.stderr and "780 rows" in proc.stderr


def test_cli_dask_local_cluster_gives_the_golden_output(tmp_path):
    pytest.importorskip("distributed")
    from test_extract import assert_golden

    proc = _extract_golden(tmp_path, "--dask-local", "2", "--split-bytes", "500000")
    assert proc.returncode == 0, proc.stderr
    assert_golden(tmp_path)
    assert "780 rows" in proc.stderr
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "tfrecord_numpy.cli",
            "extract",
            str(A2O_SHARDS[0]),
            "--out",
            str(tmp_path),
            "--split-bytes",
            "1000",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--split-bytes needs" in bad.stderr


def test_read_concurrency_reaches_the_remote_reader(monkeypatch, capsys):
    """--read-concurrency sets what every remote read (in workers too) uses."""
    from tfrecord_numpy import cli, remote

    monkeypatch.delenv("TFRECORD_NUMPY_READ_CONCURRENCY", raising=False)
    assert remote.read_concurrency() == remote.DEFAULT_READ_CONCURRENCY
    monkeypatch.setenv("TFRECORD_NUMPY_READ_CONCURRENCY", "2")  # restored after the test
    assert cli.main(["verify", "--read-concurrency", "7", str(A2O_SHARDS[0])]) == 0
    assert remote.read_concurrency() == 7
    assert "5 records" in capsys.readouterr().out


def test_ctrl_c_while_the_interpreter_shuts_down_after_a_complete_run_is_ignored():
    """After the command has done its work, a Ctrl-C that lands while Python shuts
    down changes nothing: exit 0, no traceback (the entry point ignores SIGINT
    once main() has returned)."""
    from conftest import A2O_SHARDS

    code = (
        "import atexit, os, signal, sys\n"
        "from tfrecord_numpy.cli import run\n"
        "atexit.register(lambda: os.kill(os.getpid(), signal.SIGINT))  # lands during shutdown\n"
        f"sys.argv = ['tfrecord-numpy', 'verify', {str(A2O_SHARDS[0])!r}]\n"
        "run()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "KeyboardInterrupt" not in done.stderr and "Traceback" not in done.stderr


def test_ctrl_c_inside_module_loading_still_exits_130(tmp_path):
    """A Ctrl-C that lands while a dataclass is made (an exec of source text, as
    while modules load) is handled like any other: exit 130 and one line, not a
    process that kills itself with SIGINT on the way out (which CPython does,
    run with ``python -m``, once an interrupt has passed through an exec)."""
    (tmp_path / "interrupted_in_exec.py").write_text(
        "from tfrecord_numpy import cli\ncli._main = lambda argv: exec('raise KeyboardInterrupt')\ncli.run()\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, "-m", "interrupted_in_exec"], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 130, (done.returncode, done.stderr)
    assert done.stderr.strip().splitlines() == [
        "tfrecord-numpy: stopped (interrupted); shards already published are recorded, a rerun does the rest"
    ]
