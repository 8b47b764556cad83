"""Just enough of the protobuf wire format to walk a message by hand.

Used where protobuf's own parser would copy (tensor bytes) or where we must
follow TensorFlow's fast Example parser rather than protobuf's rules.
Positions are plain ints into a ``memoryview``; errors are ``WireError``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

VARINT, I64, LEN, SGROUP, EGROUP, I32 = 0, 1, 2, 3, 4, 5
_U64 = (1 << 64) - 1

#: what the readers here walk (indexing gives a byte as an int)
BytesLike = bytes | bytearray | memoryview


class WireError(Exception):
    """The bytes are not valid protobuf wire format (caller adds context)."""


def read_varint(buf: BytesLike, pos: int, end: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; return (value, new_pos)."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise WireError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise WireError("varint too long")


def read_len32(buf: BytesLike, pos: int, end: int) -> tuple[int, int]:
    """A length of at most 5 bytes (< 2**35; protobuf's own limit is 2**31)
    at ``pos``; (value, next position)."""
    result = shift = 0
    while pos < end:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7
        if shift > 28:
            break
    raise WireError("bad length")


def encode_varint(v: int) -> bytes:
    """Base-128 varint of ``v`` taken as an unsigned 64-bit value (negatives as
    protobuf writes int64: ten bytes)."""
    v &= _U64
    if v < 0x80:
        return bytes((v,))
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def to_int64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def to_int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def iter_fields(buf: BytesLike, pos: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """Yield ``(field_number, wire_type, value_or_start, value_end)`` for each field.

    For VARINT the third item is the value (fourth unused: the next position);
    for LEN, I32 and I64 it is the start of the value bytes and the fourth
    its end.  Groups are rejected.
    """
    while pos < end:
        key, pos = read_varint(buf, pos, end)
        field, wt = key >> 3, key & 7
        if field == 0:
            raise WireError("field number 0")
        if wt == VARINT:
            value, pos = read_varint(buf, pos, end)
            yield field, wt, value, pos
        elif wt == LEN:
            n, pos = read_varint(buf, pos, end)
            if n > end - pos:
                raise WireError("length-delimited field runs past the end")
            yield field, wt, pos, pos + n
            pos += n
        elif wt == I32:
            if pos + 4 > end:
                raise WireError("truncated fixed32")
            yield field, wt, pos, pos + 4
            pos += 4
        elif wt == I64:
            if pos + 8 > end:
                raise WireError("truncated fixed64")
            yield field, wt, pos, pos + 8
            pos += 8
        else:
            raise WireError(f"unsupported wire type {wt}")


def read_packed_varints(buf: BytesLike, start: int, end: int) -> list[int]:
    out: list[int] = []
    pos = start
    while pos < end:
        v, pos = read_varint(buf, pos, end)
        out.append(v)
    return out


_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")
