"""tfrecord-numpy: read TFRecord files into numpy without TensorFlow.

>>> from tfrecord_numpy import read_records, parse_example, parse_tensor  # doctest: +SKIP
"""

from __future__ import annotations

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

__version__ = "0.2.0"

__all__ = [
    "FixedLenFeature",
    "FixedLenSequenceFeature",
    "SparseValue",
    "VarLenFeature",
    "encode_example",
    "parse_example",
    "parse_examples",
    "parse_sequence_example",
    "parse_tensor",
    "read_batches",
    "read_examples",
    "serialize_tensor",
    "CompressionError",
    "CorruptRecordError",
    "DecodeError",
    "RecordTooLargeError",
    "RecordWriter",
    "SchemaError",
    "TFRecordError",
    "TruncatedRecordError",
    "encode_record",
    "masked_crc",
    "read_records",
    "write_records",
]
