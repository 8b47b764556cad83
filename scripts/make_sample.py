"""Regenerate the sample shards shipped in src/tfrecord_numpy/data/sample/.

    python scripts/make_sample.py

Two small A2O-schema shards written by our own writer (1.3 MB in all):
``embeddings-00000-of-00002`` holds float32 [12, 5, 1280] embeddings as in the
public A2O set; ``embeddings-00001-of-00002`` the float16 512-dim variant with
a ``nuisances`` logits head and short last minutes (7 windows).  Every site is
in the public A2O mapping, so ``tfrecord-numpy extract --sample`` runs with
the defaults.

``sample/public/`` is laid out like the public A2O set
(``gs://chirp-public-bucket/embeddings/a2o_embeddings_perch512``): a shard
``embeddings-<unix ts>-00000-of-00001`` of float16 ``[12, 1, 512]``
embeddings with a ``nuisances`` head, file ids ``site_NNNN/<recording>.flac``,
and Perch's ``config.json`` beside it (``--sample public``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tfrecord_numpy import RecordWriter
from tfrecord_numpy.perch.synth import a2o_example, write_a2o_shard

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
    public = OUT / "public"
    public.mkdir(exist_ok=True)
    rng = np.random.default_rng(3)
    recordings = [
        ("site_0277/20210428T100000+1000_Five-Rivers-Dry-A_909057.flac", 3),
        ("site_0285/20201014T010000+1030_Arkaba-Dry-A_49500.flac", 2),
    ]
    with RecordWriter(public / "embeddings-1690000000-00000-of-00001") as w:
        for name, minutes in recordings:
            for minute in range(minutes):
                windows = 12 if minute < minutes - 1 else 7
                emb = rng.standard_normal((windows, 1, 512)).astype(np.float16)
                nuisances = rng.standard_normal((windows, 1, 3)).astype(np.float32)
                w.write(a2o_example(name, 60.0 * minute, emb, extra={"nuisances": nuisances}))
    config = {
        "embed_fn_config": {
            "model_key": "taxonomy_model_tf",
            "model_config": {"window_size_s": 5.0, "hop_size_s": 5.0, "sample_rate": 32000},
            "tensor_dtype": "float16",
        }
    }
    (public / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for p in sorted(OUT.rglob("*")):
        print(p, p.stat().st_size)


if __name__ == "__main__":
    main()
