"""Batches of ``tf.train.Example`` decoded at once: ``tf.io.parse_example`` without TensorFlow.

Parsing record by record costs tens of Python operations per record and per
feature (~35 µs for a small Example).  Here the records of a batch sit in one
``bytes`` buffer (padded, so every gather stays in bounds) at known
``starts``/``ends``, and numpy decodes all of them together, so the Python
cost is paid per batch and per feature, never per record or per value:

* **templates** (the common case): records are grouped by length; in a big
  enough group the first record is walked exactly and its *structural*
  bytes noted (tags, lengths, keys: every byte TensorFlow's parser reads to
  find its way).  Every record whose structural bytes are the same at the
  same offsets -- one AND and one bytewise compare for the whole group -- is
  laid out the same way, so its values are column slices: floats by a
  ``view``, varints by a vectorised decode, strings via a void ``dtype``.
* **lockstep walk** (the rest): the map entries of all remaining records are
  walked together, entry slot by entry slot, tags and varints read by
  vectorised gathers; keys are identified per slot (one compare when every
  record has the same key there, an exact ``np.unique`` otherwise), then
  each requested feature is decoded for all records holding it, bytes lists
  by walking their items in lockstep.

Both paths accept a record only when they have proved it is in the plain
encoding (one ``Features``, one-byte tags, key before value, one packed
chunk filling its list, no duplicate requested key, the right kind and
count, short varints, ...).  Anything else -- unusual encodings, errors,
missing required features -- goes to an exact per-record parser
(:func:`_parse_record`), whose results are merged in.  So a batch is, bit for
bit, what the per-record parser gives, and an error is the one
:func:`~tfrecord_numpy.example.parse_example` raises for the first failing
record, with ``.index`` its position in the batch.

Semantics are those of TensorFlow 2.21's *batched* fast parser
(``FastParseSerializedExample``), which equals ``parse_single_example``
except in one corner: a VarLenFeature whose last entry in a record has no
kind set makes that row empty (earlier entries of the key are ignored),
where the single-example parser skips the kindless entry and uses an
earlier one.  :func:`_parse_record` follows the batched parser there.

:func:`read_batches` frames whole read blocks at once (a tight loop follows
the chain of lengths; the CRCs are one C call per record plus vectorised
comparisons), hands anything unusual to
:class:`~tfrecord_numpy.framing.RecordScanner` -- so framing errors are
exactly :func:`~tfrecord_numpy.reader.iter_records`'s -- and decodes each
block's records in one go before cutting them into batches.
"""

from __future__ import annotations

import bisect
import math
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import crc32c as _crc32c
import numpy as np

from .compression import ReadableStream
from .errors import Location, TFRecordError
from .example import (
    _NP_DTYPE,
    FixedLenFeature,
    SparseValue,
    VarLenFeature,
    _as_buffer,
    _found_features,
    _object_array,
    _with_defaults,
)
from .framing import DEFAULT_MAX_RECORD_BYTES, HEADER_BYTES, RecordScanner
from .reader import iter_record_blocks
from .storage import open_source, resolve_sources

if TYPE_CHECKING:
    from .storage import Sources

__all__ = ["parse_examples", "read_batches"]

Feature = FixedLenFeature | VarLenFeature
Spec = Mapping[str, Feature]
#: what a batch holds per feature: a dense array, or a batched SparseValue
Column = np.ndarray | SparseValue

_FLOAT, _INT64, _STRING = "float32", "int64", "string"
_KIND_TAG = {_STRING: 0x0A, _FLOAT: 0x12, _INT64: 0x1A}  # Feature's oneof tags
#: zero bytes after the last record: gathers a few bytes past a record's end
#: (on rows that are failing anyway) stay inside the buffer
_PAD = bytes(32)
#: lockstep walks (entries, bytes items) run this many steps whatever the
#: number of records still active; after that a step must keep at least
#: 1/_MIN_SHARE of the batch busy, and the records left go to the exact parser.
#: So a batch costs O(mean entries per record) Python calls, never O(records).
_FREE_STEPS = 16
_MIN_SHARE = 32
_MAX_KEY = 1024  # longer keys (never seen in practice) go to the exact parser
#: templates: a group of equal-length records gets one when it holds at least
#: _MIN_GROUP records and 1/_MAX_GROUPS of the batch; up to _MAX_TEMPLATES
#: layouts are tried per group, and a template lists at most _MAX_ITEMS strings
_MIN_GROUP = 16
_MAX_GROUPS = 64
_MAX_TEMPLATES = 4
_MAX_ITEMS = 64
_I64 = np.int64


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class _Plan:
    """A spec checked once: names in spec order, key bytes -> feature number."""

    spec: dict[str, Feature]
    names: tuple[str, ...]
    feats: tuple[Feature, ...]
    ids: dict[bytes, int]
    wanted: dict[bytes, tuple[str, Feature]]


def _plan(features: Spec) -> _Plan:
    if not isinstance(features, Mapping):
        raise TypeError(
            f"features must be a mapping of name -> FixedLenFeature/VarLenFeature, not {type(features).__name__}"
        )
    spec: dict[str, Feature] = {}
    for name, feat in features.items():
        if not isinstance(name, str):
            raise TypeError(f"feature names must be str, not {type(name).__name__}")
        if not isinstance(feat, (FixedLenFeature, VarLenFeature)):
            raise TypeError(f"spec for {name!r} must be a FixedLenFeature or VarLenFeature, not {type(feat).__name__}")
        spec[name] = feat
    names = tuple(spec)
    keys = [n.encode("utf-8") for n in names]
    return _Plan(
        spec=spec,
        names=names,
        feats=tuple(spec.values()),
        ids={k: i for i, k in enumerate(keys)},
        wanted={k: (n, spec[n]) for k, n in zip(keys, names)},
    )


# --------------------------------------------------------------------------- the exact per-record parser


def _parse_record(buf: Any, plan: _Plan) -> dict[str, np.ndarray | SparseValue]:
    """One record by TensorFlow's batched rules (``FastParseSerializedExample``).

    ``example._parse_with_spec``'s two steps, messages included, except that
    a kindless entry of a VarLenFeature counts as an empty value (and hides the
    earlier entries of its key), as it does in a batch and not in
    ``parse_single_example`` (``batched=True``).
    """
    return _with_defaults(_found_features(buf, plan.wanted, batched=True), plan.spec)


# --------------------------------------------------------------------------- vectorised wire helpers


def _window(u8: np.ndarray, width: int) -> np.ndarray:
    """``[len - width + 1, width]`` view whose row ``i`` is ``u8[i:i+width]``: a row gather copies ``width`` bytes."""
    rows = max(len(u8) - width + 1, 0)
    view: np.ndarray = np.ndarray((rows, width), dtype=np.uint8, buffer=u8, offset=0, strides=(1, 1))
    return view


class _Batch:
    """The records' bytes and which records the fast paths still vouch for."""

    __slots__ = ("data", "u8", "n", "ok", "_windows")

    def __init__(self, data: bytes, n: int, windows: dict[int, np.ndarray] | None = None) -> None:
        self.data = data
        self.u8 = np.frombuffer(data, dtype=np.uint8)
        self.n = n
        #: False: the record goes to the exact parser
        self.ok = np.ones(n, dtype=bool)
        self._windows: dict[int, np.ndarray] = {} if windows is None else windows

    def sub(self, n: int) -> _Batch:
        """A batch of ``n`` of these records (rows renumbered from 0), sharing the bytes."""
        return _Batch(self.data, n, self._windows)

    def window(self, width: int) -> np.ndarray:
        w = self._windows.get(width)
        if w is None:
            w = self._windows[width] = _window(self.u8, width)
        return w

    def clip(self, pos: np.ndarray) -> np.ndarray:
        """Positions made safe to gather at (only rows already failing need it)."""
        safe: np.ndarray = np.minimum(pos, len(self.u8) - 1)
        return safe

    def varints(self, pos: np.ndarray, lim: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``ReadVarint32`` at every ``pos``: (value, next position, ok).

        Only varints of at most 4 bytes (values < 2**28) that end at or before
        ``lim`` are ok; anything longer is left to the exact parser.
        """
        b0 = self.u8[pos]
        if not (b0 & 0x80).any():
            return b0.astype(_I64), pos + 1, pos < lim
        w = self.window(4)[pos].astype(_I64)
        last = w < 0x80
        nbytes = last.argmax(axis=1) + 1
        ok = last.any(axis=1)
        used = np.arange(4) < nbytes[:, None]
        value = (((w & 0x7F) << np.array([0, 7, 14, 21], dtype=_I64)) * used).sum(axis=1)
        nxt = pos + nbytes
        return value, nxt, ok & (nxt <= lim)


def _varint_runs(raw: np.ndarray, nbytes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packed varint chunks (``raw``: the chunks back to back, ``nbytes[i]`` bytes each) decoded at once.

    Returns (values, count per chunk, bad): a bad chunk does not end on a
    varint's last byte or holds one longer than 10 bytes (where protobuf and
    TensorFlow give up); it is left out of the values, with a count of 0.
    Arithmetic as ``example._decode_varints`` (two's complement, bits past
    64 dropped).
    """
    bad = np.zeros(len(nbytes), dtype=bool)
    while True:
        last = raw < 0x80
        if last.all():  # every value below 128: one byte each
            return raw.astype(_I64), nbytes, bad
        first = np.cumsum(nbytes) - nbytes
        now = (nbytes > 0) & ~last[np.minimum(first + nbytes - 1, len(raw) - 1)]
        if not now.any():
            ends = np.flatnonzero(last)
            begins = np.empty_like(ends)
            begins[0] = 0
            begins[1:] = ends[:-1] + 1
            long = (ends - begins) >= 10
            if not long.any():
                which: np.ndarray = np.cumsum(last) - last
                shift = (np.arange(len(raw), dtype=_I64) - begins[which]).astype(np.uint64) * np.uint64(7)
                values = np.add.reduceat((raw & 0x7F).astype(np.uint64) << shift, begins).view(_I64)
                marks = np.zeros(len(raw) + 1, dtype=_I64)
                np.cumsum(last, out=marks[1:])
                return values, marks[first + nbytes] - marks[first], bad
            now = np.zeros(len(nbytes), dtype=bool)
            now[np.repeat(np.arange(len(nbytes)), nbytes)[ends[long]]] = True
        raw = raw[np.repeat(~now, nbytes)]
        nbytes = np.where(now, 0, nbytes)
        bad |= now


def _lockstep_allowed(step: int, active: int, n: int) -> bool:
    return step < _FREE_STEPS or active * _MIN_SHARE >= n


# --------------------------------------------------------------------------- what the paths produce


@dataclass
class _Values:
    """A feature decoded for ``rows``: ``counts[i]`` values each, concatenated in row order."""

    rows: np.ndarray
    counts: np.ndarray
    values: np.ndarray


class _Acc:
    """Per feature, the pieces the fast paths decoded, and the rows lacking the feature."""

    def __init__(self, b: _Batch, plan: _Plan) -> None:
        self.b = b
        self.plan = plan
        self.pieces: list[list[_Values]] = [[] for _ in plan.feats]
        self.missing: list[list[np.ndarray]] = [[] for _ in plan.feats]

    def add(self, f: int, rows: np.ndarray, counts: np.ndarray, values: np.ndarray) -> None:
        if len(rows):
            self.pieces[f].append(_Values(rows, counts, values))

    def absent(self, f: int, rows: np.ndarray) -> None:
        """Rows without feature ``f``: a default, an empty row, or TF's "required" error."""
        feat = self.plan.feats[f]
        if not len(rows) or isinstance(feat, VarLenFeature):
            return  # an empty row: nothing to add
        if feat.default_value is None or feat.default_value.size == 0:
            self.b.ok[rows] = False  # the exact parser raises TensorFlow's error
        else:
            self.missing[f].append(rows)


# --------------------------------------------------------------------------- path 1: templates


class _Unusual(Exception):
    """A template candidate that is not in the plain encoding the template path handles."""


@dataclass
class _Slot:
    """Where a requested feature's values sit in a template record (offsets from the record's start)."""

    kind: str  # "absent", or the feature's dtype
    offset: int = 0  # float32/int64: the packed data
    nbytes: int = 0
    items: tuple[tuple[int, int], ...] = ()  # string: (offset, length) of each value


@dataclass
class _Template:
    """A record's layout: its structural bytes (tags, lengths, keys) and where the values are.

    ``mask``/``want`` cover the record rounded up to whole 8-byte words:
    a record has this layout when ``words & mask == want`` for all its words.
    """

    length: int
    width: int  # the length rounded up to a multiple of 8 (at least 8)
    mask: np.ndarray  # uint64 [width // 8]: 1-bits over the structural bytes
    want: np.void  # the structural bytes (0 elsewhere), as one void scalar of ``width`` bytes
    slots: list[_Slot]


def _template(data: bytes, start: int, end: int, plan: _Plan) -> _Template:
    """Walk one record exactly (TF's rules, plain encoding only) and note its layout.

    Every byte TensorFlow's parser reads to find its way (tags, lengths,
    keys) is structural; payload bytes (floats, varint values, string
    contents, unrequested features' contents) are not.  A record whose
    structural bytes equal these, at the same offsets, is parsed the same way.
    Raises :class:`_Unusual` for anything but the plain encoding.
    """
    cols: list[int] = []

    def expect(pos: int, limit: int, byte: int) -> None:
        if pos >= limit or data[pos] != byte:
            raise _Unusual
        cols.append(pos)

    def varint(pos: int, limit: int) -> tuple[int, int]:
        value = shift = 0
        q = pos
        while True:
            if q >= limit or q - pos >= 4:
                raise _Unusual
            c = data[q]
            q += 1
            value |= (c & 0x7F) << shift
            shift += 7
            if c < 0x80:
                cols.extend(range(pos, q))
                return value, q

    pos = start
    if end > start:
        expect(pos, end, 0x0A)
        flen, pos = varint(pos + 1, end)
        if pos + flen != end:
            raise _Unusual
    entries: list[tuple[bytes, int, int]] = []
    while pos < end:
        expect(pos, end, 0x0A)
        elen, pos = varint(pos + 1, end)
        esub = pos + elen
        if esub > end:
            raise _Unusual
        expect(pos, esub, 0x0A)
        klen, ks = varint(pos + 1, esub)
        if ks + klen >= esub:
            raise _Unusual
        cols.extend(range(ks, ks + klen))
        expect(ks + klen, esub, 0x12)
        vlen, vs = varint(ks + klen + 1, esub)
        if vs + vlen != esub:
            raise _Unusual
        entries.append((data[ks : ks + klen], vs, esub))
        pos = esub
    slots: list[_Slot | None] = [None] * len(plan.feats)
    for key, vs, ve in entries:
        f = plan.ids.get(key)
        if f is None:
            continue  # TF never looks inside a feature it was not asked for
        if slots[f] is not None:
            raise _Unusual  # a duplicate key
        feat = plan.feats[f]
        dtype = cast(str, feat.dtype)
        cap = math.prod(cast(tuple[int, ...], feat.shape)) if isinstance(feat, FixedLenFeature) else None
        expect(vs, ve, _KIND_TAG[dtype])
        llen, p = varint(vs + 1, ve)
        if p + llen != ve:
            raise _Unusual
        if dtype == _STRING:
            items: list[tuple[int, int]] = []
            while p < ve:
                expect(p, ve, 0x0A)
                ilen, q = varint(p + 1, ve)
                if q + ilen > ve or len(items) == _MAX_ITEMS:
                    raise _Unusual
                items.append((q - start, ilen))
                p = q + ilen
            if cap is not None and len(items) != cap:
                raise _Unusual
            slots[f] = _Slot(dtype, items=tuple(items))
            continue
        nbytes = 0
        if p < ve:
            expect(p, ve, 0x0A)
            nbytes, p = varint(p + 1, ve)
            if p + nbytes != ve:
                raise _Unusual
        if dtype == _FLOAT and (nbytes & 3 or (cap is not None and nbytes != 4 * cap)):
            raise _Unusual
        slots[f] = _Slot(dtype, p - start, nbytes)
    for f, slot in enumerate(slots):
        feat = plan.feats[f]
        if slot is None and isinstance(feat, FixedLenFeature):
            if feat.default_value is None or feat.default_value.size == 0:
                raise _Unusual  # a required feature is missing: the exact parser says so
    length = end - start
    width = max(8, -(-length // 8) * 8)
    mask = np.zeros(width, dtype=np.uint8)
    want = np.zeros(width, dtype=np.uint8)
    at = np.array(cols, dtype=_I64)
    mask[at - start] = 0xFF
    want[at - start] = np.frombuffer(data, dtype=np.uint8)[at]
    return _Template(
        length,
        width,
        mask.view("<u8"),
        want.view(np.dtype((np.void, width)))[0],
        [_Slot("absent") if s is None else s for s in slots],
    )


def _by_templates(b: _Batch, starts: np.ndarray, ends: np.ndarray, plan: _Plan, acc: _Acc) -> np.ndarray:
    """Decode the records that share a template with many others; return the rows left over.

    Records are grouped by length; in a group big enough to pay for it, the
    first record is walked exactly as a template and every record whose
    structural bytes equal the template's is decoded by column slices.
    """
    n = b.n
    if not n:
        return starts[:0]
    lengths = ends - starts
    order = np.argsort(lengths, kind="stable")  # equal lengths keep their row order
    cuts = np.flatnonzero(np.diff(lengths[order])) + 1
    bounds = np.concatenate([[0], cuts, [n]])
    sizes = np.diff(bounds)
    least = max(_MIN_GROUP, n // _MAX_GROUPS)
    big = np.flatnonzero(sizes >= least)
    left: list[np.ndarray] = [order[np.repeat(sizes < least, sizes)]]
    for g in big.tolist():  # at most _MAX_GROUPS groups
        rows = order[bounds[g] : bounds[g + 1]]
        for _ in range(_MAX_TEMPLATES):
            t = int(rows[0])
            try:
                template = _template(b.data, int(starts[t]), int(ends[t]), plan)
            except _Unusual:
                left.append(rows[:1])
                rows = rows[1:]
            else:
                rows = _apply(b, template, rows, starts, plan, acc)
            if len(rows) < least:
                break
        left.append(rows)
    rest = np.concatenate(left)
    rest.sort()
    return rest


def _apply(b: _Batch, t: _Template, rows: np.ndarray, starts: np.ndarray, plan: _Plan, acc: _Acc) -> np.ndarray:
    """Decode the ``rows`` (all ``t.length`` bytes long) laid out as ``t``; return the others."""
    mat = b.window(t.width)[starts[rows]]
    # the structural bytes of every record at once: one AND, one bytewise compare
    same = (mat.view("<u8") & t.mask).view(t.want.dtype).ravel() == t.want
    other: np.ndarray = rows[~same]
    if len(other):
        rows, mat = rows[same], mat[same]
    k = len(rows)
    if not k:
        return other
    for f, slot in enumerate(t.slots):
        feat = plan.feats[f]
        if slot.kind == "absent":
            acc.absent(f, rows)
        elif slot.kind == _FLOAT:
            count = slot.nbytes >> 2
            floats = np.ascontiguousarray(mat[:, slot.offset : slot.offset + slot.nbytes]).view("<f4")
            acc.add(f, rows, np.full(k, count, dtype=_I64), floats.astype(np.float32, copy=False).ravel())
        elif slot.kind == _INT64:
            cap = math.prod(cast(tuple[int, ...], feat.shape)) if isinstance(feat, FixedLenFeature) else None
            raw = mat[:, slot.offset : slot.offset + slot.nbytes]
            if cap == 1 and 0 < slot.nbytes <= 10:  # a scalar label: one varint filling the chunk
                values, bad = _one_varint(raw)
                counts = np.ones(k, dtype=_I64)
            else:
                values, counts, bad = _varint_runs(
                    np.ascontiguousarray(raw).ravel(), np.full(k, slot.nbytes, dtype=_I64)
                )
                if cap is not None:
                    bad |= counts != cap
            if bad.any():
                b.ok[rows[bad]] = False
                acc.add(f, rows[~bad], counts[~bad], values[np.repeat(~bad, counts)])
            else:
                acc.add(f, rows, counts, values)
        else:
            acc.add(f, rows, np.full(k, len(slot.items), dtype=_I64), _string_columns(mat, slot.items))
    return other


def _one_varint(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of ``raw`` (1 to 10 bytes) as one varint: (values, rows that are not exactly one)."""
    width = raw.shape[1]
    bad = raw[:, -1] >= 0x80
    if width > 1:
        bad |= (raw[:, :-1] < 0x80).any(axis=1)
    if width == 1:
        return raw[:, 0].astype(_I64), bad
    values = (raw[:, 0] & 0x7F).astype(np.uint64)
    for j in range(1, width):  # bits past 64 drop, as in example._decode_varints
        values |= (raw[:, j] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
    return values.view(_I64), bad


def _string_columns(mat: np.ndarray, items: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Bytes values at the same offsets in every row of ``mat``: an object array, row-major."""
    k = len(mat)
    out = np.empty((k, len(items)), dtype=object)
    for i, (offset, length) in enumerate(items):
        if length:
            raw = np.ascontiguousarray(mat[:, offset : offset + length])
            out[:, i] = raw.view(np.dtype((np.void, length))).ravel().astype(object)  # bytes, NULs kept
        else:
            out[:, i] = b""
    return out.ravel()


# --------------------------------------------------------------------------- path 2: lockstep walk


@dataclass
class _Entries:
    """Per record and entry slot: which requested feature (-1: none) and its Feature span."""

    fid: np.ndarray  # int64 [n, slots]
    vs: np.ndarray  # int64 [n, slots]
    ve: np.ndarray  # int64 [n, slots]


def _by_lockstep(b: _Batch, starts: np.ndarray, ends: np.ndarray, rows: np.ndarray, plan: _Plan, acc: _Acc) -> None:
    """Decode ``rows`` whatever their layouts, walking all of them together, entry by entry."""
    sub = b.sub(len(rows))
    ent = _key_index(sub, starts[rows], ends[rows], plan)
    for f, feat in enumerate(plan.feats):
        dtype = cast(str, feat.dtype)
        have, vs, ve, missing = _locate(ent, sub, f)
        have, p, end = _list_span(sub, have, vs, ve, dtype)
        cap = math.prod(cast(tuple[int, ...], feat.shape)) if isinstance(feat, FixedLenFeature) else None
        vals = _DECODERS[dtype](sub, have, p, end, cap)
        acc.add(f, rows[vals.rows], vals.counts, vals.values)
        acc.absent(f, rows[missing])
    b.ok[rows] &= sub.ok


def _key_index(b: _Batch, starts: np.ndarray, ends: np.ndarray, plan: _Plan) -> _Entries:
    """Walk every record's ``Example{Features{map<key, Feature>}}`` in lockstep."""
    u8, ok = b.u8, b.ok
    nonempty = ends > starts
    ok &= ~nonempty | (u8[starts] == 0x0A)  # one Features field ...
    flen, pos, good = b.varints(starts + 1, ends)
    ok &= ~nonempty | (good & (pos + flen == ends))  # ... spanning the whole record
    pos = np.where(ok & nonempty, pos, ends)
    fend = ends

    slot_rows: list[np.ndarray] = []
    slot_fid: list[np.ndarray] = []
    slot_vs: list[np.ndarray] = []
    slot_ve: list[np.ndarray] = []
    act = np.flatnonzero(pos < fend)
    step = 0
    while act.size:
        if not _lockstep_allowed(step, act.size, b.n):
            ok[act] = False
            break
        p, lim = pos[act], fend[act]
        good = u8[p] == 0x0A  # a map entry of Features
        elen, p, v = b.varints(p + 1, lim)
        good &= v
        esub = p + elen
        good &= esub <= lim  # TF would clip a longer entry to its parent
        good &= (p < esub) & (u8[b.clip(p)] == 0x0A)  # the key first ...
        klen, p, v = b.varints(b.clip(p + 1), esub)
        good &= v
        ke = p + klen
        good &= ke < esub
        ke = np.minimum(ke, lim)
        good &= u8[ke] == 0x12  # ... then the value, ending the entry
        vlen, p, v = b.varints(ke + 1, esub)
        good &= v & (p + vlen == esub)
        if not good.all():
            ok[act[~good]] = False
            act, p, esub, ke, klen = act[good], p[good], esub[good], ke[good], klen[good]
        if act.size:
            slot_rows.append(act)
            slot_fid.append(_key_ids(b, ke - klen, klen, plan, act))
            slot_vs.append(p)
            slot_ve.append(esub)
            pos[act] = esub
            act = act[esub < fend[act]]
        step += 1

    slots = len(slot_rows)
    fid = np.full((b.n, slots), -1, dtype=_I64)
    vs = np.zeros((b.n, slots), dtype=_I64)
    ve = np.zeros((b.n, slots), dtype=_I64)
    for e in range(slots):
        r = slot_rows[e]
        fid[r, e] = slot_fid[e]
        vs[r, e] = slot_vs[e]
        ve[r, e] = slot_ve[e]
    return _Entries(fid, vs, ve)


def _key_ids(b: _Batch, ks: np.ndarray, kl: np.ndarray, plan: _Plan, rows: np.ndarray) -> np.ndarray:
    """The requested-feature number of each key (-1 for a key not asked for)."""
    first = int(ks[0])
    length = int(kl[0])
    ref = b.data[first : first + length]
    if length:
        ref_arr = np.frombuffer(ref, dtype=np.uint8)
        same = (kl == length) & (b.window(length)[np.minimum(ks, len(b.u8) - length)] == ref_arr).all(axis=1)
    else:
        same = kl == 0
    fid = np.full(len(ks), plan.ids.get(ref, -1), dtype=_I64)
    if same.all():
        return fid
    other = np.flatnonzero(~same)
    fid[other] = _key_ids_exact(b, ks[other], kl[other], plan, rows[other])
    return fid


def _key_ids_exact(b: _Batch, ks: np.ndarray, kl: np.ndarray, plan: _Plan, rows: np.ndarray) -> np.ndarray:
    """Keys that differ between records: grouped exactly by their padded bytes."""
    too_long = kl > _MAX_KEY
    if too_long.any():
        b.ok[rows[too_long]] = False
        kl = np.where(too_long, 0, kl)
    width = int(kl.max())
    mat = np.zeros((len(ks), width + 2), dtype=np.uint8)
    mat[:, 0] = kl & 0xFF
    mat[:, 1] = kl >> 8
    if width:
        keys = b.window(width)[np.minimum(ks, len(b.u8) - width)]
        keys[np.arange(width) >= kl[:, None]] = 0
        mat[:, 2:] = keys
    vtype = np.dtype((np.void, width + 2))
    uniq, inverse = np.unique(mat.view(vtype).ravel(), return_inverse=True)
    lut = np.full(len(uniq), -1, dtype=_I64)
    for key, f in plan.ids.items():  # one comparison per requested feature, whatever the keys
        if len(key) <= width:
            want = np.zeros(width + 2, dtype=np.uint8)
            want[0], want[1] = len(key) & 0xFF, len(key) >> 8
            want[2 : 2 + len(key)] = np.frombuffer(key, dtype=np.uint8)
            lut[uniq == want.view(vtype)[0]] = f
    return cast(np.ndarray, lut[inverse.ravel()])


def _locate(ent: _Entries, b: _Batch, f: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(rows holding feature ``f`` once, their Feature spans, rows lacking it)."""
    match = ent.fid == f
    count = match.sum(axis=1)
    dup = count > 1
    if dup.any():
        b.ok[dup] = False  # TF keeps the last; the exact parser does it
    has = np.flatnonzero(b.ok & (count == 1))
    missing = np.flatnonzero(b.ok & (count == 0))
    if not has.size:
        return has, has, has, missing
    slot = match[has].argmax(axis=1)
    return has, ent.vs[has, slot], ent.ve[has, slot], missing


def _list_span(b: _Batch, rows: np.ndarray, vs: np.ndarray, ve: np.ndarray, dtype: str) -> tuple[np.ndarray, ...]:
    """Check the Feature's kind and read its list's length: (rows, list start, list end)."""
    u8 = b.u8
    good = (vs < ve) & (u8[vs] == _KIND_TAG[dtype])  # kindless or another kind: exact parser
    llen, p, v = b.varints(vs + 1, ve)
    good &= v & (p + llen == ve)  # the list fills its Feature
    if not good.all():
        b.ok[rows[~good]] = False
        rows, p, ve = rows[good], p[good], ve[good]
    return rows, p, ve


def _packed(b: _Batch, rows: np.ndarray, p: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, ...]:
    """A FloatList/Int64List holding one packed chunk that fills it (or nothing): (rows, data start, data length)."""
    nonempty = p < end
    if not nonempty.any():
        return rows, p, np.zeros(len(rows), dtype=_I64)
    good = ~nonempty | (b.u8[p] == 0x0A)
    plen, q, v = b.varints(b.clip(p + 1), end)
    good &= ~nonempty | (v & (q + plen == end))
    if not good.all():
        b.ok[rows[~good]] = False
        rows, p, end, q, plen, nonempty = rows[good], p[good], end[good], q[good], plen[good], nonempty[good]
    return rows, np.where(nonempty, q, p), np.where(nonempty, plen, 0)


def _floats(b: _Batch, rows: np.ndarray, p: np.ndarray, end: np.ndarray, cap: int | None) -> _Values:
    rows, start, nbytes = _packed(b, rows, p, end)
    good = (nbytes & 3) == 0  # TF would drop a trailing partial float
    if cap is not None:
        good &= nbytes == 4 * cap
    if not good.all():
        b.ok[rows[~good]] = False
        rows, start, nbytes = rows[good], start[good], nbytes[good]
    counts = nbytes >> 2
    if cap is not None:
        if cap == 0:
            return _Values(rows, counts, np.empty(0, dtype=np.float32))
        raw = b.window(4 * cap)[start]
        return _Values(rows, counts, raw.view("<f4").astype(np.float32, copy=False).ravel())
    total = int(counts.sum())
    first = np.cumsum(counts) - counts
    at = np.repeat(start - 4 * first, counts) + 4 * np.arange(total, dtype=_I64)
    return _Values(rows, counts, b.window(4)[at].view("<f4").astype(np.float32, copy=False).ravel())


def _int64s(b: _Batch, rows: np.ndarray, p: np.ndarray, end: np.ndarray, cap: int | None) -> _Values:
    rows, start, nbytes = _packed(b, rows, p, end)
    first = np.cumsum(nbytes) - nbytes
    raw = b.u8[np.repeat(start - first, nbytes) + np.arange(int(nbytes.sum()), dtype=_I64)]
    values, counts, bad = _varint_runs(raw, nbytes)
    if cap is not None:
        bad |= counts != cap
    if bad.any():
        b.ok[rows[bad]] = False
        values = values[np.repeat(~bad, counts)]
        rows, counts = rows[~bad], counts[~bad]
    return _Values(rows, counts, values)


def _strings(b: _Batch, rows: np.ndarray, p: np.ndarray, end: np.ndarray, cap: int | None) -> _Values:
    """A BytesList's items, walked in lockstep (item ``j`` of every record at step ``j``)."""
    u8 = b.u8
    cur = p.copy()
    bad = np.zeros(len(rows), dtype=bool)
    owners: list[np.ndarray] = []
    begins: list[np.ndarray] = []
    stops: list[np.ndarray] = []
    act = np.flatnonzero(cur < end)
    step = 0
    while act.size:
        if not _lockstep_allowed(step, act.size, b.n) or (cap is not None and step >= cap):
            bad[act] = True  # too many items for the shape, or a walk too long to pay for
            break
        c, lim = cur[act], end[act]
        good = u8[c] == 0x0A
        ilen, q, v = b.varints(c + 1, lim)
        stop = q + ilen
        good &= v & (stop <= lim)
        if not good.all():
            bad[act[~good]] = True
            act, q, stop = act[good], q[good], stop[good]
        owners.append(act)
        begins.append(q)
        stops.append(stop)
        cur[act] = stop
        act = act[stop < end[act]]
        step += 1
    if not owners:
        counts = np.zeros(len(rows), dtype=_I64)
        owner = s = t = counts[:0]
    elif len(owners) == 1:
        owner, s, t = owners[0], begins[0], stops[0]
        counts = np.zeros(len(rows), dtype=_I64)
        counts[owner] = 1
    else:
        owner = np.concatenate(owners)
        order = np.argsort(owner, kind="stable")  # record-major, item order kept
        owner, s, t = owner[order], np.concatenate(begins)[order], np.concatenate(stops)[order]
        counts = np.bincount(owner, minlength=len(rows)).astype(_I64)
    if cap is not None:
        bad |= counts != cap
    if bad.any():
        b.ok[rows[bad]] = False
        keep = ~bad[owner]
        s, t = s[keep], t[keep]
        rows, counts = rows[~bad], counts[~bad]
    data = b.data
    return _Values(rows, counts, _object_array(list(map(data.__getitem__, map(slice, s.tolist(), t.tolist())))))


_DECODERS: dict[str, Callable[[_Batch, np.ndarray, np.ndarray, np.ndarray, int | None], _Values]] = {
    _FLOAT: _floats,
    _INT64: _int64s,
    _STRING: _strings,
}


# --------------------------------------------------------------------------- assembly


def _dense_column(b: _Batch, feat: FixedLenFeature, acc: _Acc, f: int, exact: dict[int, Any]) -> np.ndarray:
    """``[n, *shape]`` from the pieces, the defaults and the exact parser's rows."""
    shape = cast(tuple[int, ...], feat.shape)
    cap = math.prod(shape)
    pieces, missing = acc.pieces[f], acc.missing[f]
    if len(pieces) == 1 and len(pieces[0].rows) == b.n and not exact:
        return pieces[0].values.reshape(b.n, *shape)  # one layout for every record: no scatter
    out = np.empty((b.n, cap), dtype=_NP_DTYPE[feat.dtype])
    for piece in pieces:
        out[piece.rows] = piece.values.reshape(len(piece.rows), cap)
    for rows in missing:
        out[rows] = feat.default_value.reshape(cap)
    name = acc.plan.names[f]
    for r, res in exact.items():
        out[r] = res[name].reshape(cap)
    return out.reshape(b.n, *shape)


@dataclass
class _Ragged:
    """A VarLenFeature over the decoded rows: values row after row, row ``r`` at ``first[r]:first[r+1]``."""

    values: np.ndarray
    counts: np.ndarray  # [n]
    first: np.ndarray  # [n + 1]


def _ragged_column(b: _Batch, dtype: str, acc: _Acc, f: int, exact: dict[int, Any]) -> _Ragged:
    """The pieces and the exact parser's rows merged in row order."""
    name = acc.plan.names[f]
    pieces: list[_Values] = []
    for piece in acc.pieces[f]:
        keep = b.ok[piece.rows]
        if not keep.all():  # rows another feature sent to the exact parser
            piece = _Values(piece.rows[keep], piece.counts[keep], piece.values[np.repeat(keep, piece.counts)])
        pieces.append(piece)
    extra = {r: cast(SparseValue, res[name]).values for r, res in exact.items()}
    per_row = np.zeros(b.n, dtype=_I64)
    for piece in pieces:
        per_row[piece.rows] = piece.counts
    for r, v in extra.items():
        per_row[r] = len(v)
    first = np.zeros(b.n + 1, dtype=_I64)
    np.cumsum(per_row, out=first[1:])
    if len(pieces) == 1 and not extra and len(pieces[0].rows) == b.n:
        return _Ragged(pieces[0].values, per_row, first)
    values = np.empty(int(first[-1]), dtype=_NP_DTYPE[dtype])
    for piece in pieces:
        piece_first = np.cumsum(piece.counts) - piece.counts
        at = np.repeat(first[piece.rows] - piece_first, piece.counts) + np.arange(len(piece.values), dtype=_I64)
        values[at] = piece.values
    for r, v in extra.items():
        values[first[r] : first[r + 1]] = v
    return _Ragged(values, per_row, first)


@dataclass
class _Decoded:
    """Decoded records, cut into batches by :meth:`rows`.

    ``good`` rows are valid: all of them, or those before ``error``'s record.
    """

    names: tuple[str, ...]
    dense: dict[str, np.ndarray]
    ragged: dict[str, _Ragged]
    good: int
    error: TFRecordError | None

    def rows(self, a: int, b: int) -> dict[str, Column]:
        """Rows ``a:b`` as ``tf.io.parse_example`` returns them (dense arrays are views)."""
        out: dict[str, Column] = {}
        for name in self.names:
            arr = self.dense.get(name)
            if arr is not None:
                out[name] = arr[a:b]
                continue
            rag = self.ragged[name]
            va, vb = int(rag.first[a]), int(rag.first[b])
            counts = rag.counts[a:b]
            indices = np.empty((vb - va, 2), dtype=_I64)
            indices[:, 0] = np.repeat(np.arange(b - a, dtype=_I64), counts)
            indices[:, 1] = np.arange(vb - va, dtype=_I64) - np.repeat(rag.first[a:b] - va, counts)
            longest = int(counts.max()) if b > a else 0
            out[name] = SparseValue(indices, rag.values[va:vb], np.array([b - a, longest], dtype=_I64))
        return out


def _decode(
    data: bytes,
    starts: np.ndarray,
    ends: np.ndarray,
    plan: _Plan,
    locate: Callable[[int], Location],
) -> _Decoded:
    """The records ``data[starts[i]:ends[i]]`` (``data`` padded with :data:`_PAD`), all at once.

    Never raises for a record: the first failing one (in order) comes back as
    ``error``, located, with the rows before it decoded.
    """
    n = len(starts)
    b = _Batch(data, n)
    acc = _Acc(b, plan)
    rest = _by_templates(b, starts, ends, plan, acc)
    if len(rest):
        _by_lockstep(b, starts, ends, rest, plan, acc)

    exact: dict[int, dict[str, np.ndarray | SparseValue]] = {}
    good, error = n, None
    view = memoryview(data)
    for r in np.flatnonzero(~b.ok).tolist():  # in order: the first failing record is the error
        try:
            exact[r] = _parse_record(view[int(starts[r]) : int(ends[r])], plan)
        except TFRecordError as exc:
            good, error = r, exc.located(**locate(r)).with_traceback(None)
            break

    dense: dict[str, np.ndarray] = {}
    ragged: dict[str, _Ragged] = {}
    for f, (name, feat) in enumerate(zip(plan.names, plan.feats)):
        if isinstance(feat, FixedLenFeature):
            dense[name] = _dense_column(b, feat, acc, f, exact)
        else:
            ragged[name] = _ragged_column(b, cast(str, feat.dtype), acc, f, exact)
    return _Decoded(plan.names, dense, ragged, good, error)


# --------------------------------------------------------------------------- public: in-memory batches


def _join(records: Sequence[Any]) -> tuple[bytes, np.ndarray, np.ndarray]:
    """One padded buffer holding ``records`` back to back, and their spans."""
    if set(map(type, records)) - {bytes}:
        records = [_as_buffer(r) for r in records]
    lengths = np.fromiter(map(len, records), dtype=_I64, count=len(records))
    ends = np.cumsum(lengths)
    return b"".join([*records, _PAD]), ends - lengths, ends


def parse_examples(records: Sequence[Any], features: Spec) -> dict[str, Column]:
    """Parse a batch of serialized ``tf.train.Example`` like ``tf.io.parse_example``.

    ``records`` holds bytes-like records.  A ``FixedLenFeature`` gives an
    array ``[len(records), *shape]`` (float32, int64, or an object array of
    bytes), missing values taking the default; a ``VarLenFeature`` gives a
    :class:`~tfrecord_numpy.example.SparseValue` with ``indices`` int64
    ``[nnz, 2]`` (record, position), the values, and ``dense_shape``
    ``[len(records), longest]``.  Bit for bit what stacking
    :func:`~tfrecord_numpy.example.parse_example` of each record gives (see
    the module notes for the one batched-parser corner), decoded a batch at a
    time.  The first failing record raises what ``parse_example`` raises for
    it, with ``.index`` its position in ``records``.
    """
    plan = _plan(features)
    if not isinstance(records, (list, tuple)):
        records = list(records)
    data, starts, ends = _join(records)
    decoded = _decode(data, starts, ends, plan, lambda r: {"index": r})
    if decoded.error is not None:
        raise decoded.error
    return decoded.rows(0, len(records))


# --------------------------------------------------------------------------- framing whole blocks

_LENGTH = struct.Struct("<Q")
_crc = _crc32c.crc32c


@dataclass
class _Run:
    """Consecutive complete records of one read block (``block`` is valid until the next run)."""

    path: str | None
    block: memoryview
    heads: np.ndarray  # header position of each record in ``block``
    lengths: np.ndarray  # payload lengths
    index: int  # the first record's index in its file
    offset: int  # the stream offset of ``block[0]``


def _runs_of_stream(stream: ReadableStream, scanner: RecordScanner) -> Iterator[_Run]:
    """The reader's blocks of records, as runs (no per-record Python on the way)."""
    path = None if scanner.path is None else str(scanner.path)
    for block, heads, lengths, indices, offset in iter_record_blocks(stream, scanner):
        yield _Run(path, block, heads, lengths, int(indices[0]), offset)


def _runs(
    sources: Sources, *, compression: str | None, verify: bool, storage_options: dict[str, Any] | None
) -> Iterator[_Run]:
    for source in resolve_sources(sources, storage_options=storage_options):
        opened = open_source(source, compression=compression, storage_options=storage_options)
        scanner = RecordScanner(verify=verify, max_record_bytes=DEFAULT_MAX_RECORD_BYTES, path=opened.name)
        try:
            yield from _runs_of_stream(opened.stream, scanner)
        finally:
            opened.close()


# --------------------------------------------------------------------------- public: batches from files


@dataclass
class _Part:
    """Consecutive records of one run: a view of its block, or a copy that outlives it."""

    data: bytes | memoryview
    starts: np.ndarray  # payload starts in ``data``
    lengths: np.ndarray
    path: str | None
    index: int  # the first record's index in its file
    offsets: np.ndarray  # each record's stream offset


def _part(run: _Run, i: int, j: int) -> _Part:
    heads, lengths = run.heads[i:j], run.lengths[i:j]
    a = int(heads[0])
    b = int(heads[-1] + lengths[-1]) + HEADER_BYTES
    return _Part(run.block[a:b], heads - a + HEADER_BYTES, lengths, run.path, run.index + i, run.offset + heads)


def _kept(part: _Part, i: int) -> _Part:
    """Records ``i:`` of ``part``, copied out of the block before it is reused."""
    a = int(part.starts[i]) - HEADER_BYTES
    return _Part(
        bytes(part.data[a:]),
        part.starts[i:] - a,
        part.lengths[i:],
        part.path,
        part.index + i,
        part.offsets[i:],
    )


def _decode_parts(parts: list[_Part], rows: int, plan: _Plan) -> _Decoded:
    """The first ``rows`` records of ``parts``, decoded at once."""
    data = b"".join([*(p.data for p in parts), _PAD])
    base = np.cumsum([0] + [len(p.data) for p in parts])
    starts = np.concatenate([p.starts + base[k] for k, p in enumerate(parts)])[:rows]
    ends = starts + np.concatenate([p.lengths for p in parts])[:rows]
    first_row = np.cumsum([0] + [len(p.starts) for p in parts]).tolist()

    def locate(r: int) -> Location:
        k = bisect.bisect_right(first_row, r) - 1
        part, i = parts[k], r - first_row[k]
        return {"path": part.path, "index": part.index + i, "offset": int(part.offsets[i])}

    return _decode(data, starts, ends, plan, locate)


def _batches(decoded: _Decoded, rows: int, batch_size: int) -> Iterator[dict[str, Column]]:
    """Cut ``rows`` decoded records into batches; raise where the first bad record's batch starts."""
    for a in range(0, rows, batch_size):
        b = min(a + batch_size, rows)
        if b > decoded.good and decoded.error is not None:
            raise decoded.error
        yield decoded.rows(a, b)


def read_batches(
    sources: Sources,
    features: Spec,
    batch_size: int = 1024,
    *,
    compression: str | None = "auto",
    verify: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[dict[str, Column]]:
    """Yield :func:`parse_examples` of ``batch_size`` consecutive records at a time.

    What ``TFRecordDataset(files).batch(batch_size).map(tf.io.parse_example)``
    gives, without TensorFlow: records run on across files (a batch may span
    two), the last batch may be shorter.  ``sources`` and the keyword options
    are those of :func:`~tfrecord_numpy.reader.read_records`.  A parse error
    carries the record's file, its index in that file and its byte offset.
    A framing error (bad CRC, truncation) is raised where the batch holding
    the damaged record would be, as TensorFlow does.  Each read block (up to
    8 MiB of records) is decoded at once and cut into batches, so arrays of
    one batch may be views of a larger one.
    """
    plan = _plan(features)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    return _read_batches(sources, plan, batch_size, compression, verify, storage_options)


def _read_batches(
    sources: Sources,
    plan: _Plan,
    batch_size: int,
    compression: str | None,
    verify: bool,
    storage_options: dict[str, Any] | None,
) -> Iterator[dict[str, Column]]:
    # Complete batches are decoded as soon as a run completes them, so a framing
    # error raised by the next run finds only an incomplete batch pending: it
    # is dropped, as TensorFlow drops the batch holding a damaged record.
    pending: list[_Part] = []  # records of the batch not complete yet (copies)
    have = 0
    for run in _runs(sources, compression=compression, verify=verify, storage_options=storage_options):
        pending.append(_part(run, 0, len(run.heads)))
        have += len(run.heads)
        full = have - have % batch_size
        if full:
            decoded = _decode_parts(pending, full, plan)
            left = have - full
            pending = [_kept(pending[-1], len(pending[-1].starts) - left)] if left else []
            have = left
            yield from _batches(decoded, full, batch_size)
        else:
            pending[-1] = _kept(pending[-1], 0)  # the block is about to be reused
    if have:
        yield from _batches(_decode_parts(pending, have, plan), have, batch_size)
