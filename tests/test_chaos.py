"""Chaos: kill -9, SIGINT, a concurrent start and source rewrites over a
multi-shard, multi-worker job, each followed by a rerun; the outputs must
always equal a clean run's over the current sources, with nothing stale left.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tfrecord_numpy.a2o import extract
from tfrecord_numpy.lock import LOCK_NAME
from tfrecord_numpy.perch.synth import write_a2o_shard

CLI = [sys.executable, "-m", "tfrecord_numpy.cli", "extract"]
SHARDS = 6
ROUNDS = 8


def published(out: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(out)): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.relative_to(out).parts[0] in ("embeddings", "metadata")
    }


def leftovers(out: Path) -> list[str]:
    """Anything a finished run must not leave: temporaries, journal entries, the lock."""
    bad = [str(p) for p in out.rglob("*") if ".tmp-" in p.name]
    bad += [str(p) for p in (out / ".journal").glob("*")] if (out / ".journal").exists() else []
    bad += [LOCK_NAME] if (out / LOCK_NAME).exists() else []
    return bad


@pytest.mark.slow
def test_chaos_rounds_always_end_in_a_clean_runs_outputs(tmp_path):
    rng = random.Random(20261201)
    src = tmp_path / "src"
    src.mkdir()
    seeds = dict.fromkeys(range(SHARDS), 0)
    for i in range(SHARDS):
        write_a2o_shard(src / f"embeddings-{i:05d}-of-{SHARDS:05d}", 20, seed=i * 1000)
    out = tmp_path / "out"
    cmd = [*CLI, str(src), "--out", str(out), "--workers", "2", "--quiet"]
    actions = []
    for round_no in range(ROUNDS):
        action = (
            ["kill9", "sigint", "concurrent", "rewrite"][round_no % 4]
            if round_no < 4
            else rng.choice(["kill9", "sigint", "concurrent", "rewrite"])
        )
        actions.append(action)
        if action == "rewrite":  # a source changes between runs: same name, same size, new content
            i = rng.randrange(SHARDS)
            seeds[i] += 1
            path = src / f"embeddings-{i:05d}-of-{SHARDS:05d}"
            st = path.stat()
            write_a2o_shard(path, 20, seed=i * 1000 + seeds[i])
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000 * (round_no + 1)))
        else:
            first = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE, text=True)
            time.sleep(rng.uniform(0.05, 0.8))
            if action == "kill9":
                os.killpg(first.pid, signal.SIGKILL)
                first.wait(timeout=60)
            elif action == "sigint":
                first.send_signal(signal.SIGINT)
                _, err = first.communicate(timeout=60)
                assert first.returncode in (0, 130), err
                assert "Traceback" not in err
            else:  # a second terminal starts the same job meanwhile
                second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
                _, err = first.communicate(timeout=300)
                assert first.returncode == 0, err
                assert second.returncode in (0, 1), second.stderr
                if second.returncode == 1:
                    assert "destination in use" in second.stderr
        rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, (action, rerun.stderr)
        clean = tmp_path / f"clean{round_no}"
        extract([str(src)], clean, workers=1, quiet=True)
        assert published(out) == published(clean), f"round {round_no} ({action}): outputs differ from a clean run"
        assert leftovers(out) == [], (action, leftovers(out))
        manifest = json.loads((out / "manifest.json").read_text())["shards"]
        assert len(manifest) == SHARDS
    assert set(actions) == {"kill9", "sigint", "concurrent", "rewrite"}
