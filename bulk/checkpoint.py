"""The import checkpoint: how far an import got, so ``--resume`` neither skips nor repeats.

It is rewritten atomically after every acknowledged batch. A batch that was
applied but not yet recorded (the importer died in between) is sent again on
resume; upserts are idempotent by id, so the final count is still exact.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from akidb.datagen.io import DatasetError

DEFAULT_DIR = Path(".akidb-import")


@dataclass
class Checkpoint:
    file: str
    size: int
    mtime_ns: int
    collection: str
    rows_done: int = 0  # data rows consumed: imported + rejected
    imported: int = 0
    rejected: int = 0

    @classmethod
    def fresh(cls, path: Path, collection: str) -> Checkpoint:
        st = path.stat()
        return cls(str(path.resolve()), st.st_size, st.st_mtime_ns, collection)

    def save(self, where: Path) -> None:
        where.parent.mkdir(parents=True, exist_ok=True)
        tmp = where.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self)))
        os.replace(tmp, where)


def default_path(path: Path, collection: str) -> Path:
    key = hashlib.sha256(f"{path.resolve()}\0{collection}".encode()).hexdigest()[:16]
    return DEFAULT_DIR / f"{path.stem}-{key}.json"


def load_for_resume(where: Path, path: Path, collection: str) -> Checkpoint:
    """The saved checkpoint, after checking it belongs to this file, unchanged."""
    try:
        saved = Checkpoint(**json.loads(where.read_text()))
    except FileNotFoundError:
        raise DatasetError(f"--resume: no checkpoint at {where}; run without --resume "
                           "first") from None
    except (ValueError, TypeError) as exc:
        raise DatasetError(f"--resume: checkpoint {where} is unreadable ({exc})") from None
    now = Checkpoint.fresh(path, collection)
    if (saved.file, saved.size, saved.mtime_ns, saved.collection) != (
            now.file, now.size, now.mtime_ns, now.collection):
        raise DatasetError(f"--resume: checkpoint {where} is for {saved.file} -> "
                           f"{saved.collection} as it was then (size {saved.size}); the file "
                           "or the target differs, so resuming could skip or repeat rows")
    return saved
