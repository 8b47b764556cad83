"""One A2O/Perch record decoded, and the one per-record loop of the job.

:func:`decode_a2o_record` takes the fast path (:mod:`.fastpath`) and falls
back to the core's TensorFlow-semantics parser for anything unusual;
:func:`consume_records` is the loop every engine runs (local shards, Dask
shards and byte-range splits).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DecodeError, SchemaError
from ..example import FixedLenFeature, parse_example
from ..tensor import parse_tensor
from .fastpath import PREFIX_BYTES, LayoutMemo, OtherFeatures, a2o_fields, packed_int64s

if TYPE_CHECKING:
    from .options import ExtractOptions
    from .rows import Encoder

#: the notebook's ``tf.io.parse_single_example`` spec
NOTEBOOK_SPEC = {
    "timestamp_s": FixedLenFeature([], "float32"),
    "filename": FixedLenFeature([], "string"),
    "embedding": FixedLenFeature([], "string"),
    "embedding_shape": FixedLenFeature([3], "int64"),
}


@dataclass
class A2ORecord:
    """One decoded record: the embedding is ``[T, C, D]`` (maybe a view into the read buffer);
    ``heads`` the logits heads asked for, each ``[T, C, K]``."""

    filename: str
    timestamp_s: np.float32
    embedding: np.ndarray
    heads: dict[str, np.ndarray] = field(default_factory=dict)


def decode_heads(
    view: memoryview, heads: tuple[str, ...] | str, embedding_shape: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """The logits heads of a Perch record: each ``<head>`` a serialized ``[T, C, K]``
    tensor checked against its ``<head>_shape`` and the embedding's ``T`` and ``C``.
    ``heads="all"``: every bytes feature that has a ``<name>_shape`` beside it."""
    values = parse_example(bytes(view))
    if heads == "all":
        names: tuple[str, ...] = tuple(
            sorted(
                k for k, v in values.items()
                if k != "embedding" and isinstance(v, list) and f"{k}_shape" in values
            )
        )  # fmt: skip
    else:
        names = tuple(heads)
    out = {}
    for name in names:
        value, declared = values.get(name), values.get(f"{name}_shape")
        if not isinstance(value, list) or len(value) != 1:
            raise SchemaError(f"logits head {name!r} is missing (or not one serialized tensor)")
        arr = parse_tensor(value[0])
        check_embedding_dtype(arr.dtype)
        if arr.ndim != 3 or tuple(arr.shape[:2]) != tuple(embedding_shape[:2]):
            raise SchemaError(
                f"logits head {name!r} has shape {list(arr.shape)}; the embedding's windows and channels "
                f"are {list(embedding_shape[:2])}"
            )
        if declared is None or [int(x) for x in np.asarray(declared)] != list(arr.shape):
            shown = None if declared is None else [int(x) for x in np.asarray(declared)]
            raise SchemaError(f"{name}_shape {shown} disagrees with the head's shape {list(arr.shape)}")
        out[name] = arr
    return out


def _general_decode(payload: bytes) -> tuple[bytes, np.float32, bytes, np.ndarray]:
    """The notebook's spec, by TensorFlow's rules."""
    out = parse_example(payload, NOTEBOOK_SPEC)
    return (
        out["filename"][()],
        np.float32(out["timestamp_s"][()]),
        out["embedding"][()],
        np.asarray(out["embedding_shape"]),
    )


def decode_a2o_record(view: memoryview) -> A2ORecord:
    """Decode one A2O/Perch Example; other features (logits heads) are ignored."""
    filename_b: bytes | memoryview | None = None
    ts: np.float32 | None = None
    emb_bytes: bytes | memoryview | None = None
    declared: list[int] | np.ndarray | None = None
    fields = a2o_fields(view)
    if fields is not None:
        ts_payload, filename_b, emb_bytes, shape_payload = fields
        shape_vals = packed_int64s(shape_payload)
        if len(ts_payload) == 4 and shape_vals is not None and len(shape_vals) == 3:
            ts = np.frombuffer(ts_payload, "<f4")[0]
            declared = shape_vals
    if ts is None or filename_b is None or emb_bytes is None:
        filename_b, ts, emb_bytes, declared = _general_decode(bytes(view))
    embedding = parse_tensor(emb_bytes)
    if embedding.ndim != 3:
        raise SchemaError(f"embedding has shape {list(embedding.shape)}, expected [windows, channels, dims]")
    if declared is not None and tuple(int(x) for x in declared) != embedding.shape:
        raise SchemaError(
            f"embedding_shape {[int(x) for x in declared]} disagrees with the embedding's shape {list(embedding.shape)}"
        )
    check_embedding_dtype(embedding.dtype)
    try:
        filename = bytes(filename_b).decode("utf-8")
    except UnicodeDecodeError:
        raise SchemaError(f"filename is not UTF-8: {bytes(filename_b)[:80]!r}") from None
    return A2ORecord(filename=filename, timestamp_s=np.float32(ts), embedding=embedding)


class A2ODecoder:
    """:func:`decode_a2o_record` for a run of records, remembering the last layout.

    Records of one shard are usually laid out alike: where a record has the
    previous one's length and the same bytes in front of its tensor, the
    tensor sits where it did, so only the entries after it are walked
    (:func:`.fastpath.other_a2o_features`).  Anything else goes through
    :func:`decode_a2o_record`; the answers are the same either way.
    """

    def __init__(self) -> None:
        self._layouts = LayoutMemo()
        self._others = OtherFeatures()

    def __call__(self, view: memoryview) -> A2ORecord:
        known = self._layouts(view[:PREFIX_BYTES], len(view))
        if known is None or known[0].dtype.kind not in "fiucb":
            return decode_a2o_record(view)
        layout = known[0]
        end = layout.content_start + layout.content_len
        found = self._others(view[: layout.content_start], layout, view[end:])
        if found is None:  # unusual, or not UTF-8: the general path (and its error)
            return decode_a2o_record(view)
        filename, ts = found
        count = layout.content_len // layout.dtype.itemsize
        embedding = np.frombuffer(view, layout.dtype, count, layout.content_start).reshape(layout.shape)
        return A2ORecord(filename=filename, timestamp_s=np.frombuffer(ts, "<f4")[0], embedding=embedding)


def check_embedding_dtype(dtype: np.dtype) -> None:
    """Refuse embeddings a ``.npy`` cannot hold faithfully (strings, bfloat16, float8)."""
    if dtype.kind not in "fiucb" or dtype.names is not None:
        raise SchemaError(f"embedding dtype {dtype} cannot be written to a .npy file faithfully")
    if dtype.kind == "f" and dtype.type.__module__.startswith("ml_dtypes"):
        raise SchemaError(f"embedding dtype {dtype} (ml_dtypes) cannot be written to a .npy file faithfully")


@dataclass
class RecordStats:
    """What a run of records produced, for the manifest and cross-split checks."""

    records: int = 0
    rows: int = 0
    dtype: np.dtype | None = None
    dim: int | None = None
    first_index: int | None = None  # of the first decoded record
    first_offset: int | None = None
    decode_skipped: list[str] = field(default_factory=list)
    dropped_rows: int = 0  # by the row filter


def consume_records(
    records: Iterable[tuple[int, int, memoryview]],
    source: str,
    options: ExtractOptions,
    encoder: Encoder,
    emit: Callable[[np.ndarray, list[str]], None],
    stats: RecordStats,
    emit_heads: Callable[[dict[str, np.ndarray]], None] | None = None,
) -> None:
    """Decode A2O records into ``emit(block [rows, D], encoded metadata rows)``.

    Undecodable records are skipped or raised per ``on_corrupt``, every error
    is located (file, record, offset), and all records must share one
    embedding dtype and width.  With ``options.logits``, each record's heads
    go to ``emit_heads({head: block [rows, K]})`` before its rows are emitted
    (and into the rows with ``options.logits_in_metadata``).
    """
    row_filter = options.row_filter
    heads_wanted = _heads_to_decode(options)
    head_kinds: dict[str, tuple[np.dtype, int]] | None = None
    decode = A2ODecoder()
    for index, offset, view in records:
        try:
            rec = decode(view)
        except DecodeError as exc:
            exc.located(path=source, index=index, offset=offset)
            if options.on_corrupt == "skip":
                stats.decode_skipped.append(str(exc))
                continue
            raise
        except SchemaError as exc:
            raise exc.located(path=source, index=index, offset=offset) from None
        head_blocks: dict[str, np.ndarray] = {}
        if heads_wanted:
            try:
                rec.heads = decode_heads(view, heads_wanted, rec.embedding.shape)
            except (DecodeError, SchemaError) as exc:
                raise exc.located(path=source, index=index, offset=offset) from None
            for name, arr in rec.heads.items():
                head_blocks[name] = arr.reshape(arr.shape[0] * arr.shape[1], arr.shape[2])
            missing = [h for h in (row_filter.heads if row_filter else ()) if h not in head_blocks]
            if missing:
                raise SchemaError(
                    f"the drop rules read logits head {missing[0]!r}, which the record does not hold",
                    path=source,
                    index=index,
                    offset=offset,
                )
            kinds = {name: (b.dtype, int(b.shape[1])) for name, b in head_blocks.items()}
            if head_kinds is None:
                head_kinds = kinds
            elif kinds != head_kinds:
                raise SchemaError(
                    f"logits heads are {_describe(kinds)} but earlier records' are {_describe(head_kinds)}",
                    path=source,
                    index=index,
                    offset=offset,
                )
        emb = rec.embedding
        block = emb.reshape(emb.shape[0] * emb.shape[1], emb.shape[2])
        if stats.dtype is None:
            if options.expect_dtype is not None and block.dtype.name != options.expect_dtype:
                raise SchemaError(
                    f"embeddings are {block.dtype.name} but Perch's config.json says tensor_dtype "
                    f"{options.expect_dtype}",
                    path=source,
                    index=index,
                    offset=offset,
                )
            stats.dtype, stats.dim = block.dtype, int(block.shape[1])
            stats.first_index, stats.first_offset = index, offset
        elif block.dtype != stats.dtype or block.shape[1] != stats.dim:
            raise SchemaError(
                f"embedding is {block.dtype}[..., {block.shape[1]}] but earlier records are "
                f"{stats.dtype}[..., {stats.dim}]",
                path=source,
                index=index,
                offset=offset,
            )
        rows = encoder.rows(rec, index, offset)
        written = head_blocks if options.logits == "all" else {h: head_blocks[h] for h in options.logits or ()}
        if written and options.logits_in_metadata:
            rows = with_heads(rows, written)
        if row_filter is not None:
            try:
                keep = row_filter.keep(rec.filename, float(rec.timestamp_s), emb.shape[0], emb.shape[1], head_blocks)
            except ValueError as exc:  # a rule that does not fit the head (class name, width)
                raise SchemaError(str(exc), path=source, index=index, offset=offset) from None
            if keep is not None:
                stats.dropped_rows += int(keep.size - np.count_nonzero(keep))
                block = block[keep]
                rows = [r for r, k in zip(rows, keep.tolist()) if k]
                written = {h: b[keep] for h, b in written.items()}
        if emit_heads is not None and written:
            emit_heads(written)
        emit(block, rows)
        stats.records += 1
        stats.rows += int(block.shape[0])


def _describe(kinds: dict[str, tuple[np.dtype, int]]) -> str:
    return ", ".join(f"{name} {dt}[..., {k}]" for name, (dt, k) in sorted(kinds.items())) or "none"


def with_heads(rows: list[str], head_blocks: dict[str, np.ndarray]) -> list[str]:
    """Each metadata row with its heads' values added (``"<head>": [K floats]``), as
    ``json.dumps`` writes them."""
    texts = {name: [json.dumps(v) for v in block.astype(np.float64).tolist()] for name, block in head_blocks.items()}
    out = []
    for i, row in enumerate(rows):
        extra = "".join(f", {json.dumps(name)}: {texts[name][i]}" for name in head_blocks)
        out.append(row[:-1] + extra + "}")
    return out


def _heads_to_decode(options: ExtractOptions) -> tuple[str, ...] | str | None:
    """The logits heads to decode: those written, and those the drop rules read."""
    rule_heads = options.row_filter.heads if options.row_filter is not None else ()
    if options.logits == "all":
        return "all"
    names = tuple(options.logits or ()) + tuple(h for h in rule_heads if h not in (options.logits or ()))
    return names or None
