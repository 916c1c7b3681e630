"""``testkube.toml``: named suites of pytest selections, bench scenarios and chaos experiments.

```toml
[suites.unit]
pytest = ["tests"]            # paths or node ids
markers = "not slow"          # -m expression
parallel = 2                  # pytest-xdist workers (0: in-process, serial)
timeout = 900                 # seconds for the whole step

[[suites.perf.bench]]
name = "baseline"
command = ["python", "-m", "akidb.bench.server_baseline"]  # python: this venv's
baseline = "reports/baselines/server_baseline-small.json"
thresholds = { search_latency_ms = "25%" }  # per metric; "25%" or 0.25, as in a
                                             # thresholds file (`bench compare --config`)

[suites.chaos]
chaos = ["kill9-ingest"]

[suites.ci]
include = ["unit", "chaos"]   # composed of other suites, run in this order
```
Bench and chaos steps always run serially (they measure time or break things).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_CONFIG = Path("testkube.toml")


class ConfigError(ValueError):
    """testkube.toml is missing or wrong; the message says where."""


@dataclass(frozen=True)
class BenchStep:
    name: str
    command: list[str]
    baseline: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ABStep:
    """``ab = {baseline = "HEAD^", scenarios = [...], rounds = 6}``: a same-run A/B of
    the checkout (``candidate``, default ".") against ``baseline``."""
    baseline: str
    candidate: str = "."
    scenarios: list[str] = field(default_factory=lambda: ["search", "ingest"])
    rounds: int = 6
    args: list[str] = field(default_factory=list)  # more `akidb bench ab` options


@dataclass(frozen=True)
class Suite:
    name: str
    pytest: list[str] = field(default_factory=list)
    markers: str | None = None
    parallel: int = 0
    timeout: float = 1800.0
    bench: list[BenchStep] = field(default_factory=list)
    chaos: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)
    ab: ABStep | None = None


_KEYS = {"pytest", "markers", "parallel", "timeout", "bench", "chaos", "include", "ab"}


def _ab(where: str, raw: Any) -> ABStep | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("baseline"), str) or not raw[
            "baseline"]:
        raise ConfigError(f"{where}.ab must be a table with baseline = \"REVISION or PATH\"")
    extra = set(raw) - {"baseline", "candidate", "scenarios", "rounds", "args"}
    if extra:
        raise ConfigError(f"{where}.ab: unknown key(s) {sorted(extra)}")
    candidate = raw.get("candidate", ".")
    scenarios = raw.get("scenarios", ["search", "ingest"])
    rounds = raw.get("rounds", 6)
    if not isinstance(candidate, str) or not candidate:
        raise ConfigError(f"{where}.ab.candidate must be a revision or a path")
    if not isinstance(scenarios, list) or not scenarios or not all(
            isinstance(x, str) and x for x in scenarios):
        raise ConfigError(f"{where}.ab.scenarios must be a non-empty list of names")
    if not isinstance(rounds, int) or isinstance(rounds, bool) or rounds < 2 or rounds % 2:
        raise ConfigError(f"{where}.ab.rounds must be an even integer >= 2, got {rounds!r}")
    args = raw.get("args", [])
    if not isinstance(args, list) or not all(isinstance(x, str) for x in args):
        raise ConfigError(f"{where}.ab.args must be a list of strings")
    return ABStep(raw["baseline"], candidate, list(scenarios), rounds, list(args))


def _thresholds(where: str, raw: Any) -> dict[str, float]:
    """Per-metric thresholds in the gate's one format (``"25%"`` or ``0.25``, as in a
    thresholds file), read by the gate's own parser."""
    from akidb.bench.gate import GateError, parse_threshold

    if not isinstance(raw, dict):
        raise ConfigError(f"{where}.thresholds must be a table of METRIC = \"25%\"")
    try:
        return {str(metric): parse_threshold(value) for metric, value in raw.items()}
    except GateError as exc:
        raise ConfigError(f"{where}.thresholds: {exc}") from None


def _suite(name: str, raw: Any) -> Suite:
    where = f"[suites.{name}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be a table")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_KEYS)}")

    def strings(key: str) -> list[str]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
            raise ConfigError(f"{where}.{key} must be a list of non-empty strings")
        return value

    parallel = raw.get("parallel", 0)
    if not isinstance(parallel, int) or isinstance(parallel, bool) or not 0 <= parallel <= 64:
        raise ConfigError(f"{where}.parallel must be an integer 0..64, got {parallel!r}")
    timeout = raw.get("timeout", 1800)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise ConfigError(f"{where}.timeout must be a positive number of seconds")
    markers = raw.get("markers")
    if markers is not None and not isinstance(markers, str):
        raise ConfigError(f"{where}.markers must be a string (a pytest -m expression)")
    benches = []
    for i, b in enumerate(raw.get("bench", [])):
        if not isinstance(b, dict) or not isinstance(b.get("name"), str) or not isinstance(
                b.get("command"), list) or not all(isinstance(x, str) for x in b["command"]):
            raise ConfigError(f"{where}.bench[{i}] needs name (string) and command (list of "
                              "strings)")
        extra = set(b) - {"name", "command", "baseline", "thresholds"}
        if extra:
            raise ConfigError(f"{where}.bench[{i}]: unknown key(s) {sorted(extra)}")
        benches.append(BenchStep(b["name"], list(b["command"]), b.get("baseline"),
                                 _thresholds(f"{where}.bench[{i}]", b.get("thresholds", {}))))
    return Suite(name, strings("pytest"), markers, parallel, float(timeout), benches,
                 strings("chaos"), strings("include"), _ab(where, raw.get("ab")))


def load(path: Path = DEFAULT_CONFIG) -> dict[str, Suite]:
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (testkube reads its suites from it)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    suites_raw = raw.get("suites")
    if not isinstance(suites_raw, dict) or not suites_raw:
        raise ConfigError(f"{path}: no [suites.NAME] tables")
    suites = {name: _suite(name, body) for name, body in suites_raw.items()}
    for s in suites.values():
        for inc in s.include:
            if inc not in suites:
                raise ConfigError(f"[suites.{s.name}].include names unknown suite {inc!r}")
    for name in suites:
        expand(suites, name)  # rejects cycles early
    return suites


def expand(suites: dict[str, Suite], name: str, _stack: tuple[str, ...] = ()) -> list[Suite]:
    """A suite and what it includes, flattened in order (composed suites run their parts)."""
    if name not in suites:
        raise ConfigError(f"no suite {name!r}; defined: {sorted(suites)}")
    if name in _stack:
        raise ConfigError(f"suite include cycle: {' -> '.join((*_stack, name))}")
    suite = suites[name]
    out = [suite] if (suite.pytest or suite.bench or suite.chaos or suite.ab) else []
    for inc in suite.include:
        out.extend(expand(suites, inc, (*_stack, name)))
    return out
