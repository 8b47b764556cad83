"""What is inside an unknown TFRecord file: record kinds, features, a spec to paste.

:func:`inspect_records` reads records (all, or the first ``max_records`` of
each source) and reports, per feature, its list kind, how often it is
present, its shortest and longest list, and for bytes features that hold
serialized tensors their dtype and shape; then a ready-to-paste spec.
:func:`record_to_json` is what ``tfrecord-numpy head`` prints.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import _wire
from .errors import TFRecordError
from .example import parse_example
from .framing import DEFAULT_MAX_RECORD_BYTES, RecordScanner
from .reader import iter_record_views
from .sequence import parse_sequence_example
from .storage import Sources, open_source, resolve_sources
from .tensor import parse_tensor

EXAMPLE, SEQUENCE_EXAMPLE, PROTOBUF, BYTES = "Example", "SequenceExample", "protobuf", "bytes"
_KIND_DTYPE = {"float_list": "float32", "int64_list": "int64", "bytes_list": "string"}
_SHOW_BYTES = 64


def classify(record: bytes | memoryview) -> str:
    """Example, SequenceExample, other protobuf, or opaque bytes (by the top-level fields)."""
    view = memoryview(record).cast("B")
    try:
        fields = {(f, wt) for f, wt, _, _ in _wire.iter_fields(view, 0, len(view))}
    except (_wire.WireError, IndexError):
        return BYTES
    if (2, _wire.LEN) in fields and fields <= {(1, _wire.LEN), (2, _wire.LEN)}:
        try:
            parse_sequence_example(view)
        except TFRecordError:
            return PROTOBUF
        return SEQUENCE_EXAMPLE
    if (1, _wire.LEN) in fields or not fields:  # protobuf keeps unknown fields: still an Example
        try:
            parse_example(view)
        except TFRecordError:
            return PROTOBUF
        return EXAMPLE
    return PROTOBUF


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "bytes_list"
    return "int64_list" if np.asarray(value).dtype == np.int64 else "float_list"


@dataclass
class FeatureStats:
    """One feature across the records read."""

    kinds: set[str] = field(default_factory=set)
    present: int = 0
    min_len: int | None = None
    max_len: int | None = None
    tensor_dtypes: set[str] = field(default_factory=set)
    tensor_shapes: set[tuple[int, ...]] = field(default_factory=set)
    not_tensors: int = 0

    def add(self, value: Any) -> None:
        kind = _kind_of(value)
        n = len(value)
        if n:  # an empty list (or a Feature with no kind set) fits any kind
            self.kinds.add(kind)
        self.present += 1
        self.min_len = n if self.min_len is None else min(self.min_len, n)
        self.max_len = n if self.max_len is None else max(self.max_len, n)
        if kind == "bytes_list":
            for item in value[:1]:  # the first value tells whether it is a tensor
                try:
                    arr = parse_tensor(item)
                except (TFRecordError, ValueError, TypeError):
                    self.not_tensors += 1
                    continue
                self.tensor_dtypes.add(arr.dtype.name if arr.dtype.kind != "O" else "string")
                self.tensor_shapes.add(tuple(int(d) for d in arr.shape))

    def report(self, records: int) -> dict[str, Any]:
        kind = next(iter(self.kinds)) if len(self.kinds) == 1 else "mixed" if self.kinds else "always empty"
        out: dict[str, Any] = {
            "kind": kind,
            "present": self.present,
            "of": records,
            "min_len": self.min_len,
            "max_len": self.max_len,
        }
        if self.tensor_dtypes and not self.not_tensors:
            out["tensor"] = {
                "dtype": next(iter(self.tensor_dtypes)) if len(self.tensor_dtypes) == 1 else "mixed",
                "shape": _common_shape(self.tensor_shapes),
            }
        return out

    def spec(self, records: int) -> str:
        """``FixedLenFeature`` where every record holds the same number of values, else ``VarLenFeature``."""
        if len(self.kinds) > 1:
            return "None  # mixed kinds: no spec parses every record"
        dtype = _KIND_DTYPE[next(iter(self.kinds))] if self.kinds else "float32"
        if self.present == records and self.min_len == self.max_len and self.min_len:
            shape = "[]" if self.min_len == 1 else f"[{self.min_len}]"
            return f'FixedLenFeature({shape}, "{dtype}")'
        return f'VarLenFeature("{dtype}")'


def _common_shape(shapes: set[tuple[int, ...]]) -> list[int | None] | str:
    """The tensors' shape, ``None`` where a dimension varies; "varies" when the rank does."""
    if len({len(sh) for sh in shapes}) != 1:
        return "varies"
    return [dims[0] if len(set(dims)) == 1 else None for dims in zip(*shapes)]


def inspect_records(
    sources: Sources,
    *,
    max_records: int | None = None,
    compression: str | None = "auto",
    storage_options: dict[str, Any] | None = None,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> dict[str, Any]:
    """A report of what the records hold (see the module docstring); JSON-ready."""
    files: list[dict[str, Any]] = []
    kinds: dict[str, int] = {}
    features: dict[str, FeatureStats] = {}
    sequence: dict[str, list[int]] = {}
    sequence_present: dict[str, int] = {}
    total = 0
    for source in resolve_sources(sources, storage_options=storage_options):
        opened = open_source(source, compression=compression, storage_options=storage_options)
        scanner = RecordScanner(max_record_bytes=max_record_bytes, path=opened.name)
        count = nbytes = 0
        try:
            for _, _, view in iter_record_views(opened.stream, scanner):
                if max_records is not None and count >= max_records:
                    break
                count += 1
                nbytes += len(view)
                kind = classify(view)
                kinds[kind] = kinds.get(kind, 0) + 1
                if kind == EXAMPLE:
                    for name, value in parse_example(view).items():
                        features.setdefault(name, FeatureStats()).add(value)
                elif kind == SEQUENCE_EXAMPLE:
                    context, lists = parse_sequence_example(view)
                    for name, value in context.items():
                        features.setdefault(name, FeatureStats()).add(value)
                    for name, steps in lists.items():
                        sequence.setdefault(name, []).extend(len(step) for step in steps)
                        sequence_present[name] = sequence_present.get(name, 0) + 1
        finally:
            opened.close()
        files.append({"path": opened.name, "compression": opened.compression, "records": count, "bytes": nbytes})
        total += count
    report: dict[str, Any] = {
        "sources": files,
        "records": total,
        "partial": max_records is not None,
        "kinds": kinds,
        "features": {name: st.report(total) for name, st in sorted(features.items())},
    }
    is_sequence = kinds.get(SEQUENCE_EXAMPLE, 0) > 0
    if sequence:
        report["feature_lists"] = {
            name: {
                "present": sequence_present[name],
                "min_steps_values": min(steps, default=0),
                "max_steps_values": max(steps, default=0),
            }
            for name, steps in sorted(sequence.items())
        }
    if features and (EXAMPLE in kinds or SEQUENCE_EXAMPLE in kinds):
        spec = ",\n".join(f"    {name!r}: {st.spec(total)}" for name, st in sorted(features.items()))
        label = "context_features" if is_sequence else "features"
        report["spec"] = f"{label} = {{\n{spec},\n}}"
    return report


def format_report(report: dict[str, Any]) -> str:
    """The human-readable form ``tfrecord-numpy inspect`` prints."""
    lines = []
    for f in report["sources"]:
        lines.append(f"{f['path']}\t{f['records']} records\t{f['bytes']} bytes\tcompression: {f['compression']}")
    kinds = ", ".join(f"{k}: {n}" for k, n in report["kinds"].items()) or "none"
    partial = " (first records only)" if report["partial"] else ""
    lines.append(f"{report['records']} records{partial}; kinds: {kinds}")
    for name, st in report["features"].items():
        lens = st["min_len"] if st["min_len"] == st["max_len"] else f"{st['min_len']}-{st['max_len']}"
        tensor = ""
        if "tensor" in st:
            tensor = f"  serialized tensor {st['tensor']['dtype']} {st['tensor']['shape']}"
        lines.append(f"  {name}: {st['kind']}, in {st['present']} of {st['of']}, length {lens}{tensor}")
    for name, st in report.get("feature_lists", {}).items():
        lines.append(f"  feature_list {name}: in {st['present']} records")
    if "spec" in report:
        lines.append("")
        lines.append("from tfrecord_numpy import FixedLenFeature, VarLenFeature")
        lines.append(report["spec"])
    return "\n".join(lines)


def _jsonable_bytes(value: bytes) -> Any:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.isprintable():
        return text
    try:
        arr = parse_tensor(value)
    except (TFRecordError, ValueError, TypeError):
        arr = None
    if arr is not None and arr.dtype.kind in "biufc":
        return {"tensor": arr.dtype.name, "shape": list(arr.shape), "first": arr.reshape(-1)[:8].tolist()}
    shown = base64.b64encode(value[:_SHOW_BYTES]).decode()
    return {"base64": shown, "bytes": len(value), **({"truncated": True} if len(value) > _SHOW_BYTES else {})}


def record_to_json(record: bytes | memoryview) -> dict[str, Any]:
    """One record as JSON-ready values (what ``head`` prints): an Example's (or a
    SequenceExample context's) features, or the record's bytes."""
    kind = classify(record)
    if kind == EXAMPLE:
        return _jsonable_features(parse_example(record))
    if kind == SEQUENCE_EXAMPLE:
        context, lists = parse_sequence_example(record)
        return {
            "context": _jsonable_features(context),
            "feature_lists": {name: [_jsonable_value(step) for step in steps] for name, steps in lists.items()},
        }
    return {"record": _jsonable_bytes(bytes(record)), "kind": kind}


def _jsonable_value(value: Any) -> Any:
    return [_jsonable_bytes(v) for v in value] if isinstance(value, list) else value.tolist()


def _jsonable_features(features: dict[str, Any]) -> dict[str, Any]:
    return {name: _jsonable_value(value) for name, value in features.items()}


def head_records(sources: Sources, n: int, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """The first ``n`` records across the sources, as :func:`record_to_json` gives them."""
    from .reader import iter_records

    if n <= 0:
        return
    for i, (_, _, _, view) in enumerate(iter_records(sources, **kwargs)):
        yield record_to_json(bytes(view))
        if i + 1 >= n:
            return
