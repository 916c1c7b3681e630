"""Regenerate the protobuf / gRPC modules: ``python -m server.proto.generate``.

The generated files are committed; ``tests/test_grpc.py`` regenerates them into
a temporary directory and fails if they differ, so a stale copy cannot land.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROTO = "server/proto/akidb/v1/dataplane.proto"


def generate(out_dir: Path) -> None:
    from grpc_tools import protoc

    code = protoc.main(["grpc_tools.protoc", f"-I{ROOT}", f"--python_out={out_dir}",
                        f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}",
                        str(ROOT / PROTO)])
    if code != 0:
        raise RuntimeError(f"protoc failed with exit code {code}")


if __name__ == "__main__":
    generate(ROOT)
    sys.exit(0)
