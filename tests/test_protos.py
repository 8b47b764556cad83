"""Our generated protos: up to date, registered under our own package name."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_generated_files_match_protoc():
    if importlib.util.find_spec("grpc_tools") is None:
        pytest.skip("grpcio-tools not installed (pip install -e '.[dev]')")
    from importlib.metadata import version

    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import gen_protos
    finally:
        sys.path.pop(0)
    assert version("grpcio-tools") == gen_protos.GRPCIO_TOOLS_PIN, (
        f"regenerate with grpcio-tools=={gen_protos.GRPCIO_TOOLS_PIN}, the pinned generator"
    )
    fresh = gen_protos.generated_files()
    committed = {
        p.name: p.read_bytes()
        for p in gen_protos.OUT_DIR.iterdir()
        if p.suffix in (".py", ".pyi") and p.name != "__init__.py"
    }
    assert fresh == committed


def test_registered_under_our_package():
    from google.protobuf import descriptor_pool

    from tfrecord_numpy._proto import example_pb2, tensor_pb2

    assert example_pb2.Example.DESCRIPTOR.full_name == "tfrecord_numpy.Example"
    assert tensor_pb2.TensorProto.DESCRIPTOR.full_name == "tfrecord_numpy.TensorProto"
    pool = descriptor_pool.Default()
    assert pool.FindMessageTypeByName("tfrecord_numpy.Features")
    with pytest.raises(KeyError):
        pool.FindMessageTypeByName("tensorflow.Example")


def test_loads_beside_tensorflow_named_protos():
    """A pool that already holds tensorflow.Example (as TF's would) still takes ours."""
    code = r"""
from google.protobuf import descriptor_pb2, descriptor_pool
fd = descriptor_pb2.FileDescriptorProto(name="tensorflow/core/example/example.proto", package="tensorflow", syntax="proto3")
m = fd.message_type.add(name="Example")
m.field.add(name="features", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
            label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
descriptor_pool.Default().Add(fd)
from tfrecord_numpy._proto import example_pb2
import tfrecord_numpy
pool = descriptor_pool.Default()
assert pool.FindMessageTypeByName("tensorflow.Example").full_name == "tensorflow.Example"
assert example_pb2.Example.DESCRIPTOR.full_name == "tfrecord_numpy.Example"
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_import_pulls_no_tensorflow_and_is_fast():
    # "fast" checked by what is imported, not by a clock: none of the heavy optional stacks
    code = (
        "import sys; import tfrecord_numpy; "
        "heavy = {'tensorflow', 'gcsfs', 'dask', 'distributed', 'pandas'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
