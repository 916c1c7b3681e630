"""The two sides of an A/B run: a git revision or a checkout path, each made runnable.

A side's server must run *its own* code. The code is laid out as the design card's
folders (``server/``, ``bench/``, ...) that the installed package maps to
``akidb.server``, ``akidb.bench``, ...; so each side gets a small staging folder with
that layout as symlinks into its checkout, put first on ``PYTHONPATH`` of the side's
processes (``PYTHONSAFEPATH`` keeps the working directory off ``sys.path``, where a
checkout's own ``akidb/`` would shadow the staging). Both sides run in this venv: when
their declared dependencies differ, the side says so.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

PACKAGES = ("server", "harness", "bench", "chaos", "datagen", "fixtures", "bulk", "testkube")
ACCEPT_TRAILER = "Perf-Regression-Accepted"


class SideError(ValueError):
    """A revision or path that cannot be run (bad usage: exit 2)."""


def _git(repo: Path, *args: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SideError(proc.stderr.strip() or f"git {' '.join(args)} failed")
    return proc.stdout.strip()


def is_checkout(path: Path) -> bool:
    return (path / "akidb" / "__init__.py").is_file() and (path / "server").is_dir()


def repo_root(start: Path = Path(".")) -> Path:
    try:
        return Path(_git(start, "rev-parse", "--show-toplevel"))
    except (SideError, FileNotFoundError):
        raise SideError(f"{start.resolve()} is not inside a git repository, so revisions "
                        "cannot be resolved (give checkout paths instead)") from None


@dataclass
class Side:
    label: str                       # "baseline" or "candidate"
    spec: str                        # what the user gave
    root: Path                       # the checkout whose code runs
    commit: str | None = None        # resolved revision, when there is one
    worktree: bool = False           # root is a worktree we made (removed at close)
    dirty: bool = False              # a checkout path with uncommitted changes
    stage: Path = field(default=Path())
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        where = f"{self.commit[:12]}" if self.commit else str(self.root)
        return f"{self.label} {self.spec} ({where}{' + uncommitted changes' * self.dirty})"

    def dependencies(self) -> list[str]:
        try:
            project = tomllib.loads((self.root / "pyproject.toml").read_text())["project"]
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return []
        return sorted(project.get("dependencies", []))

    def accepted_regression(self) -> str | None:
        """The ``Perf-Regression-Accepted:`` trailer of the side's commit, if any."""
        if not self.commit:
            return None
        value = _git(self.root, "log", "-1", "--format=%(trailers:key="
                     f"{ACCEPT_TRAILER},valueonly,separator=%x20)", self.commit)
        return value.strip() or None


def _stage(side: Side, workdir: Path) -> None:
    stage = workdir / f"{side.label}-stage"
    pkg = stage / "akidb"
    pkg.mkdir(parents=True)
    for item in (side.root / "akidb").iterdir():
        if item.suffix == ".py":
            (pkg / item.name).symlink_to(item.resolve())
    for name in PACKAGES:
        if (side.root / name).is_dir():
            (pkg / name).symlink_to((side.root / name).resolve(), target_is_directory=True)
    side.stage = stage
    side.env.update({"PYTHONPATH": str(stage), "PYTHONSAFEPATH": "1"})


def resolve(label: str, spec: str, workdir: Path, repo: Path | None = None) -> Side:
    """A checkout path is used as it is (uncommitted changes included); anything else
    is a git revision of the repository around ``repo``, checked out as a worktree."""
    path = Path(spec).expanduser()
    if path.is_dir():
        if not is_checkout(path):
            raise SideError(f"{label} {spec!r} is a directory but not a checkout of this "
                            "project (no akidb/__init__.py and server/)")
        root = path.resolve()
        try:
            commit = _git(root, "rev-parse", "HEAD")
            dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
        except (SideError, FileNotFoundError):
            commit, dirty = None, False
        side = Side(label, spec, root, commit, dirty=dirty)
    else:
        top = repo_root(repo or Path("."))
        try:
            commit = _git(top, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
        except SideError:
            raise SideError(f"{label} {spec!r} is neither a checkout path nor a revision of "
                            f"the repository at {top}") from None
        tree = workdir / f"{label}-tree"
        _git(top, "worktree", "add", "--detach", "--quiet", str(tree), commit)
        side = Side(label, spec, tree, commit, worktree=True)
        if not is_checkout(tree):
            close(side)
            raise SideError(f"{label} {spec!r} ({commit[:12]}) predates the akidb layout "
                            "and cannot be run by this A/B")
    _stage(side, workdir)
    return side


def close(side: Side) -> None:
    if side.worktree and side.root.exists():
        subprocess.run(["git", "-C", str(side.root), "worktree", "remove", "--force",
                        str(side.root)], capture_output=True)
        shutil.rmtree(side.root, ignore_errors=True)


class Sides:
    """Both sides, made in a temporary folder and always removed again."""

    def __init__(self, baseline: str, candidate: str,
                 baseline_env: dict[str, str], candidate_env: dict[str, str]) -> None:
        self._specs = (baseline, candidate)
        self._envs = (baseline_env, candidate_env)
        self.sides: list[Side] = []
        self.workdir = Path(tempfile.mkdtemp(prefix="akidb-ab-"))

    def __enter__(self) -> tuple[Side, Side]:
        try:
            for label, spec, env in zip(("baseline", "candidate"), self._specs, self._envs,
                                        strict=True):
                side = resolve(label, spec, self.workdir)
                side.env.update(env)
                self.sides.append(side)
        except BaseException:
            self.__exit__()
            raise
        return self.sides[0], self.sides[1]

    def __exit__(self, *_exc: object) -> None:
        for side in self.sides:
            close(side)
        shutil.rmtree(self.workdir, ignore_errors=True)


def parse_env(items: tuple[str, ...] | list[str], flag: str) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SideError(f"{flag} takes K=V, got {item!r}")
        env[key] = value
    return env
