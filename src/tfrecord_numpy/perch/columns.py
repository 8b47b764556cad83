"""Metadata as columns: a dict of numpy arrays, one entry per embedding row.

``read_shard(..., columnar=True)`` gives these instead of a list of dicts:
each record costs a few list appends here, and the rows are built at the
end with a handful of ``np.repeat`` calls, instead of one dict per row.
The values are the ones :mod:`.rows` writes (a test holds them together).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..errors import SchemaError, TFRecordError
from .names import METADATA_COLUMNS, RecordName, parse_filename
from .options import DEFAULT_HOP_SECONDS, ExtractOptions
from .records import A2ORecord
from .rows import PERCH_COLUMNS, A2ORowEncoder


def _per_window(counts: np.ndarray) -> np.ndarray:
    """``0..n-1`` within each group of a flattened run of groups of sizes ``counts``."""
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(int(counts.sum()), dtype=np.int64) - starts


class ColumnEncoder:
    """An :class:`.rows.Encoder` that keeps columns instead of JSON text (``rows`` returns []).

    Per record it keeps a handful of values (the parsed name is cached, as
    every 60 s segment of a recording repeats it); every per-row value,
    ``recording_offset_in_file`` included, is computed in :meth:`columns`
    with the same float32 arithmetic as :func:`.names.recording_offsets`.
    """

    def __init__(self, sites: dict[str, Any], options: ExtractOptions, shard: str) -> None:
        self.schema = options.schema
        self.hop = DEFAULT_HOP_SECONDS if options.hop_seconds is None else options.hop_seconds
        self.shard = shard
        self._a2o = A2ORowEncoder(sites, options, shard)
        self.windows: list[int] = []
        self.channels: list[int] = []
        self.timestamps: list[float] = []  # float32 values (a2o) / float64 (perch), per record
        self.filenames: list[str] = []
        self.names: list[RecordName] = []  # a2o
        self.site_ids: list[Any] = []  # a2o
        self.where: list[tuple[int, int]] = []  # (index, offset) per record, for errors found in columns()

    @property
    def unknown_sites(self) -> int:
        return self._a2o.unknown_sites

    def _not_finite(self, ts: float, index: int, offset: int) -> SchemaError:
        return SchemaError(
            f"timestamp_s is {ts}, not a finite number of seconds", path=self.shard, index=index, offset=offset
        )

    def rows(self, rec: A2ORecord, index: int, offset: int) -> list[str]:
        windows, channels, _ = rec.embedding.shape
        a2o = self.schema != "perch"
        if a2o:  # the row encoder's order of checks: the name, the timestamp, the site
            try:
                name = parse_filename(rec.filename, path=self.shard, index=index, offset=offset)
            except TFRecordError as exc:
                raise exc.located(path=self.shard, index=index, offset=offset) from None
        ts = float(np.float32(rec.timestamp_s)) if a2o else float(rec.timestamp_s)
        if not math.isfinite(ts):
            raise self._not_finite(ts, index, offset)
        if a2o:
            self.site_ids.append(self._a2o.site_id(name, windows * channels, index, offset))
            self.names.append(name)
        self.timestamps.append(ts)
        self.filenames.append(rec.filename)
        self.windows.append(windows)
        self.channels.append(channels)
        self.where.append((index, offset))
        return []

    def _offsets(self, t: np.ndarray, window_index: np.ndarray) -> np.ndarray:
        """``recording_offset_in_file`` per window: ``int(ts + float32(hop * window))`` in float32."""
        ts = np.repeat(np.asarray(self.timestamps, dtype=np.float32), t)
        hop = (float(self.hop) * window_index.astype(np.float64)).astype(np.float32)
        values = ts + hop
        too_big = np.flatnonzero(np.abs(values) >= np.float32(2**63))
        if too_big.size:  # int() would exceed int64: name the record
            record = int(np.searchsorted(np.cumsum(t), too_big[0], side="right"))
            index, offset = self.where[record]
            raise SchemaError(
                f"recording_offset_in_file {float(values[too_big[0]])} does not fit in int64",
                path=self.shard,
                index=index,
                offset=offset,
            )
        return values.astype(np.int64)

    def columns(self) -> dict[str, np.ndarray]:
        """The rows, as ``{column: array}`` in the schema's column order."""
        t = np.asarray(self.windows, dtype=np.int64)
        c = np.asarray(self.channels, dtype=np.int64)
        per_row = t * c  # rows of each record
        c_of_window = np.repeat(c, t)
        channel_index = _per_window(c_of_window)
        window_index = _per_window(t)

        def record_col(values: list[Any], dtype: Any) -> np.ndarray:
            if dtype is object:
                arr = np.empty(len(values), dtype=object)
                arr[:] = values
            else:
                arr = np.asarray(values, dtype=dtype)
            return np.repeat(arr, per_row)

        if self.schema == "perch":
            ts_of_window = np.repeat(np.asarray(self.timestamps, dtype=np.float64), t)
            out = {
                "filename": record_col(self.filenames, object),
                "timestamp_s": record_col(self.timestamps, np.float64),
                "window_index": np.repeat(window_index, c_of_window),
                "offset_s": np.repeat(ts_of_window + window_index * float(self.hop), c_of_window),
                "channel_index": channel_index,
            }
            return {k: out[k] for k in PERCH_COLUMNS}
        names = self.names
        out = {
            "file_timestamp": record_col([n.file_timestamp for n in names], np.int64),
            "file_seconds_since_midnight": record_col([n.file_seconds_since_midnight for n in names], np.int64),
            "recording_offset_in_file": np.repeat(self._offsets(t, window_index), c_of_window),
            "channel_index": channel_index,
            "site_id": record_col(self.site_ids, object),
            "site_name": record_col([n.site_name for n in names], object),
            "subsite_name": record_col([n.subsite_name for n in names], object),
            "file_seq_id": record_col([n.file_seq_id for n in names], np.int64),
            "filename": record_col(self.filenames, object),
        }
        return {k: out[k] for k in METADATA_COLUMNS}
