"""Mutation testing of the core modules (``make mutation``): run mutmut, write the report.

mutmut changes one small thing at a time in the modules listed under
``[tool.mutmut]`` in pyproject.toml (an operator, a constant, a condition) and runs
the tests that execute the changed function. A mutant the tests do not notice
"survives". ``reports/mutation/equivalent.toml`` names the survivors that cannot be
told apart from the original by any test (the change means the same thing), each
with the reason, and ``[[pattern]]`` kinds of change that are equivalent wherever
they occur (a chunk size of a checksum loop, ``count=`` of ``np.fromiter``); each
one matched is listed with its diff under "Equivalent mutants". Every other survivor
is a missing test. The report lists both, the
score per module and overall:

    score = killed / (mutants - equivalent)

timeouts count as killed (the mutant broke the code), mutants no test executes as
survivors.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPORT_DIR = Path("reports/mutation")
# mutmut names mutants after file paths, and the code runs as akidb.<package>: so it
# runs in a staging tree with the installed layout (akidb/server/..., tests/ beside it).
STAGE = Path(".mutation-stage")
PACKAGES = ("server", "harness", "bench", "chaos", "datagen", "fixtures", "bulk", "testkube")
EQUIVALENT_FILE = REPORT_DIR / "equivalent.toml"
_LINE = re.compile(r"^\s*(\S+__mutmut_\d+): (.+)$")
KILLED = {"killed", "timeout"}


@dataclass
class Mutant:
    name: str
    status: str

    @property
    def module(self) -> str:
        # "akidb.server.query.filters.x__parse_doc__mutmut_3" -> "server/query/filters.py"
        dotted = self.name.split(".x", 1)[0] if ".x" in self.name else self.name
        return dotted.removeprefix("akidb.").replace(".", "/") + ".py"


def stage(root: Path = Path("."), dest: Path = STAGE) -> Path:
    """Copy the sources into ``dest`` in the installed layout, with a pyproject whose
    [tool.mutmut] paths say ``akidb/...`` (mutants/ of an earlier run is kept)."""
    dest.mkdir(exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("akidb", "tests"):
        shutil.rmtree(dest / name, ignore_errors=True)
    shutil.copytree(root / "akidb", dest / "akidb", ignore=ignore)
    for pkg in PACKAGES:
        shutil.copytree(root / pkg, dest / "akidb" / pkg, ignore=ignore)
    shutil.copytree(root / "tests", dest / "tests", ignore=ignore)
    config = tomllib.loads((root / "pyproject.toml").read_text())
    mut = config["tool"]["mutmut"]
    lines = ["[tool.mutmut]", 'source_paths = ["akidb"]',
             "only_mutate = " + json.dumps(["akidb/" + p for p in mut["only_mutate"]]),
             'also_copy = ["tests", "pyproject.toml"]',
             "pytest_add_cli_args = " + json.dumps(mut.get("pytest_add_cli_args", [])),
             "pytest_add_cli_args_test_selection = "
             + json.dumps(mut["pytest_add_cli_args_test_selection"]),
             "", "[tool.pytest.ini_options]"]
    for key, value in config["tool"]["pytest"]["ini_options"].items():
        if key != "testpaths":
            lines.append(f"{key} = {json.dumps(value)}")
    (dest / "pyproject.toml").write_text("\n".join(lines) + "\n")
    return dest


def _mutmut(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "mutmut", *args], capture_output=True,
                          text=True, cwd=STAGE)
    if done.returncode != 0:
        raise SystemExit(f"mutmut {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def collect() -> list[Mutant]:
    """Every mutant with its status (``mutmut results --all``)."""
    out = _mutmut("results", "--all", "true")
    mutants = []
    for line in out.splitlines():
        match = _LINE.match(line)
        if match:
            mutants.append(Mutant(match.group(1), match.group(2).strip()))
    return mutants


@dataclass
class Pattern:
    """A kind of change that cannot alter behaviour wherever it occurs in ``module``
    (a glob): the removed line matches ``removed`` and the added one ``added``."""

    module: str
    removed: str
    added: str
    reason: str

    def matches(self, mutant: Mutant, diff: str) -> bool:
        old = [line[1:] for line in diff.splitlines() if line.startswith("-")]
        new = [line[1:] for line in diff.splitlines() if line.startswith("+")]
        return (fnmatch.fnmatch(mutant.module, self.module)
                and any(re.search(self.removed, line) for line in old)
                and any(re.search(self.added, line) for line in new))


def load_equivalent(path: Path = EQUIVALENT_FILE) -> tuple[dict[str, str], list[Pattern]]:
    """Named equivalent mutants (name = reason) and ``[[pattern]]`` kinds of change."""
    if not path.exists():
        return {}, []
    data = tomllib.loads(path.read_text())
    patterns = [Pattern(**p) for p in data.pop("pattern", [])]
    return {name: str(reason) for name, reason in data.items()}, patterns


def by_pattern(mutants: list[Mutant], diffs: dict[str, str], patterns: list[Pattern]
               ) -> dict[str, str]:
    """Survivors whose change is one of the equivalent kinds, with that kind's reason."""
    out = {}
    for m in mutants:
        diff = diffs.get(m.name)
        if diff is None:
            continue
        for pattern in patterns:
            if pattern.matches(m, diff):
                out[m.name] = f"{pattern.reason} (kind of change)"
                break
    return out


def score(mutants: list[Mutant], equivalent: dict[str, str]) -> dict[str, dict[str, float]]:
    """Per module and overall: mutants, killed, survivors, equivalent, score."""
    table: dict[str, Counter[str]] = defaultdict(Counter)
    for m in mutants:
        for key in (m.module, "all"):
            table[key]["mutants"] += 1
            if m.status in KILLED:
                table[key]["killed"] += 1
            elif m.name in equivalent:
                table[key]["equivalent"] += 1
            else:
                table[key]["survived"] += 1
    out = {}
    for key, c in table.items():
        relevant = c["mutants"] - c["equivalent"]
        out[key] = {"mutants": c["mutants"], "killed": c["killed"],
                    "survived": c["survived"], "equivalent": c["equivalent"],
                    "score": c["killed"] / relevant if relevant else 1.0}
    return out


def render(mutants: list[Mutant], equivalent: dict[str, str], diffs: dict[str, str]) -> str:
    scores = score(mutants, equivalent)
    lines = ["# Mutation testing of the core modules", "",
             "Written by `make mutation` (mutmut; see testkube/mutation.py). Score = killed / "
             "(mutants - equivalent).", "",
             "| module | mutants | killed | survived | equivalent | score |",
             "|---|---|---|---|---|---|"]
    for key in sorted(scores, key=lambda k: (k == "all", k)):
        s = scores[key]
        lines.append(f"| {'**all**' if key == 'all' else key} | {s['mutants']} | {s['killed']} | "
                     f"{s['survived']} | {s['equivalent']} | {s['score']:.1%} |")
    survivors = [m for m in mutants if m.status not in KILLED and m.name not in equivalent]
    lines += ["", f"## Survivors ({len(survivors)})", ""]
    for m in survivors:
        lines += [f"### {m.name} ({m.status})", "", "```diff", diffs.get(m.name, "").strip(),
                  "```", ""]
    lines += ["## Equivalent mutants", ""]
    for m in mutants:
        if m.name in equivalent and m.status not in KILLED:
            lines += [f"- `{m.name}`: {equivalent[m.name]}"]
            if diffs.get(m.name):
                lines += ["", "  ```diff", *(f"  {line}" for line in diffs[m.name].splitlines()),
                          "  ```"]
    return "\n".join(lines) + "\n"


def _diff(name: str) -> str:
    text = _mutmut("show", name)
    return "\n".join(line for line in text.splitlines()
                     if line.startswith(("+", "-")) and not line.startswith(("+++", "---")))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-run", action="store_true", help="report on the last mutmut run")
    ap.add_argument("--min-score", type=float, default=0.85,
                    help="exit 1 below this overall score (default 0.85)")
    ap.add_argument("--out", type=Path, default=REPORT_DIR,
                    help="directory for report.md and mutation.json (default reports/mutation)")
    args = ap.parse_args(argv)
    if not args.skip_run:
        print("mutmut run (a few minutes per thousand mutants) ...", flush=True)
        shutil.rmtree(STAGE / "mutants", ignore_errors=True)
        stage()
        done = subprocess.run([sys.executable, "-m", "mutmut", "run"], cwd=STAGE,
                              stdout=subprocess.DEVNULL)
        if done.returncode not in (0, 1):
            print(f"mutmut run exited {done.returncode}", file=sys.stderr)
            return 2
    mutants = collect()
    if not mutants:
        print("no mutants found: run without --skip-run first", file=sys.stderr)
        return 2
    equivalent, patterns = load_equivalent()
    shown = [m.name for m in mutants if m.status not in KILLED and m.name not in equivalent]
    with ThreadPoolExecutor(4) as pool:  # one `mutmut show` process per survivor
        diffs = dict(zip(shown, pool.map(_diff, shown), strict=True))
    equivalent.update(by_pattern([m for m in mutants if m.name in diffs], diffs, patterns))
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.out / "report.md"
    report.write_text(render(mutants, equivalent, diffs))
    scores = score(mutants, equivalent)
    overall = scores["all"]
    # The gate's metric format, so a nightly testkube suite can track the score.
    (args.out / "mutation.json").write_text(json.dumps({
        "benchmark": "mutation", "results": scores,
        "metrics": {"mutation_score": {"unit": "fraction", "direction": "higher",
                                       "samples": [overall["score"]]}}}, indent=1))
    print(f"mutation score {overall['score']:.1%}: {overall['killed']} killed, "
          f"{overall['survived']} survived, {overall['equivalent']} equivalent of "
          f"{overall['mutants']}; report {report}")
    return 0 if overall["score"] >= args.min_score else 1


if __name__ == "__main__":
    raise SystemExit(main())
