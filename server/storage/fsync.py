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


def mkdirs_durable(path: Path) -> None:
    """``mkdir -p`` whose new entries survive a power loss: each directory created is
    followed by a sync of its parent (an entry is durable only once its parent is)."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        fsync_path(directory.parent)
