"""Metadata as columns: a dict of numpy arrays, one entry per embedding row.

``read_shard(..., columnar=True)`` gives these instead of a list of dicts:
each record costs a few list appends here, and the rows are built at the
end with a handful of ``np.repeat`` calls, instead of one dict per row.
The values are the ones :mod:`.rows` writes (a test holds them together).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import TFRecordError
from .names import METADATA_COLUMNS, parse_filename, recording_offsets
from .options import DEFAULT_HOP_SECONDS, ExtractOptions
from .records import A2ORecord
from .rows import PERCH_COLUMNS, A2ORowEncoder


def _per_window(counts: np.ndarray) -> np.ndarray:
    """``0..n-1`` within each group of a flattened run of groups of sizes ``counts``."""
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return np.arange(int(counts.sum()), dtype=np.int64) - starts


class ColumnEncoder:
    """An :class:`.rows.Encoder` that keeps columns instead of JSON text (``rows`` returns [])."""

    def __init__(self, sites: dict[str, Any], options: ExtractOptions, shard: str) -> None:
        self.schema = options.schema
        self.hop = DEFAULT_HOP_SECONDS if options.hop_seconds is None else options.hop_seconds
        self.shard = shard
        self._a2o = A2ORowEncoder(sites, options, shard)
        self.windows: list[int] = []
        self.channels: list[int] = []
        self.offsets: list[int] = []  # a2o: per window
        self.per_record: dict[str, list[Any]] = {}

    @property
    def unknown_sites(self) -> int:
        return self._a2o.unknown_sites

    def _add(self, **values: Any) -> None:
        for key, value in values.items():
            self.per_record.setdefault(key, []).append(value)

    def rows(self, rec: A2ORecord, index: int, offset: int) -> list[str]:
        windows, channels, _ = rec.embedding.shape
        if self.schema == "perch":
            ts = float(rec.timestamp_s)
            if not np.isfinite(ts):
                from ..errors import SchemaError

                raise SchemaError(
                    f"timestamp_s is {ts}, not a finite number of seconds", path=self.shard, index=index, offset=offset
                )
            self._add(filename=rec.filename, timestamp_s=ts)
        else:
            try:
                name = parse_filename(rec.filename, path=self.shard, index=index, offset=offset)
                self.offsets.extend(recording_offsets(rec.timestamp_s, windows, self.hop))
            except TFRecordError as exc:
                raise exc.located(path=self.shard, index=index, offset=offset) from None
            site_id = self._a2o.site_id(name, windows * channels, index, offset)
            self._add(
                file_timestamp=name.file_timestamp,
                file_seconds_since_midnight=name.file_seconds_since_midnight,
                site_id=site_id,
                site_name=name.site_name,
                subsite_name=name.subsite_name,
                file_seq_id=name.file_seq_id,
                filename=rec.filename,
            )
        self.windows.append(windows)
        self.channels.append(channels)
        return []

    def columns(self) -> dict[str, np.ndarray]:
        """The rows, as ``{column: array}`` in the schema's column order."""
        t = np.asarray(self.windows, dtype=np.int64)
        c = np.asarray(self.channels, dtype=np.int64)
        per_row = t * c  # rows of each record
        c_of_window = np.repeat(c, t)
        channel_index = _per_window(c_of_window)

        def record_col(key: str, dtype: Any) -> np.ndarray:
            values = self.per_record.get(key, [])
            arr = np.empty(len(values), dtype=object) if dtype is object else np.asarray(values, dtype=dtype)
            if dtype is object:
                arr[:] = values
            return np.repeat(arr, per_row)

        if self.schema == "perch":
            window_index = _per_window(t)
            ts_of_window = np.repeat(np.asarray(self.per_record.get("timestamp_s", []), dtype=np.float64), t)
            out = {
                "filename": record_col("filename", object),
                "timestamp_s": record_col("timestamp_s", np.float64),
                "window_index": np.repeat(window_index, c_of_window),
                "offset_s": np.repeat(ts_of_window + window_index * float(self.hop), c_of_window),
                "channel_index": channel_index,
            }
            return {k: out[k] for k in PERCH_COLUMNS}
        out = {
            "file_timestamp": record_col("file_timestamp", np.int64),
            "file_seconds_since_midnight": record_col("file_seconds_since_midnight", np.int64),
            "recording_offset_in_file": np.repeat(np.asarray(self.offsets, dtype=np.int64), c_of_window),
            "channel_index": channel_index,
            "site_id": record_col("site_id", object),
            "site_name": record_col("site_name", object),
            "subsite_name": record_col("subsite_name", object),
            "file_seq_id": record_col("file_seq_id", np.int64),
            "filename": record_col("filename", object),
        }
        return {k: out[k] for k in METADATA_COLUMNS}
