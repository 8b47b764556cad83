#!/usr/bin/env python3
"""Perch-schema shards written by TensorFlow, and what TensorFlow decodes from them.

Run once, with TensorFlow installed (the tests never need it):

    python scripts/make_perch_goldens.py tests/data/perch

Writes two shards laid out as Perch's embedding writer lays them out
(``chirp.inference.tf_examples``: ``filename``, ``timestamp_s``, a serialized
``embedding`` tensor with ``embedding_shape``, and logits heads as
``<head>`` + ``<head>_shape``):

* ``hoplite-00000-of-00001``: non-A2O names (``neg/bar_neg.wav``), float32
  ``[12, 1, 128]`` embeddings, a ``label`` head ``[12, 1, 3]``;
* ``public-00000-of-00001``: like the public A2O set, float16 ``[12, 1, 512]``
  with a ``nuisances`` head ``[12, 1, 3]`` and ``site_NNNN/`` file ids.

and for each ``<name>.golden.npz`` (embeddings ``[rows, D]`` and each head
``[rows, K]`` flattened ``[T, C]`` -> rows, as TensorFlow decodes them) and
``<name>.golden.json`` (the ``--schema perch`` metadata rows with a 5 s hop).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

HOP = 5.0


def example(filename: str, ts: float, embedding: np.ndarray, heads: dict[str, np.ndarray]) -> bytes:
    feats = {
        "filename": tf.train.Feature(bytes_list=tf.train.BytesList(value=[filename.encode()])),
        "timestamp_s": tf.train.Feature(float_list=tf.train.FloatList(value=[ts])),
        "embedding": tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.serialize_tensor(embedding).numpy()])),
        "embedding_shape": tf.train.Feature(int64_list=tf.train.Int64List(value=list(embedding.shape))),
    }
    for name, arr in heads.items():
        feats[name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[tf.io.serialize_tensor(arr).numpy()]))
        feats[f"{name}_shape"] = tf.train.Feature(int64_list=tf.train.Int64List(value=list(arr.shape)))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def decode(path: Path, dtype: tf.DType, heads: list[str]) -> tuple[dict[str, np.ndarray], list[dict]]:
    spec = {
        "filename": tf.io.FixedLenFeature([], tf.string),
        "timestamp_s": tf.io.FixedLenFeature([], tf.float32),
        "embedding": tf.io.FixedLenFeature([], tf.string),
        "embedding_shape": tf.io.FixedLenFeature([3], tf.int64),
    }
    for h in heads:
        spec[h] = tf.io.FixedLenFeature([], tf.string)
        spec[f"{h}_shape"] = tf.io.FixedLenFeature([3], tf.int64)
    blocks: dict[str, list[np.ndarray]] = {"embeddings": [], **{h: [] for h in heads}}
    rows: list[dict] = []
    for raw in tf.data.TFRecordDataset(str(path)):
        ex = tf.io.parse_single_example(raw, spec)
        emb = tf.io.parse_tensor(ex["embedding"], out_type=dtype).numpy()
        t_n, c_n, d = emb.shape
        blocks["embeddings"].append(emb.reshape(t_n * c_n, d))
        for h in heads:
            arr = tf.io.parse_tensor(ex[h], out_type=tf.float32).numpy()
            blocks[h].append(arr.reshape(arr.shape[0] * arr.shape[1], arr.shape[2]))
        ts = float(ex["timestamp_s"].numpy())
        name = ex["filename"].numpy().decode()
        for t in range(t_n):
            for c in range(c_n):
                rows.append(
                    {
                        "filename": name,
                        "timestamp_s": ts,
                        "window_index": t,
                        "offset_s": ts + t * HOP,
                        "channel_index": c,
                    }
                )
    return {k: np.concatenate(v) for k, v in blocks.items()}, rows


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    shards = {
        "hoplite-00000-of-00001": (
            tf.float32,
            "label",
            [("neg/bar_neg.wav", 0.0, 12), ("neg/bar_neg.wav", 60.0, 12), ("pos/foo_pos.wav", 0.0, 7)],
            (1, 128),
            np.float32,
        ),
        "public-00000-of-00001": (
            tf.float16,
            "nuisances",
            [
                ("site_0277/20210428T100000+1000_Five-Rivers-Dry-A_909057.flac", 0.0, 12),
                ("site_0277/20210428T100000+1000_Five-Rivers-Dry-A_909057.flac", 60.0, 12),
                ("site_0042/20201014T010000+1030_Arkaba-Dry-A_49500.flac", 120.0, 3),
            ],
            (1, 512),
            np.float16,
        ),
    }
    for name, (tf_dtype, head, records, (channels, dims), np_dtype) in shards.items():
        with tf.io.TFRecordWriter(str(out / name)) as w:
            for filename, ts, windows in records:
                emb = rng.standard_normal((windows, channels, dims)).astype(np_dtype)
                logits = rng.standard_normal((windows, channels, 3)).astype(np.float32)
                w.write(example(filename, ts, emb, {head: logits}))
        arrays, rows = decode(out / name, tf_dtype, [head])
        np.savez(out / f"{name}.golden.npz", **arrays)
        (out / f"{name}.golden.json").write_text(json.dumps(rows))
        print(name, {k: (v.dtype.name, v.shape) for k, v in arrays.items()}, len(rows), "rows")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "tests/data/perch"))
