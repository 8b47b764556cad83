"""Checksums of published outputs: CRC32C by default, sha256 on request.

CRC32C is what Google Cloud Storage keeps for every object (base64 of the
big-endian value in its metadata), so a rerun against a ``gs://`` DEST can
verify outputs from the object metadata alone; locally it runs at memory
speed.  Old manifests hold sha256 and still verify.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import crc32c as _crc32c

CHECKSUMS = ("crc32c", "sha256")
DEFAULT_CHECKSUM = "crc32c"
_BLOCK = 8 << 20


class Digest:
    """A running checksum of one kind; :meth:`value` is its manifest spelling."""

    def __init__(self, kind: str = DEFAULT_CHECKSUM) -> None:
        if kind not in CHECKSUMS:
            raise ValueError(f"checksum must be one of {CHECKSUMS}, not {kind!r}")
        self.kind = kind
        self._crc = 0
        self._sha = hashlib.sha256() if kind == "sha256" else None

    def update(self, data: bytes | bytearray | memoryview) -> None:
        if self._sha is not None:
            self._sha.update(data)
        else:
            self._crc = _crc32c.crc32c(data, self._crc)

    def value(self) -> str:
        if self._sha is not None:
            return self._sha.hexdigest()
        return crc32c_spelling(self._crc)


_CRC32C_REFLECTED = 0x82F63B78  # the Castagnoli polynomial, bit-reversed


def _gf2_times(matrix: list[int], vector: int) -> int:
    total = 0
    i = 0
    while vector:
        if vector & 1:
            total ^= matrix[i]
        vector >>= 1
        i += 1
    return total


def _gf2_square(matrix: list[int]) -> list[int]:
    return [_gf2_times(matrix, matrix[n]) for n in range(32)]


def crc32c_combine(crc1: int, crc2: int, len2: int) -> int:
    """CRC32C of ``A + B`` from ``crc32c(A)``, ``crc32c(B)`` and ``len(B)`` (zlib's
    ``crc32_combine`` over the Castagnoli polynomial; a few ms in pure Python).
    Lets a file's checksum be computed while its body streams out, before its
    header (written last) is known."""
    if len2 <= 0:
        return crc1
    one_bit = [_CRC32C_REFLECTED] + [1 << n for n in range(31)]  # the CRC register fed one zero bit
    op = _gf2_square(_gf2_square(_gf2_square(one_bit)))  # ... one zero byte
    while True:  # apply len2 zero bytes to crc1: op holds 2**k zero bytes at step k
        if len2 & 1:
            crc1 = _gf2_times(op, crc1)
        len2 >>= 1
        if not len2:
            break
        op = _gf2_square(op)
    return crc1 ^ crc2


def crc32c_spelling(value: int) -> str:
    """A CRC32C as the manifest (and GCS's object metadata) spell it: base64, big-endian."""
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")


def checksum_of(fs: Any, path: str, kind: str, *, trust_store: bool = True) -> str:
    """The checksum of a stored file: from the store's own metadata where it keeps
    one of this kind (GCS's ``crc32c``: nothing is downloaded), else read through."""
    if kind == "crc32c" and trust_store:
        try:
            stored = fs.info(path).get("crc32c")
        except (FileNotFoundError, OSError):
            raise
        if isinstance(stored, str) and stored:
            return stored
    digest = Digest(kind)
    with fs.open(path, "rb") as f:
        while chunk := f.read(_BLOCK):
            digest.update(chunk)
    return digest.value()


def recorded_checksum(info: dict[str, Any]) -> tuple[str, str] | None:
    """``(kind, value)`` of an output's manifest record (crc32c first), or None."""
    for kind in CHECKSUMS:
        value = info.get(kind)
        if isinstance(value, str) and value:
            return kind, value
    return None
