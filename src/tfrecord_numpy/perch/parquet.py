"""Metadata rows as Parquet (``--metadata-format parquet``; needs the ``arrow`` extra).

Rows arrive as the same JSON text the ``.json`` writer takes; they are
buffered a row group at a time, typed, and written with
``pyarrow.parquet.ParquetWriter``, so memory stays flat in the shard's size.
Logits heads in the rows become fixed-size list columns of their stored
dtype.
"""

from __future__ import annotations

import json
from typing import Any

ROW_GROUP_ROWS = 16 * 1024

#: the typed columns of each schema's rows (site_id is typed from the data: ids are
#: strings in the public mapping, but a mapping may hold numbers)
_A2O = {
    "file_timestamp": "int64",
    "file_seconds_since_midnight": "int64",
    "recording_offset_in_file": "int64",
    "channel_index": "int64",
    "site_id": None,
    "site_name": "string",
    "subsite_name": "string",
    "file_seq_id": "int64",
    "filename": "string",
}
_PERCH = {
    "filename": "string",
    "timestamp_s": "float64",
    "window_index": "int64",
    "offset_s": "float64",
    "channel_index": "int64",
}


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("--metadata-format parquet needs pyarrow: pip install 'tfrecord-numpy[arrow]'") from None
    return pa, pq


def check_available() -> None:
    """Fail early (before any shard is read) when pyarrow is missing."""
    _pyarrow()


class ParquetRowsWriter:
    """``write_encoded(rows)`` / ``close()`` like :class:`.outputs.JsonArrayWriter`, to Parquet."""

    def __init__(self, f: Any, schema: str, heads: dict[str, tuple[str, int]] | None = None) -> None:
        self.pa, self.pq = _pyarrow()
        self.f = f
        self.columns = dict(_PERCH if schema == "perch" else _A2O)
        self.heads = dict(heads or {})  # name -> (numpy dtype name, K), set by the first record's heads
        self.count = 0
        self._pending: list[str] = []
        self._writer: Any = None
        self._schema: Any = None

    def set_heads(self, heads: dict[str, tuple[str, int]]) -> None:
        if not self.heads:
            self.heads = dict(heads)

    def write_encoded(self, encoded_rows: list[str]) -> None:
        self._pending.extend(encoded_rows)
        self.count += len(encoded_rows)
        if len(self._pending) >= ROW_GROUP_ROWS:
            self.flush()

    def _arrow_schema(self, first: list[dict[str, Any]]) -> Any:
        pa = self.pa
        fields = []
        for name, kind in self.columns.items():
            if kind is None:  # typed from the data; null-only or empty: string
                sample = next((r[name] for r in first if r.get(name) is not None), None)
                kind = "int64" if isinstance(sample, int) and not isinstance(sample, bool) else "string"
            fields.append(pa.field(name, pa.type_for_alias(kind)))
        for name, (dtype, k) in self.heads.items():
            fields.append(pa.field(name, pa.list_(pa.from_numpy_dtype(_np_dtype(dtype)), k)))
        return pa.schema(fields)

    def flush(self) -> None:
        if not self._pending:
            return
        rows = json.loads("[" + ", ".join(self._pending) + "]")
        self._pending.clear()
        if self._schema is None:
            self._schema = self._arrow_schema(rows)
            self._writer = self.pq.ParquetWriter(self.f, self._schema)
        table = self.pa.Table.from_pylist(rows, schema=self._schema)
        self._writer.write_table(table, row_group_size=ROW_GROUP_ROWS)

    def close(self) -> None:
        self.flush()
        if self._writer is None:  # no rows: an empty table with the schema's columns
            self._schema = self._arrow_schema([])
            self._writer = self.pq.ParquetWriter(self.f, self._schema)
            self._writer.write_table(self._schema.empty_table())
        self._writer.close()


def _np_dtype(name: str) -> Any:
    import numpy as np

    return np.dtype(name)
