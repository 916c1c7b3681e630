"""Statistical regression gate: does CURRENT regress against BASELINE, beyond noise?

Each result file carries ``metrics``: ``{name: {"unit", "direction": "lower" | "higher",
"samples": [...]}}`` (what is better, and every raw sample). For each metric in
both files the gate bootstraps a confidence interval of the ratio of medians
(current ÷ baseline) and calls a regression only when the whole interval lies
beyond the metric's threshold in the bad direction — a real, large-enough
change, not noise. It checks every metric and reports all regressions at once.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_THRESHOLD = 0.05
DEFAULT_CONFIDENCE = 0.99
DIRECTIONS = ("lower", "higher")


class GateError(ValueError):
    """A result file the gate cannot use (missing, malformed, no samples)."""


@dataclass
class Verdict:
    metric: str
    unit: str
    direction: str
    baseline_median: float
    current_median: float
    ratio: float
    ci_low: float
    ci_high: float
    threshold: float
    regression: bool
    improvement: bool


def load_metrics(path: Path) -> dict[str, dict[str, Any]]:
    return load_result(path)["metrics"]


def load_result(path: Path) -> dict[str, Any]:
    """A whole result file whose ``metrics`` the gate can use (else GateError)."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise GateError(f"{path}: no such file") from None
    except ValueError as exc:
        raise GateError(f"{path}: not JSON ({exc})") from None
    metrics = data.get("metrics") if isinstance(data, dict) else None
    if not isinstance(metrics, dict) or not metrics:
        raise GateError(f"{path}: no 'metrics' object with samples (run a benchmark that "
                        "records them, e.g. python -m akidb.bench.server_baseline)")
    for name, m in metrics.items():
        if not isinstance(m, dict) or m.get("direction") not in DIRECTIONS:
            raise GateError(f"{path}: metric {name!r} needs direction 'lower' or 'higher'")
        samples = m.get("samples")
        if not isinstance(samples, list) or len(samples) < 2 or not all(
                isinstance(x, int | float) and np.isfinite(x) for x in samples):
            raise GateError(f"{path}: metric {name!r} needs at least 2 finite samples")
    return data


def parse_threshold(value: object) -> float:
    """``"10%"`` or ``0.1`` → 0.1; anything outside [0, 1) is refused."""
    try:
        if isinstance(value, str):
            text = value.strip()
            number = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            number = float(value)
        else:
            raise ValueError
    except ValueError:
        raise GateError(f"threshold must be a fraction like 0.1 or a percentage like "
                        f"'10%', got {value!r}") from None
    if not 0 <= number < 1:
        raise GateError(f"threshold must be in [0, 1) or [0%, 100%), got {value!r}")
    return number


@dataclass
class GateConfig:
    """Per-metric thresholds and defaults, kept beside the baselines they were
    calibrated for (``akidb bench calibrate --write-config``)."""

    thresholds: dict[str, float]
    default_threshold: float | None = None
    confidence: float | None = None


def load_config(path: Path) -> GateConfig:
    """Read a thresholds file::

        default = "5%"          # optional
        confidence = 0.99       # optional
        [thresholds]
        search_latency_ms = "25%"
    """
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise GateError(f"{path}: no such file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GateError(f"{path}: not TOML ({exc})") from None
    unknown = set(data) - {"default", "confidence", "thresholds"}
    if unknown:
        raise GateError(f"{path}: unknown keys {sorted(unknown)} (allowed: default, "
                        "confidence, [thresholds])")
    table = data.get("thresholds", {})
    if not isinstance(table, dict):
        raise GateError(f"{path}: [thresholds] must be a table of METRIC = threshold")
    try:
        thresholds = {str(name): parse_threshold(v) for name, v in table.items()}
        default = parse_threshold(data["default"]) if "default" in data else None
    except GateError as exc:
        raise GateError(f"{path}: {exc}") from None
    confidence = data.get("confidence")
    if confidence is not None and (isinstance(confidence, bool)
                                   or not isinstance(confidence, int | float)
                                   or not 0.5 <= confidence < 1):
        raise GateError(f"{path}: confidence must be a number in [0.5, 1), got {confidence!r}")
    return GateConfig(thresholds, default, None if confidence is None else float(confidence))


def write_config(path: Path, thresholds: dict[str, float], comment: str = "") -> None:
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += ["[thresholds]", *(f'{name} = "{t:.0%}"' for name, t in sorted(thresholds.items()))]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n")


def _bootstrap_ratio(base: np.ndarray, cur: np.ndarray, n_boot: int, confidence: float,
                     rng: np.random.Generator) -> tuple[float, float]:
    b = np.median(rng.choice(base, size=(n_boot, len(base))), axis=1)
    c = np.median(rng.choice(cur, size=(n_boot, len(cur))), axis=1)
    # 0 -> 0 is no change (an availability of 0 during a kill, in both runs)
    ratios = np.where((b == 0) & (c == 0), 1.0, c / np.where(b == 0, np.finfo(float).tiny, b))
    alpha = (1 - confidence) / 2
    return float(np.quantile(ratios, alpha)), float(np.quantile(ratios, 1 - alpha))


def _ratio(base: float, cur: float) -> float:
    if base == 0:
        return 1.0 if cur == 0 else float("inf")
    return cur / base


def compare(baseline: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]],
            thresholds: dict[str, float] | None = None,
            default_threshold: float = DEFAULT_THRESHOLD, confidence: float = 0.99,
            n_boot: int = 2000, seed: int = 0) -> list[Verdict]:
    thresholds = thresholds or {}
    unknown = set(thresholds) - set(baseline) - set(current)
    if unknown:
        raise GateError(f"thresholds name unknown metrics: {sorted(unknown)}")
    rng = np.random.default_rng(seed)
    verdicts = []
    for name in sorted(set(baseline) & set(current)):
        b_m, c_m = baseline[name], current[name]
        if b_m["direction"] != c_m["direction"]:
            raise GateError(f"metric {name!r} changed direction between the two files")
        base = np.asarray(b_m["samples"], dtype=float)
        cur = np.asarray(c_m["samples"], dtype=float)
        low, high = _bootstrap_ratio(base, cur, n_boot, confidence, rng)
        t = thresholds.get(name, default_threshold)
        worse_if_lower = b_m["direction"] == "higher"
        regression = high < 1 - t if worse_if_lower else low > 1 + t
        improvement = low > 1 + t if worse_if_lower else high < 1 - t
        verdicts.append(Verdict(name, str(b_m.get("unit", "")), b_m["direction"],
                                float(np.median(base)), float(np.median(cur)),
                                _ratio(float(np.median(base)), float(np.median(cur))),
                                low, high, t, regression, improvement))
    if not verdicts:
        raise GateError("the two files have no metric in common")
    return verdicts


def render(verdicts: list[Verdict]) -> str:
    lines = ["| metric | better | baseline | current | ratio | CI | threshold | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for v in verdicts:
        verdict = "REGRESSION" if v.regression else "improved" if v.improvement else "ok"
        lines.append(f"| {v.metric} | {v.direction} | {v.baseline_median:.4g} {v.unit} | "
                     f"{v.current_median:.4g} {v.unit} | {v.ratio:.3f} | "
                     f"[{v.ci_low:.3f}, {v.ci_high:.3f}] | ±{v.threshold:.0%} | {verdict} |")
    return "\n".join(lines) + "\n"


def to_json(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    return [asdict(v) for v in verdicts]


def suggest_thresholds(runs: list[dict[str, dict[str, Any]]], floor: float = DEFAULT_THRESHOLD
                       ) -> dict[str, dict[str, float]]:
    """From A/A runs of the same code: the largest drift of each metric's median between
    any two runs, and a threshold of twice that (at least ``floor``)."""
    if len(runs) < 2:
        raise GateError("calibration needs at least two runs of the same code")
    out: dict[str, dict[str, float]] = {}
    for name in sorted(set.intersection(*(set(r) for r in runs))):
        medians = [float(np.median(r[name]["samples"])) for r in runs]
        drift = max(abs(a / b - 1) for a in medians for b in medians if b)
        out[name] = {"max_drift": drift, "threshold": max(floor, 2 * drift)}
    return out
