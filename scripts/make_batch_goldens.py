#!/usr/bin/env python3
"""Write ``tests/data/batch/``: TFRecord files and what TensorFlow's batched parser makes of them.

Run once, with TensorFlow installed (the goldens are TensorFlow's own output)::

    python scripts/make_batch_goldens.py            # TensorFlow 2.21 (tensorflow-cpu)

Files (written by ``tf.io.TFRecordWriter``):

* ``clean.tfrecord``: 7 Examples built with ``tf.train.Example``: dense float,
  int64 and bytes features of 1, 3 and 4 values, variable-length lists of each
  kind (empty ones included), features missing from some records, float bit
  patterns that only survive a bitwise path (NaN payloads, -0.0, subnormals);
* ``odd.tfrecord``: 14 records built byte by byte, one wire-format quirk each,
  all valid for TensorFlow (unpacked lists, split packed chunks, duplicate
  keys, value before key, a kindless last duplicate of a VarLenFeature, bytes
  after a list, non-minimal varints, two concatenated Examples, an unknown
  top-level field, long lists, unrequested garbage, an empty record);
* ``many.tfrecord``: 200 records of one layout with a few deviations (longer
  varints, a missing feature, an odd record), so a reader that decodes runs of
  same-layout records at once is checked against TensorFlow too;
* ``errors.tfrecord``: 7 records like ``clean`` where record 3 has a float
  feature of the wrong length, record 5 an int64 feature holding floats and
  record 6 lacks a feature some specs require.

``batch.golden.json`` holds, per file, spec and batch size, the batches of
``tf.data.TFRecordDataset(file).batch(size).map(lambda s: tf.io.parse_example(s, spec))``
-- dense values as lists (float32 as uint32 bit patterns, bytes as hex),
sparse ones as indices/values/dense_shape -- or, where TensorFlow raises, the
batches before the error and the error: class, message and the record's index
in the file (the batch's start plus the ``Index:`` of TF's message).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import tensorflow as tf

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "batch"
BATCH_SIZES = (1, 2, 3, 4, 7, 10)


# --------------------------------------------------------------------------- wire helpers


def varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def tag(field: int, wt: int) -> bytes:
    return varint(field << 3 | wt)


def ld(field: int, payload: bytes, length: bytes | None = None) -> bytes:
    return tag(field, 2) + (varint(len(payload)) if length is None else length) + payload


def floats(*xs: float) -> bytes:
    """Feature{float_list{packed}}."""
    return ld(2, ld(1, struct.pack(f"<{len(xs)}f", *xs)))


def int64s(*xs: int) -> bytes:
    return ld(3, ld(1, b"".join(varint(x) for x in xs)))


def bytes_list(*xs: bytes) -> bytes:
    return ld(1, b"".join(ld(1, x) for x in xs))


def entry(key: bytes, feature: bytes) -> bytes:
    return ld(1, ld(1, key) + ld(2, feature))


def example(*entries: bytes) -> bytes:
    return ld(1, b"".join(entries))


def f32(bits: int) -> float:
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


# --------------------------------------------------------------------------- records


def tf_example(features: dict) -> bytes:
    ex = tf.train.Example()
    ex.features.SetInParent()
    for key, (kind, values) in features.items():
        feat = ex.features.feature[key]
        if kind == "f":
            feat.float_list.SetInParent()
            feat.float_list.value.extend(values)
        elif kind == "i":
            feat.int64_list.SetInParent()
            feat.int64_list.value.extend(values)
        else:
            feat.bytes_list.SetInParent()
            feat.bytes_list.value.extend(values)
    return ex.SerializeToString()


def clean_records() -> list[bytes]:
    nan_payload, neg_nan = 0x7FC00001, 0xFFFFFFFF
    specials = [f32(nan_payload), -0.0, f32(1), f32(0x807FFFFF), float("inf"), f32(neg_nan)]
    recs = []
    for r in range(7):
        feats: dict = {
            "f_vec": ("f", [r + 0.5, -r, specials[r % len(specials)]]),
            "f_mat": ("f", [specials[(r + k) % len(specials)] for k in range(4)]),
            "i_vec": ("i", [r, -(r + 1), 2**63 - 1 - r]),
            "b_mat": ("b", [b"", b"\x00" * r, bytes([r]) * 3, "é".encode() + b"\x00"]),
            "v_f": ("f", [r * 0.25 + k for k in range(r % 4)]),
            "v_i": ("i", [(-1) ** k * (r * 1000 + k) ** 2 for k in range((r * 3) % 5)]),
            "v_b": ("b", [b"x" * k + b"\x00" for k in range(r % 3)]),
        }
        if r != 2:
            feats["f_scalar"] = ("f", [specials[r % len(specials)]])
        if r != 4:
            feats["i_scalar"] = ("i", [[-(2**63), -1, 0, 127, 128, 300, 2**40][r]])
        if r != 6:
            feats["b_scalar"] = ("b", [[b"", b"a\x00", b"\xff" * 9, b"hello", b"\x00", b"z", b""][r]])
        if r == 3:
            del feats["v_f"], feats["v_i"], feats["v_b"]  # missing VarLen: an empty row
        recs.append(tf_example(feats))
    return recs


def odd_records() -> list[bytes]:
    canon = [
        entry(b"f", floats(1, 2, 3)),
        entry(b"i", int64s(5)),
        entry(b"b", bytes_list(b"x")),
        entry(b"vf", floats(0.5)),
        entry(b"vi", int64s(1, 2, 3)),
        entry(b"vb", bytes_list(b"a", b"")),
    ]
    unpacked_f = ld(2, b"".join(tag(1, 5) + struct.pack("<f", x) for x in (4.0, 5.0, 6.0)))
    unpacked_i = ld(3, b"".join(tag(1, 0) + varint(x) for x in (7, 300)))
    unpacked_scalar = ld(3, tag(1, 0) + varint(9))
    split_f = ld(2, ld(1, struct.pack("<3f", 1, 2, 3)) + ld(1, struct.pack("<f", 4)))
    split_i = ld(3, ld(1, varint(1)) + ld(1, varint(2)))
    value_first = ld(1, ld(2, int64s(11)) + ld(1, b"i"))
    long_len = b"\x81\x80\x00"  # 1, in three bytes
    return [
        example(*canon),
        example(entry(b"f", unpacked_f), entry(b"i", unpacked_scalar), entry(b"vi", unpacked_i), *canon[2:4]),
        example(entry(b"f", split_f), entry(b"vi", split_i), *canon[1:4]),
        example(*canon, entry(b"i", int64s(2)), entry(b"vf", floats(9, 8))),  # duplicates: the last wins
        example(canon[0], value_first, *canon[2:]),
        example(*canon[:3], entry(b"vf", floats(1.0)), entry(b"vf", b""), entry(b"vi", b"")),  # kindless last
        example(entry(b"f", floats(7, 8, 9) + tag(7, 0) + b"\x01"), *canon[1:]),  # bytes after the list
        example(ld(1, ld(1, b"i", long_len) + ld(2, int64s(12))), canon[0], canon[2]),
        example(*canon[:3]) + example(*canon[3:]),  # two Examples back to back
        tag(2, 0) + b"\x05" + example(*canon),  # an unknown top-level field first
        example(*canon[:3], entry(b"vf", floats(*range(300))), entry(b"vb", bytes_list(bytes(range(200)), b"q" * 130))),
        example(*canon, entry(b"zz", b"\xff\xff\xff")),  # an unrequested, unparseable feature
        example(canon[0]),  # only "f"
        b"",  # no Features at all
    ]


def many_records() -> list[bytes]:
    rng = np.random.default_rng(11)
    recs = []
    for r in range(200):
        label = int(rng.integers(0, 100))
        if r % 37 == 5:
            label = int(rng.integers(10_000, 10**9))  # a longer varint: another record length
        feats = {
            "features": ("f", rng.standard_normal(3).astype(np.float32).tolist()),
            "label": ("i", [label]),
            "filename": ("b", [b"site_%04d/%06d.flac" % (r % 7, r)]),
            "tags": ("i", list(range(r % 3))),
        }
        if r == 77:
            del feats["label"]  # the default
        rec = tf_example(feats)
        if r == 150:
            rec = example(entry(b"features", floats(1, 2, 3)), entry(b"label", int64s(1)))
            rec += example(entry(b"filename", bytes_list(b"split")))  # concatenated Examples
        recs.append(rec)
    return recs


def error_records() -> list[bytes]:
    recs = clean_records()
    recs[3] = tf_example({"f_vec": ("f", [1.0, 2.0]), "i_scalar": ("i", [3]), "f_scalar": ("f", [0.0])})
    recs[5] = tf_example({"f_vec": ("f", [1.0, 2.0, 3.0]), "i_scalar": ("f", [1.5]), "f_scalar": ("f", [0.0])})
    recs[6] = tf_example({"f_vec": ("f", [1.0, 2.0, 3.0]), "i_scalar": ("i", [1])})
    return recs


# --------------------------------------------------------------------------- specs

# {label: {feature: ["fixed", shape, dtype, default] | ["var", dtype]}}; string defaults are hex
SPECS: dict[str, dict[str, dict]] = {
    "clean": {
        "dense": {
            "f_scalar": ["fixed", [], "float32", -1.0],
            "f_vec": ["fixed", [3], "float32", None],
            "f_mat": ["fixed", [2, 2], "float32", None],
            "i_scalar": ["fixed", [], "int64", 7],
            "i_vec": ["fixed", [3], "int64", None],
            "b_scalar": ["fixed", [], "string", b"dflt".hex()],
            "b_mat": ["fixed", [2, 2], "string", None],
        },
        "varlen": {
            "v_f": ["var", "float32"],
            "v_i": ["var", "int64"],
            "v_b": ["var", "string"],
            "f_mat": ["var", "float32"],
            "b_mat": ["var", "string"],
        },
        "mixed": {
            "v_b": ["var", "string"],
            "i_vec": ["fixed", [3, 1], "int64", None],
            "absent": ["fixed", [2], "float32", [1.5, -2.5]],
            "v_absent": ["var", "int64"],
            "f_scalar": ["fixed", [1], "float32", [9.0]],
        },
    },
    "odd": {
        "dense": {
            "f": ["fixed", [3], "float32", [0.0, 0.0, 0.0]],
            "i": ["fixed", [], "int64", 0],
            "b": ["fixed", [], "string", b"".hex()],
        },
        "varlen": {
            "vf": ["var", "float32"],
            "vi": ["var", "int64"],
            "vb": ["var", "string"],
            "f": ["var", "float32"],
        },
    },
    "many": {
        "all": {
            "features": ["fixed", [3], "float32", None],
            "label": ["fixed", [], "int64", -1],
            "filename": ["fixed", [], "string", None],
            "tags": ["var", "int64"],
        },
    },
    "errors": {
        "dense": {  # record 3: f_vec has 2 values
            "f_vec": ["fixed", [3], "float32", None],
            "i_scalar": ["fixed", [], "int64", 0],
        },
        "type": {  # record 5: i_scalar holds floats
            "i_scalar": ["var", "int64"],
        },
        "required": {  # record 6: f_scalar missing, no default (record 2 of clean lacks it too: index 2)
            "f_scalar": ["fixed", [], "float32", None],
        },
    },
}


def tf_spec(desc: dict) -> dict:
    out = {}
    for name, d in desc.items():
        if d[0] == "var":
            out[name] = tf.io.VarLenFeature({"float32": tf.float32, "int64": tf.int64, "string": tf.string}[d[1]])
            continue
        _, shape, dtype, default = d
        tf_dtype = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}[dtype]
        if dtype == "string" and default is not None:
            default = bytes.fromhex(default)
        out[name] = tf.io.FixedLenFeature(shape, tf_dtype, default_value=default)
    return out


# --------------------------------------------------------------------------- goldens


def plain(arr: np.ndarray, dtype: str) -> dict:
    if dtype == "float32":
        return {"shape": list(arr.shape), "float32_bits": arr.astype(np.float32).view(np.uint32).ravel().tolist()}
    if dtype == "int64":
        return {"shape": list(arr.shape), "int64": arr.astype(np.int64).ravel().tolist()}
    return {"shape": list(arr.shape), "hex": [bytes(x).hex() for x in arr.ravel().tolist()]}


def batches_of(path: Path, spec_desc: dict, size: int) -> dict:
    spec = tf_spec(spec_desc)
    ds = tf.data.TFRecordDataset(str(path)).batch(size).map(lambda s: tf.io.parse_example(s, spec))
    out: list[dict] = []
    it = iter(ds)
    while True:
        try:
            batch = next(it)
        except StopIteration:
            return {"batches": out, "error": None}
        except tf.errors.OpError as exc:
            # the parser's own words, without the tf.data wrapping around them
            message = re.sub(r"^.*?Iterator::Root::\S+: ", "", exc.message.split("\n")[0])
            m = re.search(r"Index: (\d+)", message)
            where = len(out) * size + int(m.group(1)) if m else None
            if where is None:  # "is required but could not be found" names no index
                where = required_index(path, spec_desc, size, len(out))
            return {
                "batches": out,
                "error": {"class": type(exc).__name__, "message": message, "index": where},
            }
        got = {}
        for name, d in spec_desc.items():
            value = batch[name]
            dtype = d[1] if d[0] == "var" else d[2]
            if isinstance(value, tf.SparseTensor):
                got[name] = {
                    "indices": value.indices.numpy().tolist(),
                    "values": plain(value.values.numpy(), dtype),
                    "dense_shape": value.dense_shape.numpy().tolist(),
                }
            else:
                got[name] = plain(value.numpy(), dtype)
        out.append(got)


def required_index(path: Path, spec_desc: dict, size: int, batch_no: int) -> int:
    """The record of the failing batch that TF finds lacking (one record at a time)."""
    spec = tf_spec(spec_desc)
    records = [r.numpy() for r in tf.data.TFRecordDataset(str(path))]
    for i in range(batch_no * size, min(len(records), (batch_no + 1) * size)):
        try:
            tf.io.parse_example([records[i]], spec)
        except tf.errors.OpError:
            return i
    raise AssertionError("no failing record found")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    files = {"clean": clean_records(), "odd": odd_records(), "many": many_records(), "errors": error_records()}
    golden: dict = {
        "tensorflow_version": tf.__version__,
        "pipeline": "tf.data.TFRecordDataset(file).batch(size).map(lambda s: tf.io.parse_example(s, spec))",
        "notes": [
            "float32 values are uint32 bit patterns, bytes are hex; shapes are TF's.",
            "spec entries: ['fixed', shape, dtype, default] (string defaults hex) or ['var', dtype].",
            "error.index is the failing record's index in the file; error.message is TF's (batched wording).",
        ],
        "files": {},
    }
    for name, records in files.items():
        path = OUT / f"{name}.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as w:
            for rec in records:
                w.write(rec)
        sizes = (64, 200) if name == "many" else BATCH_SIZES
        golden["files"][name] = {
            "file": path.name,
            "records": len(records),
            "serialized_hex": [r.hex() for r in records] if name != "many" else None,
            "specs": SPECS[name],
            "results": {
                label: {str(size): batches_of(path, desc, size) for size in sizes}
                for label, desc in SPECS[name].items()
            },
        }
    text = json.dumps(golden, indent=None, separators=(",", ":"))
    (OUT / "batch.golden.json").write_text(text + "\n")
    print(f"wrote {OUT} ({len(text) / 1e3:.0f} kB of goldens)")


if __name__ == "__main__":
    main()
