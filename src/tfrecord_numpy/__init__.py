"""tfrecord-numpy: read TFRecord files into numpy without TensorFlow.

>>> from tfrecord_numpy import read_records, parse_example, parse_tensor  # doctest: +SKIP
"""

from __future__ import annotations

from .errors import (
    CompressionError,
    CorruptRecordError,
    DecodeError,
    RecordTooLargeError,
    SchemaError,
    TFRecordError,
    TruncatedRecordError,
)
from .framing import encode_record, masked_crc
from .reader import read_records
from .writer import RecordWriter, write_records

__version__ = "0.1.0"

__all__ = [
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
