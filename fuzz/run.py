"""Run one fuzz target: coverage-guided with atheris, or the built-in mutation loop.

    python3 fuzz/run.py TARGET [--engine atheris|mutate] [--runs N] [--seconds S]
    python3 fuzz/run.py TARGET --reproduce FILE...

atheris (``pip install atheris``) is used when it imports, else the mutation
loop (same invariants, no coverage feedback).  atheris starts from
``fuzz/corpus/<TARGET>`` (``make_corpus.py`` writes it) and keeps what it
learns in ``fuzz/work/<TARGET>``; a finding is written as ``crash-*`` there
(atheris) or ``fuzz/findings/<TARGET>-*.bin`` (mutation loop).  The last line
printed is ``RESULT target=... engine=... inputs=N findings=K``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _load(instrument: bool):
    """Import the targets, instrumenting our package for atheris when asked."""
    if instrument:
        import atheris

        with atheris.instrument_imports(include=["tfrecord_numpy", "fuzz_targets"]):
            import fuzz_targets
    else:
        import fuzz_targets
    import fuzz_seeds

    return fuzz_targets, fuzz_seeds


def run_mutate(name: str, runs: int, seconds: float, seed: int) -> int:
    """The built-in loop; returns the number of findings (each saved to fuzz/findings/)."""
    ft, fs = _load(False)
    from fuzz_mutate import Mutator

    target = ft.TARGETS[name]
    mut = Mutator(fs.seeds(name), random.Random(seed), target.max_len)
    out_dir = HERE / "findings"
    findings = 0
    done = 0
    deadline = time.monotonic() + seconds if seconds else None
    ft.setup()
    for s in fs.seeds(name):  # seeds first: they must all pass
        findings += _one(ft, target, s, out_dir)
        done += 1
    while (not runs or done < runs) and (deadline is None or time.monotonic() < deadline):
        findings += _one(ft, target, mut.next(), out_dir)
        done += 1
        if done % 50000 == 0:
            print(f"#{done} {name} findings={findings}", flush=True)
    print(f"RESULT target={name} engine=mutate inputs={done} findings={findings}", flush=True)
    return findings


def _one(ft, target, data: bytes, out_dir: Path) -> int:
    try:
        ft.run_one(target, data)
        return 0
    except Exception:
        out_dir.mkdir(exist_ok=True)
        digest = hashlib.sha1(data).hexdigest()[:16]
        path = out_dir / f"{target.name}-{digest}.bin"
        path.write_bytes(data)
        print(f"FINDING {path}\n{traceback.format_exc()}", flush=True)
        return 1


def run_atheris(name: str, runs: int, seconds: float, extra: list[str]) -> None:
    """libFuzzer via atheris; counts come from its own '#N DONE' / 'Done N runs' lines."""
    import atheris

    ft, fs = _load(True)
    target = ft.TARGETS[name]
    corpus = HERE / "corpus" / name
    work = HERE / "work" / name
    work.mkdir(parents=True, exist_ok=True)
    if not corpus.is_dir():
        corpus.mkdir(parents=True)
        for i, s in enumerate(fs.seeds(name)):
            (corpus / f"seed-{i:03d}").write_bytes(s)
    ft.setup()

    def test_one(data: bytes) -> None:
        ft.run_one(target, data)

    argv = [
        sys.argv[0],
        str(work),
        str(corpus),
        f"-max_len={target.max_len}",
        "-timeout=30",
        "-rss_limit_mb=4096",
        f"-artifact_prefix={work}/",
        "-print_final_stats=1",
    ]
    if runs:
        argv.append(f"-runs={runs}")
    if seconds:
        argv.append(f"-max_total_time={int(seconds)}")
    atheris.Setup(argv + extra, test_one)
    atheris.Fuzz()


def reproduce(name: str, files: list[str]) -> int:
    """Re-run saved inputs (a crash file or a finding) with a full traceback."""
    ft, _ = _load(False)
    bad = 0
    for f in files:
        data = Path(f).read_bytes()
        try:
            ft.run_one(ft.TARGETS[name], data)
            print(f"{f}: ok")
        except Exception:
            bad += 1
            print(f"{f}: {data[:200].hex()}")
            traceback.print_exc()
    return bad


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target")
    p.add_argument("--engine", choices=("auto", "atheris", "mutate"), default="auto")
    p.add_argument("--runs", type=int, default=0, help="stop after N inputs (0: no limit)")
    p.add_argument("--seconds", type=float, default=0, help="stop after S seconds (0: no limit)")
    p.add_argument("--seed", type=int, default=0, help="mutation loop RNG seed")
    p.add_argument("--reproduce", nargs="+", metavar="FILE")
    args, extra = p.parse_known_args()
    if args.reproduce:
        return 1 if reproduce(args.target, args.reproduce) else 0
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "mutate"
    if engine == "atheris":
        run_atheris(args.target, args.runs, args.seconds, extra)
        return 0
    if not args.runs and not args.seconds:
        args.seconds = 60
    return 1 if run_mutate(args.target, args.runs, args.seconds, args.seed or os.getpid()) else 0


if __name__ == "__main__":
    sys.exit(main())
