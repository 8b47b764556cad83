"""One shard: records stream from the reader's buffer into its ``.npy`` and ``.json``.

The outputs are written under temporary names and published atomically;
the returned dict is the shard's manifest entry.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from fsspec.core import url_to_fs

from ..atomic import AtomicFile
from ..checksum import Digest
from ..framing import HEADER_BYTES, OVERHEAD_BYTES, RecordScanner, check_header
from ..reader import iter_record_views
from ..remote import should_use_remote
from ..storage import OpenedSource, open_source
from .fastpath import PREFIX_BYTES, EmbeddingLayout, embedding_layout
from .manifest import logits_path, output_paths
from .options import ExtractOptions, shard_stem
from .outputs import JsonArrayWriter, NpyStreamWriter, StreamHasher
from .parquet import ParquetRowsWriter
from .plan import source_size
from .records import RecordStats, consume_records
from .rows import RowEncoder

#: how many output bytes pass between two progress updates
PROGRESS_BYTES = 4 << 20


def extract_shard(
    source: str,
    dest: str,
    options: ExtractOptions,
    sites: dict,
    *,
    progress: Callable[[int], None] | None = None,
) -> dict:
    """Extract one shard into ``dest``; returns its manifest entry."""
    stem = shard_stem(source)
    fs, root = url_to_fs(dest, **options.storage_options)
    root = root.rstrip("/")
    rel = output_paths(stem, options.metadata_format)
    npy_final = f"{root}/{rel['embeddings']}"
    json_final = f"{root}/{rel['metadata']}"
    fs.makedirs(f"{root}/embeddings", exist_ok=True)
    fs.makedirs(f"{root}/metadata", exist_ok=True)
    started = time.perf_counter()
    opened = open_source(source, compression=options.compression, storage_options=options.storage_options)
    scanner = RecordScanner(
        max_record_bytes=options.max_record_bytes,
        path=source,
        skip_corrupt=options.on_corrupt == "skip",
    )
    encoder = RowEncoder(sites, options, source)
    size = source_size(source, options.storage_options)
    kind = options.checksum
    npy_digest = Digest(kind)  # fed only if the file is spooled for upload
    npy_out = AtomicFile(fs, npy_final, digest=npy_digest)
    json_out = AtomicFile(fs, json_final)
    stats = RecordStats()
    last_pos = 0
    # CRC32C: the rows' CRC as they are written, combined with the final header's
    # at the end.  sha256: with the row count known up front the .npy header is
    # final at once, so the bytes are hashed as they are written.  A spooled
    # upload hashes itself.
    crc_body = kind == "crc32c" and not npy_out.spooled
    rows_hint = None if npy_out.spooled or crc_body else predict_rows(source, opened, options, size)
    hasher = StreamHasher() if rows_hint else None  # sha256 only: CRC32C goes by crc_body

    tick = 0
    head_outs: dict[str, tuple[AtomicFile, NpyStreamWriter]] = {}

    def head_writer(name: str) -> NpyStreamWriter:
        if name not in head_outs:
            fs.makedirs(f"{root}/logits/{name}", exist_ok=True)
            out = AtomicFile(fs, f"{root}/{logits_path(name, stem)}")
            head_outs[name] = (out, NpyStreamWriter(out.f))
        return head_outs[name][1]

    def emit_heads(blocks: dict[str, np.ndarray]) -> None:
        if isinstance(meta, ParquetRowsWriter) and options.logits_in_metadata:
            meta.set_heads({name: (b.dtype.name, int(b.shape[1])) for name, b in blocks.items()})
        for name, block in blocks.items():
            head_writer(name).write(block)

    def emit(block: np.ndarray, rows: list[str]) -> None:
        nonlocal last_pos, tick
        meta.write_encoded(rows)
        npy.write(block)
        if progress is not None:
            tick += block.nbytes
            if tick >= PROGRESS_BYTES:  # a bar needs no per-record update
                tick = 0
                pos = opened.raw_position()
                if pos > last_pos:
                    progress(pos - last_pos)
                    last_pos = pos

    npy_sum = None
    try:
        npy = NpyStreamWriter(npy_out.f, rows_hint=rows_hint, hasher=hasher, crc_body=crc_body)
        meta: JsonArrayWriter | ParquetRowsWriter
        if options.metadata_format == "parquet":
            meta = ParquetRowsWriter(json_out.f, options.schema)
        else:
            meta = JsonArrayWriter(json_out.f, kind)
        consume_records(iter_record_views(opened.stream, scanner), source, options, encoder, emit, stats, emit_heads)
        if isinstance(options.logits, tuple):  # named heads: a file even for an empty shard
            for name in options.logits:
                head_writer(name)
        npy.close()
        meta.close()
        for _, writer in head_outs.values():
            writer.close()
        if hasher is not None:
            if npy.header_rewritten:  # the prediction missed: hash after publishing
                hasher.cancel()
            else:
                npy_sum = hasher.result()
        elif crc_body:
            npy_sum = npy.file_crc32c()  # None for the empty-array file: hashed after publishing
        for out, _ in head_outs.values():
            out.commit()
        npy_out.commit()
        json_out.commit()
    except BaseException:
        if hasher is not None:
            hasher.cancel()
        for out, _ in head_outs.values():
            out.abort()
        npy_out.abort()
        json_out.abort()
        raise
    finally:
        opened.close()
    if progress is not None and size and size > last_pos:
        progress(size - last_pos)
    skipped = [str(e) for e in scanner.skipped] + stats.decode_skipped
    return {
        "source": source,
        "source_size": size,
        "records": stats.records,
        "rows": npy.rows,
        "dtype": None if npy.dtype is None else npy.dtype.name,
        "dim": npy.dim,
        # a checksum still None is filled in by finalize_entry(), off the decoding path
        "embeddings": {
            "path": rel["embeddings"],
            "bytes": fs.size(npy_final),
            kind: npy_digest.value() if npy_out.digested else npy_sum,
        },
        "metadata": {
            "path": rel["metadata"],
            "bytes": fs.size(json_final),
            kind: meta.checksum if isinstance(meta, JsonArrayWriter) else None,
        },
        "skipped": {
            "corrupt_records": len(skipped),
            "errors": skipped[:100],
            "truncated_tail": None if scanner.truncated_tail is None else str(scanner.truncated_tail),
        },
        "unknown_site_rows": encoder.unknown_sites,
        "dropped_rows": stats.dropped_rows,
        "seconds": round(time.perf_counter() - started, 6),
        **(
            {
                "logits": {
                    name: {
                        "path": logits_path(name, stem),
                        "bytes": fs.size(f"{root}/{logits_path(name, stem)}"),
                        "dtype": None if w.dtype is None else w.dtype.name,
                        "dim": w.dim,
                        kind: None,
                    }
                    for name, (_, w) in sorted(head_outs.items())
                }
            }
            if options.logits
            else {}
        ),
    }


def predict_layout(
    source: str, opened: OpenedSource, options: ExtractOptions, size: int | None, *, first_only: bool = False
) -> tuple[int, EmbeddingLayout] | None:
    """(rows, the first record's embedding layout) of an uncompressed local
    shard, read off the first bytes of each record (a seek and a small read
    per record), or None if that does not show plainly.  Only a hint: the
    real pass checks everything.  ``first_only``: read the first record alone
    and give an upper bound of the rows (every row takes its bytes of the file)."""
    if opened.compression is not None or not size or should_use_remote(source):
        return None
    fs, path = url_to_fs(source, **options.storage_options)
    rows = pos = 0
    first = None
    with fs.open(path, "rb") as f:
        while pos < size:
            f.seek(pos)
            head = f.read(HEADER_BYTES + PREFIX_BYTES)
            if len(head) < HEADER_BYTES:
                return None
            length = check_header(head, max_record_bytes=options.max_record_bytes)
            if length < 0 or pos + OVERHEAD_BYTES + length > size:
                return None
            layout = embedding_layout(memoryview(head)[HEADER_BYTES : HEADER_BYTES + min(length, PREFIX_BYTES)], length)
            if layout is None:
                return None
            first = first or layout
            if first_only:
                return size // (layout.shape[2] * layout.dtype.itemsize), layout
            rows += layout.shape[0] * layout.shape[1]
            pos += OVERHEAD_BYTES + length
    return (rows, first) if first is not None else None


def predict_rows(source: str, opened: OpenedSource, options: ExtractOptions, size: int | None) -> int | None:
    """The rows :func:`predict_layout` reads off a shard, or None."""
    predicted = predict_layout(source, opened, options, size)
    return None if predicted is None else predicted[0]
