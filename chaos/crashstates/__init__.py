"""Power-loss crash states, in the spirit of ALICE and LazyFS.

kill -9 keeps the page cache, so it cannot show a missing fsync. Here a server runs
with ``shim.c`` preloaded, which logs every sync (with a copy of the file as it was
synced) and every namespace change under its data directory. From that log and a
copy of the directory taken before the run, ``CrashLog.materialize(t, out)`` builds
what a power loss at time ``t`` could leave: each file holds its last completed
sync (nothing written after it), and a create, rename, unlink or mkdir counts only
once its directory has been synced after it. Recovering each such state and checking
every write acknowledged before ``t`` is the test.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SHIM_SOURCE = Path(__file__).with_name("shim.c")
# Files a recovery never needs (SQLite rebuilds -shm; the rest is per-run state).
_SKIP_SUFFIXES = ("-shm",)
_SKIP_NAMES = {"server.json", "server.log", "LOCK"}


class ShimUnavailable(RuntimeError):
    """No C compiler to build the shim with."""


def build_shim(out_dir: Path) -> Path:
    """Compile the LD_PRELOAD shim; needs a C compiler (cc/gcc)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise ShimUnavailable("no C compiler (cc or gcc) on PATH to build the fsync shim")
    out = out_dir / "crashlog_shim.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(out), str(SHIM_SOURCE),
                    "-ldl"], check=True, capture_output=True)
    return out


def shim_env(shim: Path, root: Path, log_dir: Path) -> dict[str, str]:
    log_dir.mkdir(parents=True, exist_ok=True)
    return {"LD_PRELOAD": str(shim), "CRASHLOG_ROOT": str(root.resolve()),
            "CRASHLOG_DIR": str(log_dir.resolve())}


@dataclass
class Event:
    kind: str
    t_ns: int
    path: str
    other: str = ""


@dataclass
class CrashLog:
    """A recorded run: the directory before it (``initial``) and the events of the run."""

    root: Path
    initial: Path
    events: list[Event] = field(default_factory=list)

    @classmethod
    def load(cls, root: Path, initial: Path, log_dir: Path) -> CrashLog:
        events = []
        path = log_dir / "events.log"
        if path.exists():
            for line in path.read_text().splitlines():
                kind, t, a, b = line.split("\t")
                events.append(Event(kind, int(t), a, b))
        events.sort(key=lambda e: e.t_ns)
        return cls(root.resolve(), initial, events)

    def sync_times(self) -> list[int]:
        """Moments after which the durable state changed: the candidate crash points."""
        return [e.t_ns for e in self.events if e.kind in ("sync", "dirsync")]

    def materialize(self, t_ns: int, out: Path) -> None:
        """Write into ``out`` the directory a power loss at ``t_ns`` could leave."""
        root = str(self.root)
        # File identities: initial files carry their initial contents.
        content: dict[int, Path | None] = {}
        live: dict[str, int] = {}
        durable: dict[str, int] = {}
        dirs = {root}
        next_id = 0
        for p in sorted(self.initial.rglob("*")):
            rel = str(p.relative_to(self.initial))
            full = f"{root}/{rel}"
            if p.is_dir():
                dirs.add(full)
            else:
                live[full] = durable[full] = next_id
                content[next_id] = p
                next_id += 1
        pending: dict[str, list[tuple[str, str, int]]] = {}

        def parent(path: str) -> str:
            return path.rsplit("/", 1)[0]

        for e in self.events:
            if e.t_ns > t_ns:
                break
            if e.kind == "create":
                live[e.path] = next_id
                content[next_id] = None
                pending.setdefault(parent(e.path), []).append(("link", e.path, next_id))
                next_id += 1
            elif e.kind == "rename":
                fid = live.pop(e.path, None)
                if fid is None:
                    continue
                live[e.other] = fid
                pending.setdefault(parent(e.path), []).append(("unlink", e.path, fid))
                pending.setdefault(parent(e.other), []).append(("link", e.other, fid))
            elif e.kind == "unlink":
                fid = live.pop(e.path, -1)
                pending.setdefault(parent(e.path), []).append(("unlink", e.path, fid))
            elif e.kind in ("mkdir", "rmdir"):
                pending.setdefault(parent(e.path), []).append((e.kind, e.path, -1))
            elif e.kind == "sync":
                fid = live.get(e.path)
                if fid is None:
                    fid = live[e.path] = next_id
                    next_id += 1
                content[fid] = Path(e.other)
            elif e.kind == "dirsync":
                for op, path, fid in pending.pop(e.path, []):
                    if op == "link":
                        durable[path] = fid
                    elif op == "unlink":
                        if durable.get(path) == fid or fid == -1:
                            durable.pop(path, None)
                    elif op == "mkdir":
                        dirs.add(path)
                    else:
                        dirs.discard(path)
        out.mkdir(parents=True, exist_ok=True)
        for d in sorted(dirs):
            if d != root and _reachable(d, dirs, root):
                (out / d[len(root) + 1:]).mkdir(parents=True, exist_ok=True)
        for path, fid in durable.items():
            name = path.rsplit("/", 1)[1]
            if (name in _SKIP_NAMES or name.endswith(_SKIP_SUFFIXES)
                    or not _reachable(parent(path), dirs, root)):
                continue
            target = out / path[len(root) + 1:]
            source = content.get(fid)
            if source is None:
                target.write_bytes(b"")  # created, never synced: its data is gone
            else:
                shutil.copyfile(source, target)


def _reachable(directory: str, dirs: set[str], root: str) -> bool:
    """Does every directory from the root down to ``directory`` exist durably?"""
    while directory != root:
        if directory not in dirs:
            return False
        directory = directory.rsplit("/", 1)[0]
    return True


def pick(times: list[int], count: int) -> list[int]:
    """``count`` crash points spread evenly over the run (all of them if fewer)."""
    unique = sorted(set(times))
    if len(unique) <= count:
        return unique
    step = (len(unique) - 1) / (count - 1)
    return [unique[round(i * step)] for i in range(count)]


def scratch(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
