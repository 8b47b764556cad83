#!/usr/bin/env python3
"""The reference notebook's extraction loop, on TensorFlow: the peer for issue #14 goal 6.

Goal 6 of issue #14 is "extract at least 8x the notebook on TensorFlow".  This
script is that notebook: ``extract_like_notebook`` repeats its cells 2.3-3.1
(``tf.io.parse_single_example`` + ``tf.io.parse_tensor`` mapped over a
``TFRecordDataset``, the filename regex, ``datetime``, one metadata dict per
window and channel with the site id lookup, then ``json.dumps`` to
``metadata/<stem>.json`` and ``np.save`` of the list of embeddings to
``embeddings/<stem>.npy``), operation for operation, so its outputs are the
ones ``tfrecord_numpy.a2o.extract`` writes.

It imports only the standard library, numpy and TensorFlow, so it runs in a
Python with TensorFlow and without tfrecord_numpy; ``run.py`` calls it as a
subprocess of such a Python (``--tf-python /work/tfvenv/bin/python``)::

    python benchmarks/tf_notebook.py --sites SITES.json --dest DIR [--repeats N] [--warmup] SHARD [SHARD ...]

and reads one line of JSON from stdout: ``{"times": [...], "rows": N,
"tensorflow": "2.x", "import_s": ...}``.  Each run goes into a freshly emptied
DEST (the removal and ``os.sync()`` are not timed); the ``import tensorflow``
is not timed either (reported as ``import_s``), and ``--warmup`` first parses
one record, untimed, so TensorFlow's start-up is left out too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"  # as the notebook does, before TensorFlow is imported


def make_parser() -> Callable[[Any], tuple[Any, Any, Any, Any]]:
    """The notebook's ``feature_description`` and ``parse_tfrecord`` (cell 2.3)."""
    import tensorflow as tf

    feature_description = {
        "timestamp_s": tf.io.FixedLenFeature([], tf.float32),
        "filename": tf.io.FixedLenFeature([], tf.string),
        "embedding": tf.io.FixedLenFeature([], tf.string),
        "embedding_shape": tf.io.FixedLenFeature([3], tf.int64),
    }

    def parse_tfrecord(example_proto: Any) -> tuple[Any, Any, Any, Any]:
        features = tf.io.parse_single_example(example_proto, feature_description)
        embedding = tf.io.parse_tensor(features["embedding"], out_type=tf.float32)
        return features["timestamp_s"], features["filename"], embedding, features["embedding_shape"]

    return parse_tfrecord


def extract_like_notebook(shard_paths: Sequence[str], dest: str, site_name_to_id: dict[str, Any]) -> int:
    """Cells 3.0-3.1 of the notebook over ``shard_paths`` into ``dest``; return the row count."""
    import tensorflow as tf

    parse_tfrecord = make_parser()
    metadata_dir = os.path.join(dest, "metadata")
    embeddings_dir = os.path.join(dest, "embeddings")
    if not os.path.exists(metadata_dir):
        os.mkdir(metadata_dir)
    if not os.path.exists(embeddings_dir):
        os.mkdir(embeddings_dir)

    count = 0
    for dataset_filename in shard_paths:
        embeddings = []
        metadata = []
        raw_dataset = tf.data.TFRecordDataset(dataset_filename)
        for timestamp_s, filename, embedding, embedding_shape in raw_dataset.map(parse_tfrecord).as_numpy_iterator():
            [(file_datetime, timezone, site_name, subsite_name, file_seq_id)] = re.findall(
                r"(?P<datetime>\d{8}T\d{6})(?P<timezone>(?:\+\d{4})|Z)_(?P<site_name>(?:\w*|-)*)-(?P<subsite_name>(?:Wet|Dry)-(?:A|B))_(?P<file_seq_id>\d*).flac",
                filename.decode("utf-8"),
            )
            timezone = "+0000" if timezone == "Z" else timezone
            file_datetime = datetime.datetime.strptime(f"{file_datetime}{timezone}", "%Y%m%dT%H%M%S%z")
            midnight = file_datetime.replace(hour=0, minute=0, second=0)
            file_offset_since_midnight = (file_datetime - midnight).seconds

            for temporal_index, embedding_channels in enumerate(embedding):
                for channel_index, _embedding in enumerate(embedding_channels):
                    site_id = site_name_to_id.get(
                        f"{site_name.lower().replace(' ', '-')}-{subsite_name.lower().replace(' ', '-')}"
                    )
                    if not site_id:
                        raise Exception(
                            f"No site id found for site: {site_name.lower().replace(' ', '-')}-{subsite_name.lower().replace(' ', '-')}"
                        )
                    count += 1
                    embeddings.append(_embedding)
                    metadata.append(
                        {
                            "file_timestamp": int(file_datetime.timestamp()),
                            "file_seconds_since_midnight": file_offset_since_midnight,
                            "recording_offset_in_file": int(timestamp_s + (5 * temporal_index)),
                            "channel_index": channel_index,
                            "site_id": site_id,
                            "site_name": site_name,
                            "subsite_name": subsite_name,
                            "file_seq_id": int(file_seq_id),
                            "filename": filename.decode("utf-8"),
                        }
                    )

        stripped_filename = dataset_filename.split("/")[-1].split(".")[0]
        metadata_filepath = os.path.join(metadata_dir, f"{stripped_filename}.json")
        numpy_filepath = os.path.join(embeddings_dir, f"{stripped_filename}.npy")
        with open(metadata_filepath, "w") as f:
            f.write(json.dumps(metadata))
        np.save(numpy_filepath, embeddings)
    return count


def warm_up(shard_path: str) -> None:
    """Parse the first record of ``shard_path`` (untimed): TensorFlow's runtime start-up."""
    import tensorflow as tf

    for _ in tf.data.TFRecordDataset(shard_path).take(1).map(make_parser()).as_numpy_iterator():
        pass


def _empty(dest: str) -> None:
    """Make ``dest`` an empty directory and flush the removal to disk."""
    shutil.rmtree(dest, ignore_errors=True)
    os.makedirs(dest)
    os.sync()


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sites", required=True, help="site name -> id mapping JSON (the notebook's)")
    ap.add_argument("--dest", required=True, help="output directory, emptied before each run")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--warmup", action="store_true", help="parse one record untimed first")
    ap.add_argument("shards", nargs="+")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    import tensorflow as tf

    import_s = time.perf_counter() - t0
    with open(args.sites) as f:
        site_name_to_id = json.loads(f.read())
    if args.warmup:
        warm_up(args.shards[0])
    times: list[float] = []
    rows = 0
    for _ in range(args.repeats):
        _empty(args.dest)
        t0 = time.perf_counter()
        rows = extract_like_notebook(args.shards, args.dest, site_name_to_id)
        times.append(time.perf_counter() - t0)
    out = {"times": times, "rows": rows, "tensorflow": tf.__version__, "import_s": import_s}
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
