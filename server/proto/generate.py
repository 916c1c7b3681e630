"""Regenerate the protobuf / gRPC modules: ``python -m akidb.server.proto.generate``.

The generated files are committed; ``tests/test_grpc.py`` regenerates them into
a temporary directory and fails if they differ, so a stale copy cannot land.
protoc derives the Python import path from the .proto file's path, so the file is
staged under ``akidb/server/proto/...`` (the installed module path) first.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = "akidb/v1/dataplane.proto"  # relative to this directory
MODULE_DIR = "akidb/server/proto"


def generate(out_dir: Path) -> Path:
    """Write the generated modules under ``out_dir``; returns the directory holding them."""
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory() as staging:
        staged = Path(staging) / MODULE_DIR / PROTO
        staged.parent.mkdir(parents=True)
        shutil.copyfile(HERE / PROTO, staged)
        code = protoc.main(["grpc_tools.protoc", f"-I{staging}", f"--python_out={out_dir}",
                            f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
                            str(staged)])
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")
    return out_dir / MODULE_DIR / Path(PROTO).parent


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        made = generate(Path(tmp))
        for name in ("dataplane_pb2.py", "dataplane_pb2.pyi", "dataplane_pb2_grpc.py"):
            shutil.copyfile(made / name, HERE / Path(PROTO).parent / name)
    sys.exit(0)
