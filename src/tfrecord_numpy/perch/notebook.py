"""``read_shard``: one shard's embeddings and metadata in memory, for notebooks."""

from __future__ import annotations

import os

import numpy as np

from ..framing import RecordScanner
from ..prefault import Prefaulter
from ..reader import iter_record_views
from ..storage import open_source
from .columns import ColumnEncoder
from .direct import DoesNotFit, iter_a2o_into
from .names import load_site_mapping
from .options import ExtractOptions
from .plan import source_size
from .records import RecordStats, consume_records
from .shard import predict_layout


def read_shard(
    source: str | os.PathLike[str],
    *,
    sites: str | os.PathLike[str] | dict | None = None,
    hop_seconds: float = 5,
    compression: str | None = "auto",
    on_unknown_site: str = "error",
    storage_options: dict | None = None,
    schema: str = "a2o",
    columnar: bool = False,
) -> tuple[np.ndarray, list[dict] | dict[str, np.ndarray]]:
    """``(embeddings [rows, D], metadata rows)`` of one shard, in memory, for interactive use.

    The same values the job writes to ``<stem>.npy`` and ``<stem>.json``
    (an empty shard gives the notebook's ``np.array([])``).  Where the row
    count can be read off the records' first bytes (an uncompressed local
    file), each record's rows are copied once, into one preallocated array.
    ``schema="perch"`` gives the generic Perch rows (no name parsing, no sites).
    ``columnar=True`` gives the metadata as ``{column: numpy array}`` (one
    entry per row; strings and site ids as object arrays) instead of a list
    of dicts: the same values, without building a dict per row.  Either way
    the rows are kept as columns while the shard is read (the list of dicts
    is zipped from them at the end, not parsed back from JSON text).
    """
    options = ExtractOptions.build(
        hop_seconds=hop_seconds,
        compression=compression,
        on_unknown_site=on_unknown_site,
        storage_options=storage_options,
        schema=schema,
    )
    if schema == "perch":
        site_map: dict = {}
    else:
        site_map = sites if isinstance(sites, dict) else load_site_mapping(sites, storage_options=storage_options)
    src = os.fspath(source)
    direct = _read_shard_direct(src, options, site_map, columnar)
    if direct is not None:
        return direct
    opened = open_source(src, compression=options.compression, storage_options=options.storage_options)
    try:
        scanner = RecordScanner(max_record_bytes=options.max_record_bytes, path=src)
        encoder = ColumnEncoder(site_map, options, src)
        blocks: list[np.ndarray] = []

        def emit(block: np.ndarray, rows: list[str]) -> None:
            blocks.append(block.copy())  # the view is only valid until the next record

        consume_records(iter_record_views(opened.stream, scanner), src, options, encoder, emit, RecordStats())
    finally:
        opened.close()
    # an empty shard: what the notebook's np.save(path, []) holds
    emb = np.concatenate(blocks) if blocks else np.array([])
    return emb, _metadata(encoder, columnar)


def _metadata(encoder: ColumnEncoder, columnar: bool) -> list[dict] | dict[str, np.ndarray]:
    """The columns, or the notebook's list of one dict per row (same keys, same values)."""
    columns = encoder.columns()
    if columnar:
        return columns
    keys = list(columns)
    return [dict(zip(keys, values)) for values in zip(*(col.tolist() for col in columns.values()))]


def _read_shard_direct(
    src: str, options: ExtractOptions, site_map: dict, columnar: bool = False
) -> tuple[np.ndarray, list[dict] | dict[str, np.ndarray]] | None:
    """read_shard for an uncompressed local shard whose rows can be predicted:
    the tensor bytes are read straight into one preallocated array.  None
    (nothing done) where that does not apply or a record does not fit."""
    opened = open_source(src, compression=options.compression, storage_options=options.storage_options)
    try:
        # one record's layout and an upper bound of the rows: the array is cut to
        # the rows read (a view; the bound exceeds them by the records' headers only)
        predicted = predict_layout(src, opened, options, source_size(src, options.storage_options), first_only=True)
        if predicted is None:
            return None
        rows, layout = predicted
        out = np.empty((rows, layout.shape[2]), dtype=layout.dtype)
        encoder = ColumnEncoder(site_map, options, src)
        filled = 0
        try:
            # the fresh array's pages are faulted in by a second thread, ahead of the reads
            with Prefaulter(out) as prefault:
                for index, offset, rec, row in iter_a2o_into(
                    opened.stream,
                    out,
                    path=src,
                    max_record_bytes=options.max_record_bytes,
                    before_write=prefault.ready,
                ):
                    encoder.rows(rec, index, offset)
                    filled = row + rec.embedding.shape[0] * rec.embedding.shape[1]
        except DoesNotFit:
            return None
    finally:
        opened.close()
    return out[:filled], _metadata(encoder, columnar)
