"""Synthetic A2O/Perch-schema shards, written with our own writer.

Used for the packaged sample, the tests' larger inputs and the benchmarks:
records look like the real ones (same features, serialized in protobuf's
deterministic order, embeddings ``[T, C, D]`` as a serialized TensorProto,
optionally a Perch logits head such as ``nuisances``).
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterator, Sequence
from typing import Any, BinaryIO

import numpy as np

from ..tensor import serialize_tensor
from ..writer import RecordWriter

#: real A2O site/subsite pairs from the public mapping, with their display names
SAMPLE_SITES: Sequence[tuple[str, str]] = (
    ("Arkaba", "Dry-A"),
    ("Alice-Mulga", "Wet-B"),
    ("Baniga", "Wet-A"),
    ("Arkaba", "Wet-B"),
)


def a2o_example(
    filename: str,
    timestamp_s: float,
    embedding: np.ndarray,
    *,
    extra: dict[str, np.ndarray] | None = None,
) -> bytes:
    """One serialized Example in the Perch/A2O schema (deterministic map order)."""
    from .._proto import example_pb2

    ex = example_pb2.Example()
    feats = ex.features.feature
    feats["timestamp_s"].float_list.value.append(float(np.float32(timestamp_s)))
    feats["filename"].bytes_list.value.append(filename.encode("utf-8"))
    feats["embedding"].bytes_list.value.append(serialize_tensor(embedding))
    feats["embedding_shape"].int64_list.value.extend(int(d) for d in embedding.shape)
    for name, arr in (extra or {}).items():
        feats[name].bytes_list.value.append(serialize_tensor(arr))
        feats[f"{name}_shape"].int64_list.value.extend(int(d) for d in arr.shape)
    return ex.SerializeToString(deterministic=True)


def recording_name(start: _dt.datetime, tz: str, site: str, subsite: str, seq_id: int) -> str:
    return f"{start:%Y%m%dT%H%M%S}{tz}_{site}-{subsite}_{seq_id}.flac"


def iter_a2o_records(
    n_records: int,
    *,
    windows: int = 12,
    channels: int = 5,
    dims: int = 1280,
    dtype: str = "float32",
    seed: int = 0,
    minutes_per_recording: int = 10,
    last_windows: int | None = None,
    sites: Sequence[tuple[str, str]] = SAMPLE_SITES,
    nuisances: bool = False,
) -> Iterator[bytes]:
    """``n_records`` serialized A2O records: consecutive minutes of a few recordings.

    ``last_windows`` gives the last minute of each recording fewer windows,
    as real shards have.
    """
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((windows, channels, dims)).astype(dtype)
    start = _dt.datetime(2020, 10, 14, 1, 0, 0)
    tzs = ("+1030", "+1000", "+0800", "Z", "+0930")
    for i in range(n_records):
        rec_no, minute = divmod(i, minutes_per_recording)
        site, subsite = sites[rec_no % len(sites)]
        name = recording_name(
            start + _dt.timedelta(hours=7 * rec_no), tzs[rec_no % len(tzs)], site, subsite, 49500 + rec_no
        )
        t = windows
        if last_windows is not None and minute == minutes_per_recording - 1:
            t = last_windows
        # cheap distinct values per record: roll the base block and add the index
        emb = (np.roll(base, i, axis=2)[:t] + np.asarray(i, dtype=dtype)).astype(dtype)
        extra = {"nuisances": rng.standard_normal((t, channels, 3)).astype("float32")} if nuisances else None
        yield a2o_example(name, 60.0 * minute, emb, extra=extra)


def write_a2o_shard(
    dest: str | os.PathLike[str] | BinaryIO,
    n_records: int,
    *,
    compression: str | None = None,
    **kwargs: Any,
) -> int:
    """Write a synthetic shard; returns the number of records."""
    with RecordWriter(dest, compression=compression) as w:
        w.write_all(iter_a2o_records(n_records, **kwargs))
    return w.records_written


def write_a2o_shard_of_size(
    dest: str | os.PathLike[str], target_bytes: int, *, compression: str | None = None, **kwargs: Any
) -> int:
    """Write about ``target_bytes`` of (uncompressed) records; returns the record count."""
    windows = kwargs.get("windows", 12)
    channels = kwargs.get("channels", 5)
    dims = kwargs.get("dims", 1280)
    itemsize = np.dtype(kwargs.get("dtype", "float32")).itemsize
    per_record = windows * channels * dims * itemsize + 200
    n = max(1, target_bytes // per_record)
    return write_a2o_shard(dest, n, compression=compression, **kwargs)
