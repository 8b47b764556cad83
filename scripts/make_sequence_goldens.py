"""Write tests/data/sequence/: SequenceExamples and what TensorFlow makes of them.

    /work/tfvenv/bin/python scripts/make_sequence_goldens.py [--out DIR]

Needs TensorFlow (2.21 was used); the tests never do.  Writes
``sequences.tfrecord`` (TF-built ``tf.train.SequenceExample`` records, then
``hand_*`` records built byte by byte, one wire-format quirk each) and
``sequences.golden.json``: per record, protobuf's view
(``tf.train.SequenceExample.FromString``) and, for every spec in ``SPECS``,
what ``tf.io.parse_single_sequence_example`` returns, the error it raises,
or the signal it dies of.  Every TensorFlow call runs in a worker process so
that a crash is recorded instead of ending the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "sequence"
SEED = 20240611

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
    return varint((field << 3) | wt)


def ld(field: int, payload: bytes) -> bytes:
    return tag(field, 2) + varint(len(payload)) + payload


def f32(*values: float) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def feat_float(*values: float) -> bytes:
    return ld(2, ld(1, f32(*values)) if values else b"")


def feat_int(*values: int) -> bytes:
    return ld(3, ld(1, b"".join(varint(v) for v in values)) if values else b"")


def feat_bytes(*values: bytes) -> bytes:
    return ld(1, b"".join(ld(1, v) for v in values))


def entry(key: str, value: bytes) -> bytes:
    return ld(1, ld(1, key.encode()) + ld(2, value))


def steps(*features: bytes) -> bytes:
    """A FeatureList's body."""
    return b"".join(ld(1, f) for f in features)


# --------------------------------------------------------------------------- TF-built records

# float32 bit patterns TF must carry through untouched
SPECIAL_BITS = [
    0x7FC00000,  # quiet NaN
    0x7FA00001,  # signalling NaN with payload
    0xFFC12345,  # negative NaN with payload
    0x80000000,  # -0.0
    0x00000001,  # smallest subnormal
    0x7F800000,  # inf
    0xFF800000,  # -inf
    0x7F7FFFFF,  # max float32
]
INT_EXTREMES = [-(2**63), 2**63 - 1, -1, 0, 1, 2**31, -(2**31) - 1]
ODD_BYTES = [b"", b"\x00", b"\xff\xfe", "h\u00e9llo".encode(), b"x" * 200, bytes(range(256))]


def build_tf_records(tf: Any) -> list[tuple[str, bytes]]:
    """SequenceExamples built with TF's own protobuf classes, serialized deterministically."""
    train = tf.train

    def fl_bits(bits: list[int]) -> Any:
        raw = struct.pack(f"<{len(bits)}I", *bits)
        f = train.Feature()
        f.float_list.SetInParent()
        f.float_list.CopyFrom(train.FloatList.FromString(ld(1, raw) if bits else b""))
        return f

    def fl(values: list[float]) -> Any:
        return fl_bits(list(struct.unpack(f"<{len(values)}I", f32(*values))))

    def il(values: list[int]) -> Any:
        f = train.Feature()
        f.int64_list.SetInParent()
        f.int64_list.value.extend(values)
        return f

    def bl(values: list[bytes]) -> Any:
        f = train.Feature()
        f.bytes_list.SetInParent()
        f.bytes_list.value.extend(values)
        return f

    rnd = random.Random(SEED)

    def rand_f(n: int) -> list[float]:
        return [round(rnd.uniform(-100, 100), 3) for _ in range(n)]

    def rand_i(n: int) -> list[int]:
        return [rnd.randint(-(10**6), 10**6) for _ in range(n)]

    def rand_b(n: int) -> list[bytes]:
        return [bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 6))) for _ in range(n)]

    def make(
        context: dict[str, Any] | None,
        lists: dict[str, list[Any]] | None,
    ) -> bytes:
        se = train.SequenceExample()
        for k, f in (context or {}).items():
            se.context.feature[k].CopyFrom(f)
        for k, feats in (lists or {}).items():
            target = se.feature_lists.feature_list[k]
            for f in feats:
                target.feature.add().CopyFrom(f)
        return se.SerializeToString(deterministic=True)

    def full_context(i: int) -> dict[str, Any]:
        return {
            "c_float": fl(rand_f(1)),
            "c_floats3": fl(rand_f(3)),
            "c_int": il([INT_EXTREMES[i % len(INT_EXTREMES)]]),
            "c_ints2": il(rand_i(2)),
            "c_bytes": bl([ODD_BYTES[i % len(ODD_BYTES)]]),
            "c_bytes_var": bl(rand_b(i % 4)),
            "c_empty_list": fl([]),
            "c_kindless": train.Feature(),
        }

    def full_lists(n: int, var_lengths: list[int] | None = None) -> dict[str, list[Any]]:
        lens = var_lengths if var_lengths is not None else [rnd.randint(0, 3) for _ in range(n)]
        return {
            "s_float2": [fl(rand_f(2)) for _ in range(n)],
            "s_int": [il(rand_i(1)) for _ in range(n)],
            "s_bytes": [bl([ODD_BYTES[(j + 1) % len(ODD_BYTES)]]) for j in range(n)],
            "s_float_var": [fl(rand_f(k)) for k in lens],
            "s_int_var": [il(rand_i(k)) for k in reversed(lens)],
            "s_bytes_var": [bl(rand_b(k)) for k in lens],
            "s_int2x2": [il(rand_i(4)) for _ in range(n)],
            "s_empty": [],
            "s_kindless": [train.Feature() for _ in range(min(n, 2))],
        }

    records = [
        ("full", make(full_context(0), full_lists(3, [2, 0, 3]))),
        ("one_step", make(full_context(1), full_lists(1, [1]))),
        ("long", make(full_context(2), full_lists(12))),
        ("zero_steps", make(full_context(3), {k: [] for k in full_lists(0)})),
        ("context_only", make(full_context(4), None)),
        ("lists_only", make(None, full_lists(2, [3, 1]))),
        ("empty", make(None, None)),
    ]
    ctx = full_context(5)
    lists = full_lists(2, [1, 2])
    for k in ("c_floats3", "c_bytes", "c_int"):
        del ctx[k]
    for k in ("s_float2", "s_bytes_var", "s_empty"):
        del lists[k]
    records.append(("some_missing", make(ctx, lists)))
    zero = full_lists(3, [0, 0, 0])
    zero["s_kindless"] = [train.Feature() for _ in range(3)]
    records.append(("zero_value_steps", make(full_context(6), zero)))
    special_ctx = full_context(0)
    special_ctx["c_float"] = fl_bits([SPECIAL_BITS[1]])
    special_ctx["c_floats3"] = fl_bits(SPECIAL_BITS[:3])
    special_ctx["c_ints2"] = il(INT_EXTREMES[:2])
    special = full_lists(4, [8, 0, 7, 2])
    special["s_float2"] = [fl_bits(SPECIAL_BITS[j : j + 2]) for j in range(0, 8, 2)]
    special["s_float_var"] = [fl_bits(SPECIAL_BITS), fl_bits([]), fl_bits(SPECIAL_BITS[1:]), fl_bits([0x80000000] * 2)]
    special["s_int_var"] = [il(INT_EXTREMES), il([]), il(INT_EXTREMES[::-1]), il([0, 0])]
    special["s_bytes_var"] = [bl(ODD_BYTES + [b"", b"z"]), bl([]), bl(ODD_BYTES[::-1] + [b"q"]), bl([b"", b""])]
    records.append(("specials", make(special_ctx, special)))
    wrong = full_lists(3, [1, 1, 1])
    wrong["s_float2"][1] = fl(rand_f(3))  # 7 values over 3 steps
    wrong["s_int"][2] = il([])
    wrong_ctx = full_context(7)
    wrong_ctx["c_floats3"] = fl(rand_f(2))
    records.append(("wrong_lengths", make(wrong_ctx, wrong)))
    return records


# --------------------------------------------------------------------------- hand-built records


def build_hand_records(full: bytes) -> list[tuple[str, bytes]]:
    """One quirk each; names say what is odd about them."""
    ctx1 = entry("c_int", feat_int(1)) + entry("c_float", feat_float(1.5))
    lists1 = entry("s_int", steps(feat_int(5), feat_int(6)))
    ok_lists = entry("s_float2", steps(feat_float(1.0, 2.0)))
    return [
        ("hand_truncated", full[:-5]),
        ("hand_garbage", b"\xff\xff\xff\xff"),
        (
            "hand_unknown_top_level_fields",
            ld(1, ctx1) + tag(3, 0) + varint(7) + ld(4, b"xyz") + tag(5, 5) + b"\x01\x02\x03\x04" + ld(2, lists1),
        ),
        ("hand_two_context_fields", ld(1, ctx1) + ld(2, lists1) + ld(1, entry("c_int", feat_int(2)))),
        ("hand_duplicate_list_key", ld(2, lists1 + entry("s_int", steps(feat_int(7))))),
        ("hand_value_before_key", ld(2, ld(1, ld(2, steps(feat_int(5))) + ld(1, b"s_int")) + ok_lists)),
        ("hand_unknown_field_in_context_map", ld(1, ctx1 + tag(2, 0) + varint(1)) + ld(2, lists1)),
        ("hand_entry_key_only", ld(2, ld(1, ld(1, b"s_int")) + ok_lists)),
        (
            "hand_unpacked",
            ld(1, entry("c_float", ld(2, tag(1, 5) + f32(2.5) + tag(1, 5) + f32(-1.0))))
            + ld(
                2,
                entry("s_float2", steps(ld(2, tag(1, 5) + f32(1.0) + tag(1, 5) + f32(2.0))))
                + entry("s_int", steps(ld(3, tag(1, 0) + varint(9)), ld(3, tag(1, 0) + varint(2**64 - 3)))),
            ),
        ),
        (
            "hand_split_packed_step",
            ld(
                2,
                entry("s_float_var", steps(ld(2, ld(1, f32(1.0, 2.0)) + ld(1, f32(3.0))), feat_float(4.0)))
                + entry("s_int_var", steps(ld(3, ld(1, varint(1)) + ld(1, varint(2))), feat_int(3))),
            ),
        ),
        (
            "hand_trailing_after_list",
            ld(2, entry("s_int", ld(1, feat_int(5) + b"\x0a\x00") + ld(1, feat_int(6)))),
        ),
        (
            "hand_unknown_field_in_feature_list",
            ld(2, entry("s_int", ld(1, feat_int(1)) + tag(2, 0) + varint(1) + ld(1, feat_int(2)))),
        ),
        ("hand_one_byte_step", ld(2, entry("s_int", ld(1, feat_int(1)) + ld(1, b"\x00")))),
        ("hand_odd_packed_float_step", ld(2, entry("s_float_var", steps(ld(2, ld(1, b"\x00\x00\x80\x3f\x01\x02")))))),
        (
            "hand_bytes_overrun_step",
            ld(2, entry("s_bytes_var", steps(feat_bytes(b"a"), b"\x0a\x03\x0a\x05a"))),
        ),
        ("hand_bytes_overrun_context", ld(1, entry("c_bytes_var", b"\x0a\x03\x0a\x05a"))),
        ("hand_context_two_kinds", ld(1, entry("c_int", feat_int(1) + feat_float(1.0)))),
        ("hand_context_length_past_end", b"\x0a" + varint(len(ctx1) + 10) + ctx1),
    ]


# --------------------------------------------------------------------------- specs


def V(dtype: str) -> dict[str, Any]:
    return {"type": "VarLenFeature", "dtype": dtype}


def F(shape: list[int], dtype: str, default: Any = None) -> dict[str, Any]:
    return {"type": "FixedLenFeature", "shape": shape, "dtype": dtype, "default_value": default}


def S(shape: list[int], dtype: str, allow_missing: bool = False) -> dict[str, Any]:
    return {"type": "FixedLenSequenceFeature", "shape": shape, "dtype": dtype, "allow_missing": allow_missing}


CTX = {
    "c_float": "float32",
    "c_floats3": "float32",
    "c_int": "int64",
    "c_ints2": "int64",
    "c_bytes": "string",
    "c_bytes_var": "string",
    "c_empty_list": "float32",
    "c_kindless": "int64",
}
SEQ = {
    "s_float2": "float32",
    "s_int": "int64",
    "s_bytes": "string",
    "s_float_var": "float32",
    "s_int_var": "int64",
    "s_bytes_var": "string",
    "s_int2x2": "int64",
    "s_empty": "float32",
    "s_kindless": "float32",
}

# label -> {"context": {...}, "sequence": {...}}; string defaults are hex
SPECS: dict[str, dict[str, dict[str, Any]]] = {
    "c_float/varlen": {"context": {"c_float": V("float32")}},
    "c_float/fixed_default": {"context": {"c_float": F([], "float32", -1.0)}},
    "c_float/as_int64": {"context": {"c_float": V("int64")}},
    "c_floats3/fixed": {"context": {"c_floats3": F([3], "float32")}},
    "c_floats3/fixed_3x1_default": {"context": {"c_floats3": F([3, 1], "float32", [0.0, 0.0, 0.0])}},
    "c_floats3/fixed_2": {"context": {"c_floats3": F([2], "float32")}},
    "c_floats3/fixed_4_default": {"context": {"c_floats3": F([4], "float32", [9.0] * 4)}},
    "c_int/fixed": {"context": {"c_int": F([], "int64")}},
    "c_int/fixed_default": {"context": {"c_int": F([], "int64", -7)}},
    "c_int/as_string": {"context": {"c_int": F([], "string", "3f")}},
    "c_ints2/varlen": {"context": {"c_ints2": V("int64")}},
    "c_ints2/fixed_default": {"context": {"c_ints2": F([2], "int64", [-1, -1])}},
    "c_bytes/fixed_default": {"context": {"c_bytes": F([], "string", "6e6f6e65")}},
    "c_bytes/varlen": {"context": {"c_bytes": V("string")}},
    "c_bytes_var/varlen": {"context": {"c_bytes_var": V("string")}},
    "c_bytes_var/fixed_2_default": {"context": {"c_bytes_var": F([2], "string", ["3f", "3f"])}},
    "c_empty_list/varlen": {"context": {"c_empty_list": V("float32")}},
    "c_empty_list/fixed_0": {"context": {"c_empty_list": F([0], "float32")}},
    "c_empty_list/fixed_default": {"context": {"c_empty_list": F([], "float32", 0.5)}},
    "c_kindless/varlen": {"context": {"c_kindless": V("int64")}},
    "c_kindless/fixed": {"context": {"c_kindless": F([], "int64")}},
    "c_kindless/fixed_default": {"context": {"c_kindless": F([], "int64", 3)}},
    "c_missing/fixed": {"context": {"c_missing": F([2], "float32")}},
    "c_missing/fixed_0": {"context": {"c_missing": F([0], "int64")}},
    "c_missing/fixed_default": {"context": {"c_missing": F([2], "float32", [1.0, 2.0])}},
    "s_float2/fixed": {"sequence": {"s_float2": S([2], "float32")}},
    "s_float2/fixed_allow_missing": {"sequence": {"s_float2": S([2], "float32", True)}},
    "s_float2/fixed_2x1": {"sequence": {"s_float2": S([2, 1], "float32", True)}},
    "s_float2/fixed_1": {"sequence": {"s_float2": S([1], "float32", True)}},
    "s_float2/fixed_4": {"sequence": {"s_float2": S([4], "float32", True)}},
    "s_float2/as_int64": {"sequence": {"s_float2": S([2], "int64", True)}},
    "s_float2/varlen": {"sequence": {"s_float2": V("float32")}},
    "s_int/fixed": {"sequence": {"s_int": S([], "int64")}},
    "s_int/varlen": {"sequence": {"s_int": V("int64")}},
    "s_int/as_float_varlen": {"sequence": {"s_int": V("float32")}},
    "s_bytes/fixed": {"sequence": {"s_bytes": S([], "string", True)}},
    "s_bytes/varlen": {"sequence": {"s_bytes": V("string")}},
    "s_float_var/varlen": {"sequence": {"s_float_var": V("float32")}},
    "s_float_var/fixed_1": {"sequence": {"s_float_var": S([1], "float32", True)}},
    "s_int_var/varlen": {"sequence": {"s_int_var": V("int64")}},
    "s_int_var/as_string": {"sequence": {"s_int_var": V("string")}},
    "s_bytes_var/varlen": {"sequence": {"s_bytes_var": V("string")}},
    "s_bytes_var/fixed_1": {"sequence": {"s_bytes_var": S([1], "string", True)}},
    "s_int2x2/fixed": {"sequence": {"s_int2x2": S([2, 2], "int64", True)}},
    "s_int2x2/varlen": {"sequence": {"s_int2x2": V("int64")}},
    "s_empty/fixed": {"sequence": {"s_empty": S([3], "float32")}},
    "s_empty/varlen": {"sequence": {"s_empty": V("string")}},
    "s_kindless/varlen": {"sequence": {"s_kindless": V("float32")}},
    "s_kindless/fixed": {"sequence": {"s_kindless": S([], "float32", True)}},
    "s_missing/fixed": {"sequence": {"s_missing": S([3], "float32")}},
    "s_missing/fixed_allow_missing": {"sequence": {"s_missing": S([3], "float32", True)}},
    "s_missing/varlen": {"sequence": {"s_missing": V("int64")}},
    "all/varlen": {
        "context": {k: V(t) for k, t in CTX.items()},
        "sequence": {k: V(t) for k, t in SEQ.items()},
    },
    "all/fixed": {
        "context": {
            "c_float": F([], "float32", 0.0),
            "c_floats3": F([3], "float32", [0.0, 0.0, 0.0]),
            "c_int": F([], "int64", 0),
            "c_ints2": F([1, 2], "int64", [[0, 0]]),
            "c_bytes": F([], "string", ""),
            "c_empty_list": F([0], "float32"),
        },
        "sequence": {
            "s_float2": S([2], "float32", True),
            "s_int": S([], "int64", True),
            "s_bytes": S([], "string", True),
            "s_int2x2": S([2, 2], "int64", True),
            "s_empty": S([5], "float32", True),
            "s_missing": S([2, 3], "string", True),
        },
    },
    "all/fixed_required": {
        "context": {"c_float": F([], "float32"), "c_int": F([], "int64"), "c_bytes": F([], "string")},
        "sequence": {"s_float2": S([2], "float32"), "s_int": S([], "int64"), "s_bytes": S([], "string")},
    },
    "same_name_in_both": {"context": {"s_int": V("int64")}, "sequence": {"s_int": V("int64")}},
}

# refused by TF's Python layer before any parsing (record "full")
PYTHON_ERRORS: dict[str, dict[str, Any]] = {
    "no_features": {"context": {}, "sequence": {}},
    "default_value_on_sequence_feature": {
        "sequence": {"s_float2": {**S([2], "float32", True), "default_value": 0.0}},
    },
    "fixed_len_feature_in_sequence": {"sequence": {"s_float2": F([2], "float32")}},
    "sequence_feature_in_context": {"context": {"c_float": S([], "float32")}},
}

# TF dies on these (record "full"): a shape holding no value is divided by
CRASH_SPECS = {
    "s_int/fixed_0": {"sequence": {"s_int": S([0], "int64", True)}},
}


# --------------------------------------------------------------------------- the TF side


def tf_spec(tf: Any, d: dict[str, Any]) -> Any:
    dtype = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}[d["dtype"]]
    if d["type"] == "VarLenFeature":
        return tf.io.VarLenFeature(dtype)
    default = d.get("default_value")
    if d["dtype"] == "string" and default is not None:
        default = bytes.fromhex(default) if isinstance(default, str) else [bytes.fromhex(x) for x in default]
    if d["type"] == "FixedLenFeature":
        return tf.io.FixedLenFeature(d["shape"], dtype, default)
    return tf.io.FixedLenSequenceFeature(d["shape"], dtype, d["allow_missing"], default)


def tensor_json(t: Any) -> dict[str, Any]:
    import numpy as np

    a = t.numpy()
    if isinstance(a, bytes):  # a 0-d string tensor gives plain bytes (np.asarray would drop trailing NULs)
        a = np.array([a], dtype=object).reshape(())
    a = np.asarray(a)  # 0-d numbers come as numpy scalars
    if a.dtype == np.float32:
        return {"dtype": "float32", "shape": list(a.shape), "bits": a.view(np.uint32).ravel().tolist()}
    if a.dtype == np.int64:
        return {"dtype": "int64", "shape": list(a.shape), "value": a.ravel().tolist()}
    return {"dtype": "string", "shape": list(a.shape), "value": [bytes(x).hex() for x in a.ravel().tolist()]}


def result_json(value: Any) -> dict[str, Any]:
    if hasattr(value, "indices"):
        return {
            "sparse": True,
            "indices": tensor_json(value.indices),
            "values": tensor_json(value.values),
            "dense_shape": value.dense_shape.numpy().tolist(),
        }
    return {"sparse": False, **tensor_json(value)}


def core_message(message: str) -> str:
    """TF's status message without the eager wrapper around it."""
    if message.startswith("{{function_node"):
        message = message.split("}} ", 1)[1]
    return message.split(" [Op:")[0]


def call_tf(tf: Any, data: bytes, spec: dict[str, Any]) -> dict[str, Any]:
    ctx = spec.get("context")
    seq = spec.get("sequence")
    try:
        c, s = tf.io.parse_single_sequence_example(
            data,
            None if ctx is None else {k: tf_spec(tf, d) for k, d in ctx.items()},
            None if seq is None else {k: tf_spec(tf, d) for k, d in seq.items()},
        )
    except Exception as exc:  # every TF error is data here
        return {"ok": False, "error": type(exc).__name__, "message": core_message(str(exc))}
    return {
        "ok": True,
        "context": {k: result_json(v) for k, v in c.items()},
        "sequence": {k: result_json(v) for k, v in s.items()},
    }


def worker() -> None:
    """Answer one JSON request per line: {"data": hex, "spec": {...}}."""
    import tensorflow as tf

    for line in sys.stdin:
        req = json.loads(line)
        print(json.dumps(call_tf(tf, bytes.fromhex(req["data"]), req["spec"])), flush=True)


class Worker:
    """A TF process that may die; a death is the call's result."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[str] | None = None

    def call(self, data: bytes, spec: dict[str, Any]) -> dict[str, Any]:
        if self.proc is None:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, "--worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # TF's start-up chatter
                text=True,
            )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"data": data.hex(), "spec": spec}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if line:
            result: dict[str, Any] = json.loads(line)
            return result
        code = self.proc.wait()
        self.proc = None
        if code >= 0:
            raise RuntimeError(f"the worker failed (exit status {code}): a bug in this script")
        return {"ok": False, "crash": signal.Signals(-code).name}

    def close(self) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            self.proc.wait()


def feature_json(tf: Any, f: Any) -> dict[str, Any]:
    import numpy as np

    kind = f.WhichOneof("kind")
    if kind == "bytes_list":
        return {"kind": kind, "value": [v.hex() for v in f.bytes_list.value]}
    if kind == "int64_list":
        return {"kind": kind, "value": list(f.int64_list.value)}
    if kind == "float_list":
        copy = tf.train.FloatList()
        copy.CopyFrom(f.float_list)
        copy.DiscardUnknownFields()
        raw = copy.SerializeToString()  # the stored float32s, bit for bit
        n = len(copy.value)
        return {"kind": kind, "bits": np.frombuffer(raw[len(raw) - 4 * n :], "<u4").tolist()}
    return {"kind": None}


def protobuf_view(tf: Any, data: bytes) -> dict[str, Any]:
    from google.protobuf.message import DecodeError

    try:
        se = tf.train.SequenceExample.FromString(data)
    except DecodeError as exc:
        return {"ok": False, "message": str(exc)}
    lists = se.feature_lists.feature_list
    return {  # sorted: upb's map order changes from run to run
        "ok": True,
        "context": {k: feature_json(tf, se.context.feature[k]) for k in sorted(se.context.feature)},
        "feature_lists": {k: [feature_json(tf, f) for f in lists[k].feature] for k in sorted(lists)},
    }


def main(out: Path) -> None:
    import google.protobuf
    import numpy as np
    import tensorflow as tf

    records = build_tf_records(tf)
    records += build_hand_records(dict(records)["full"])
    out.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(out / "sequences.tfrecord")) as w:
        for _, data in records:
            w.write(data)

    work = Worker()
    golden_records = []
    try:
        for index, (name, data) in enumerate(records):
            calls = {label: work.call(data, spec) for label, spec in SPECS.items()}
            golden_records.append(
                {
                    "index": index,
                    "name": name,
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "protobuf": protobuf_view(tf, data),
                    "calls": calls,
                }
            )
            print(name, sum(c["ok"] for c in calls.values()), "ok of", len(calls), file=sys.stderr)
        full = dict(records)["full"]
        python_errors = {label: call_tf(tf, full, spec) for label, spec in PYTHON_ERRORS.items()}
        crashes = {label: work.call(full, spec) for label, spec in CRASH_SPECS.items()}
    finally:
        work.close()

    golden = {
        "tensorflow_version": tf.__version__,
        "protobuf_version": google.protobuf.__version__,
        "numpy_version": np.__version__,
        "python_version": sys.version.split()[0],
        "file": "sequences.tfrecord",
        "notes": [
            "Made by scripts/make_sequence_goldens.py; records are in file order, 'sha256' of each payload.",
            "'calls'[label] = tf.io.parse_single_sequence_example(record, context, sequence) for SPECS[label]: "
            "ok=true with per-feature results, ok=false with the exception class and TF's status message "
            "(eager wrapper '{{function_node ...}}' and ' [Op:...]' removed), or 'crash' = the signal the process died of.",
            "Results: dense {dtype, shape, bits (float32 as uint32) | value (int64; bytes as hex)}, flattened in C order; "
            "sparse {indices, values, dense_shape} with indices/values as dense results.",
            "'protobuf' = tf.train.SequenceExample.FromString (upb): kind null = a Feature with no oneof member set.",
            "Spec string defaults are hex.  'python_errors' are refused by TF's Python layer (record 'full'); "
            "'crashes' kill TF (record 'full').",
        ],
        "specs": SPECS,
        "python_errors": {label: {"spec": PYTHON_ERRORS[label], **res} for label, res in python_errors.items()},
        "crashes": {label: {"spec": CRASH_SPECS[label], **res} for label, res in crashes.items()},
        "records": golden_records,
    }
    text = json.dumps(golden, indent=None, separators=(",", ":"), sort_keys=False)
    (out / "sequences.golden.json").write_text(text + "\n")
    for p in sorted(out.iterdir()):
        print(p, p.stat().st_size, file=sys.stderr)


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        worker()
    else:
        main(Path(sys.argv[2]) if sys.argv[1:2] == ["--out"] else OUT)
