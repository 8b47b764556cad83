"""tfrecord_numpy beside TensorFlow in one process (skipped where TensorFlow is absent;
CI never installs it)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import A2O_SHARDS


def test_decode_with_both_in_one_process():
    tf = pytest.importorskip("tensorflow")
    import tfrecord_numpy as tfn
    from tfrecord_numpy._proto import example_pb2

    for ours, theirs in zip(tfn.read_records(A2O_SHARDS[0]), tf.data.TFRecordDataset(str(A2O_SHARDS[0]))):
        theirs = theirs.numpy()
        assert ours == theirs
        a = tf.train.Example.FromString(theirs)
        b = example_pb2.Example.FromString(ours)
        assert a.features.feature["filename"].bytes_list.value == b.features.feature["filename"].bytes_list.value
        t = tf.io.parse_tensor(a.features.feature["embedding"].bytes_list.value[0], out_type=tf.float32).numpy()
        n = tfn.parse_tensor(b.features.feature["embedding"].bytes_list.value[0])
        assert t.tobytes() == n.tobytes()
        assert tfn.serialize_tensor(n) == tf.io.serialize_tensor(t).numpy()
    assert tf.train.Example.DESCRIPTOR.full_name == "tensorflow.Example"
    assert example_pb2.Example.DESCRIPTOR.full_name == "tfrecord_numpy.Example"


def test_our_protos_register_under_our_package():
    from google.protobuf import descriptor_pool

    import tfrecord_numpy  # noqa: F401
    from tfrecord_numpy._proto import example_pb2, feature_pb2, tensor_pb2, tensor_shape_pb2, types_pb2

    for mod in (example_pb2, feature_pb2, tensor_pb2, tensor_shape_pb2, types_pb2):
        assert mod.DESCRIPTOR.package == "tfrecord_numpy"
        assert mod.DESCRIPTOR.name.startswith("tfrecord_numpy/_proto/")
    assert (
        descriptor_pool.Default().FindEnumTypeByName("tfrecord_numpy.DataType").values_by_name["DT_BFLOAT16"].number
        == 14
    )
    assert np.dtype("float32")  # numpy still usable beside them
