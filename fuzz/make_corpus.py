"""Write the seed corpus (built from tests/data by fuzz_seeds.py) to fuzz/corpus/<target>/.

    python3 fuzz/make_corpus.py            # every target
    python3 fuzz/make_corpus.py tensor     # one target

Existing seed files are replaced; anything else in the folder (inputs atheris
added) is left alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fuzz_seeds  # noqa: E402
from fuzz_targets import TARGETS  # noqa: E402


def main(names: list[str]) -> None:
    for name in names or list(TARGETS):
        d = HERE / "corpus" / name
        d.mkdir(parents=True, exist_ok=True)
        for old in d.glob("seed-*"):
            old.unlink()
        seeds = fuzz_seeds.seeds(name)
        for i, s in enumerate(seeds):
            (d / f"seed-{i:03d}").write_bytes(s)
        print(f"{name}: {len(seeds)} seeds, {sum(map(len, seeds))} bytes")


if __name__ == "__main__":
    main(sys.argv[1:])
