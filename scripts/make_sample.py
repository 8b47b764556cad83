"""Regenerate the sample shards shipped in src/tfrecord_numpy/data/sample/.

    python scripts/make_sample.py

Two small A2O-schema shards written by our own writer (1.3 MB in all):
``embeddings-00000-of-00002`` holds float32 [12, 5, 1280] embeddings as in the
public A2O set; ``embeddings-00001-of-00002`` the float16 512-dim variant with
a ``nuisances`` logits head and short last minutes (7 windows).  Every site is
in the public A2O mapping, so ``tfrecord-numpy extract --sample`` runs with
the defaults.
"""

from __future__ import annotations

from pathlib import Path

from tfrecord_numpy.perch.synth import write_a2o_shard

OUT = Path(__file__).resolve().parent.parent / "src" / "tfrecord_numpy" / "data" / "sample"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    write_a2o_shard(OUT / "embeddings-00000-of-00002", 3, seed=1, minutes_per_recording=2)
    write_a2o_shard(
        OUT / "embeddings-00001-of-00002",
        6,
        seed=2,
        dims=512,
        dtype="float16",
        minutes_per_recording=3,
        last_windows=7,
        nuisances=True,
    )
    for p in sorted(OUT.iterdir()):
        print(p, p.stat().st_size)


if __name__ == "__main__":
    main()
