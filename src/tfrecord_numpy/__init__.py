"""tfrecord-numpy: read TFRecord files into numpy without TensorFlow.

>>> from tfrecord_numpy import read_records, parse_example, parse_tensor  # doctest: +SKIP

The public names load on first use (PEP 562): ``import tfrecord_numpy.cli``
costs no numpy or protobuf import, so the command handles Ctrl-C from its
first moment (a stop during start-up is a clean exit, not a traceback).
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: importing typing alone takes ~10 ms, before the CLI can catch Ctrl-C
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.2.0"

#: public name -> the module that defines it
_EXPORTS = {
    "parse_examples": "batch",
    "read_batches": "batch",
    "CompressionError": "errors",
    "CorruptRecordError": "errors",
    "DecodeError": "errors",
    "RecordTooLargeError": "errors",
    "SchemaError": "errors",
    "TFRecordError": "errors",
    "TruncatedRecordError": "errors",
    "FixedLenFeature": "example",
    "SparseValue": "example",
    "VarLenFeature": "example",
    "encode_example": "example",
    "parse_example": "example",
    "read_examples": "example",
    "encode_record": "framing",
    "masked_crc": "framing",
    "read_records": "reader",
    "FixedLenSequenceFeature": "sequence",
    "parse_sequence_example": "sequence",
    "parse_tensor": "tensor",
    "serialize_tensor": "tensor",
    "RecordWriter": "writer",
    "write_records": "writer",
}

__all__ = [
    "CompressionError",
    "CorruptRecordError",
    "DecodeError",
    "FixedLenFeature",
    "FixedLenSequenceFeature",
    "RecordTooLargeError",
    "RecordWriter",
    "SchemaError",
    "SparseValue",
    "TFRecordError",
    "TruncatedRecordError",
    "VarLenFeature",
    "encode_example",
    "encode_record",
    "masked_crc",
    "parse_example",
    "parse_examples",
    "parse_sequence_example",
    "parse_tensor",
    "read_batches",
    "read_examples",
    "read_records",
    "serialize_tensor",
    "write_records",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from .batch import parse_examples, read_batches
    from .errors import (
        CompressionError,
        CorruptRecordError,
        DecodeError,
        RecordTooLargeError,
        SchemaError,
        TFRecordError,
        TruncatedRecordError,
    )
    from .example import (
        FixedLenFeature,
        SparseValue,
        VarLenFeature,
        encode_example,
        parse_example,
        read_examples,
    )
    from .framing import encode_record, masked_crc
    from .reader import read_records
    from .sequence import FixedLenSequenceFeature, parse_sequence_example
    from .tensor import parse_tensor, serialize_tensor
    from .writer import RecordWriter, write_records
