"""fsync of files and directories: a rename or a new file is durable only once its
directory entry is, so both the file and its directory get synced."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
