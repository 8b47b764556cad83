"""Regenerate src/tfrecord_numpy/_proto/*_pb2.py and *.pyi from protos/.

Run with the pinned development dependency (see pyproject's ``dev`` extra):

    pip install "grpcio-tools==1.62.3"
    python scripts/gen_protos.py            # write the files
    python scripts/gen_protos.py --check    # exit 1 if the committed files differ

The pin matters: protoc 25 (grpcio-tools 1.62) emits code without a runtime
version check, so the committed files load on every protobuf runtime from
4.25 to 7.x, the range pyproject declares.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "protos"
PROTO_DIR = PROTO_ROOT / "tfrecord_numpy" / "_proto"
OUT_ROOT = ROOT / "src"
OUT_DIR = OUT_ROOT / "tfrecord_numpy" / "_proto"
GRPCIO_TOOLS_PIN = "1.62.3"


def generate(out_root: Path) -> list[Path]:
    """Run protoc from grpcio-tools over every .proto; return the files written."""
    from grpc_tools import protoc  # development-only dependency

    protos = sorted(PROTO_DIR.glob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        *[str(p.relative_to(PROTO_ROOT)) for p in protos],
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    out = out_root / "tfrecord_numpy" / "_proto"
    return sorted(p for p in out.iterdir() if p.suffix in (".py", ".pyi"))


def generated_files() -> dict[str, bytes]:
    """What protoc generates now, by file name, without touching the tree."""
    with tempfile.TemporaryDirectory() as tmp:
        return {p.name: p.read_bytes() for p in generate(Path(tmp))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    fresh = generated_files()
    if args.check:
        stale = [n for n, data in fresh.items() if (OUT_DIR / n).read_bytes() != data]
        for name in stale:
            print(f"stale: {OUT_DIR / name}", file=sys.stderr)
        return 1 if stale else 0
    for name, data in fresh.items():
        (OUT_DIR / name).write_bytes(data)
        print(f"wrote {OUT_DIR / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
