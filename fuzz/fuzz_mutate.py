"""A small, dependency-free mutation engine: the fallback where atheris is missing.

No coverage feedback, so it leans on format knowledge instead: protobuf tags
and varints, TFRecord length fields and CRCs, long repeats (the cheap way to
reach size limits and quadratic paths), and splices between seeds.  Seeded
``random.Random`` makes every run reproducible: a failing input can always be
regenerated from (seed, iteration).
"""

from __future__ import annotations

import random
import struct

from tfrecord_numpy._wire import encode_varint
from tfrecord_numpy.framing import masked_crc

_INTERESTING_BYTES = (
    0x00,
    0x01,
    0x02,
    0x04,
    0x07,
    0x08,
    0x0A,
    0x0D,
    0x10,
    0x12,
    0x1A,
    0x22,
    0x7F,
    0x80,
    0x81,
    0xFE,
    0xFF,
    0x0B,
    0x0C,
    0x1F,
    0x8B,
    0x78,
    0x9C,
)
_INTERESTING_INTS = (
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    64,
    127,
    128,
    255,
    256,
    4096,
    65535,
    (1 << 31) - 1,
    1 << 31,
    (1 << 32) - 1,
    1 << 32,
    (1 << 62),
    (1 << 63) - 1,
    1 << 63,
    (1 << 64) - 1,
)


def varint(v: int) -> bytes:
    """Base-128 varint of ``v`` taken as an unsigned 64-bit value."""
    return encode_varint(v)


class Mutator:
    """Mutates byte strings drawn from a pool of seeds (and their mutants)."""

    def __init__(self, seeds: list[bytes], rng: random.Random, max_len: int = 4096) -> None:
        self.seeds = [s for s in seeds] or [b""]
        self.rng = rng
        self.max_len = max_len
        self.pool: list[bytes] = list(self.seeds)

    def next(self) -> bytes:
        """A fresh input: a seed or an earlier mutant, mutated 1-8 times."""
        rng = self.rng
        base = rng.choice(self.pool) if rng.random() < 0.3 else rng.choice(self.seeds)
        data = bytearray(base)
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
            data = self._mutate(data)
        out = bytes(data[: self.max_len * 4])
        if rng.random() < 0.05:
            self.pool.append(out[: self.max_len])
            if len(self.pool) > 2000:
                del self.pool[len(self.seeds) : len(self.seeds) + 500]
        return out

    def _pos(self, data: bytearray, end_ok: bool = False) -> int:
        n = len(data) + (1 if end_ok else 0)
        return self.rng.randrange(n) if n else 0

    def _mutate(self, data: bytearray) -> bytearray:
        rng = self.rng
        op = rng.randrange(16)
        if not data:
            op = rng.choice((8, 9, 10))  # only insertions make sense
        if op == 0:  # flip a bit
            i = self._pos(data)
            data[i] ^= 1 << rng.randrange(8)
        elif op == 1:  # an interesting byte
            data[self._pos(data)] = rng.choice(_INTERESTING_BYTES)
        elif op == 2:  # a random byte
            data[self._pos(data)] = rng.randrange(256)
        elif op == 3:  # delete a range
            i = self._pos(data)
            del data[i : i + rng.choice((1, 1, 2, 4, 8, 32, 256))]
        elif op == 4:  # nudge a byte (a length or count off by a little)
            i = self._pos(data)
            data[i] = (data[i] + rng.choice((-2, -1, 1, 2))) & 0xFF
        elif op == 5:  # truncate
            del data[self._pos(data) :]
        elif op == 6:  # overwrite with a varint (lengths, dims, dtypes)
            i = self._pos(data)
            v = varint(rng.choice(_INTERESTING_INTS) + rng.choice((-1, 0, 0, 1)))
            data[i : i + len(v)] = v
        elif op == 7:  # duplicate a slice in place, sometimes many times
            i = self._pos(data)
            j = min(len(data), i + rng.choice((1, 2, 3, 4, 8, 16, 64)))
            k = rng.choice((1, 1, 2, 3, 16, 100, 1000, 5000))
            data[j:j] = bytes(data[i:j]) * k
        elif op == 8:  # insert random or interesting bytes
            i = self._pos(data, True)
            if rng.random() < 0.5:
                ins = bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 4, 8))))
            else:
                ins = bytes(rng.choice(_INTERESTING_BYTES) for _ in range(rng.choice((1, 2, 3))))
            data[i:i] = ins
        elif op == 9:  # insert a varint
            i = self._pos(data, True)
            data[i:i] = varint(rng.choice(_INTERESTING_INTS))
        elif op == 10:  # splice in part of another seed
            other = rng.choice(self.seeds)
            if other:
                a = rng.randrange(len(other))
                b = min(len(other), a + rng.choice((4, 16, 64, 256, 4096)))
                i = self._pos(data, True)
                data[i:i] = other[a:b]
        elif op == 11:  # crossover: head of this, tail of another
            other = rng.choice(self.seeds)
            data = data[: self._pos(data, True)] + other[rng.randrange(len(other) + 1) :]
        elif op == 12:  # protobuf: wrap a slice as a length-delimited field
            i = self._pos(data, True)
            j = min(len(data), i + rng.choice((0, 1, 4, 16, 64)))
            tag = rng.choice((0x0A, 0x12, 0x1A, 0x22, 0x08, 0x0B, 0x0C, 0x8A))
            data[i:j] = bytes((tag,)) + varint(j - i) + bytes(data[i:j])
        elif op == 13:  # protobuf: re-encode a one-byte tag or length non-canonically
            i = self._pos(data)
            if data[i] < 0x80:
                data[i : i + 1] = bytes((data[i] | 0x80, 0x00))
        elif op == 14:  # TFRecord: fix up the CRCs of the record at a random header position
            self._fix_crcs(data, self._pos(data))
        else:  # swap two ranges
            i, j = sorted((self._pos(data), self._pos(data)))
            n = min(rng.choice((1, 4, 16, 64)), j - i)
            if n > 0 and j + n <= len(data):
                a, b = bytes(data[i : i + n]), bytes(data[j : j + n])
                data[i : i + n], data[j : j + n] = b, a
        return data

    def _fix_crcs(self, data: bytearray, i: int) -> None:
        """Make the header at ``i`` (and its payload, if present) pass CRC checks,
        so mutations reach past the framing's first line of defence."""
        if i + 12 > len(data):
            return
        data[i + 8 : i + 12] = struct.pack("<I", masked_crc(bytes(data[i : i + 8])))
        (n,) = struct.unpack_from("<Q", data, i)
        end = i + 12 + n
        if end + 4 <= len(data):
            data[end : end + 4] = struct.pack("<I", masked_crc(bytes(data[i + 12 : end])))
