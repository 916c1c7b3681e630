"""``akidb bench``: the regression gate (the benchmarks themselves are ``python -m bench.*``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from bench import gate


def _parse_threshold(text: str) -> float:
    value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    if not 0 <= value < 1:
        raise ValueError(f"threshold must be in [0, 1) or [0%, 100%), got {text}")
    return value


@click.group()
def bench() -> None:
    """Benchmarks and the regression gate."""


@bench.command()
@click.argument("baseline", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("current", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--threshold", "thresholds", multiple=True, metavar="METRIC=PCT",
              help="Per-metric minimum effect, e.g. search_latency_ms=10%.")
@click.option("--default-threshold", default="5%", show_default=True)
@click.option("--confidence", default=0.99, show_default=True, type=click.FloatRange(0.5, 0.9999))
def compare(baseline: Path, current: Path, thresholds: tuple[str, ...], default_threshold: str,
            confidence: float) -> None:
    """Exit 1 if CURRENT regresses against BASELINE on any metric, beyond noise."""
    try:
        per_metric = {}
        for item in thresholds:
            name, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--threshold takes METRIC=PCT, got {item!r}")
            per_metric[name] = _parse_threshold(value)
        verdicts = gate.compare(gate.load_metrics(baseline), gate.load_metrics(current),
                                per_metric, _parse_threshold(default_threshold), confidence)
    except (gate.GateError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(gate.render(verdicts))
    regressions = [v.metric for v in verdicts if v.regression]
    if regressions:
        click.echo(f"regression in {len(regressions)} metric(s): {', '.join(regressions)}",
                   err=True)
        sys.exit(1)
    click.echo("no regression beyond noise", err=True)


@bench.command()
@click.option("--runs", default=3, show_default=True, type=click.IntRange(2, 20))
@click.option("--vectors", default=5000, show_default=True, type=click.IntRange(100))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports/calibration"), show_default=True)
def calibrate(runs: int, vectors: int, out: Path) -> None:
    """Measure this machine's noise: RUNS A/A runs of the server baseline, then the drift
    of each metric between runs and a threshold to use with ``compare``."""
    from bench import server_baseline

    results = []
    for i in range(runs):
        run_dir = out / f"run{i + 1}"
        click.echo(f"A/A run {i + 1}/{runs} ...", err=True)
        server_baseline.main(["--vectors", str(vectors), "--queries", "500",
                              "--recovery-vectors", "1000", "--wal-records", "10",
                              "--out", str(run_dir)])
        results.append(gate.load_metrics(run_dir / "server_baseline.json"))
    suggestion = gate.suggest_thresholds(results)
    for name, s in suggestion.items():
        click.echo(f"{name}: max drift between runs {s['max_drift']:.1%}; "
                   f"use --threshold {name}={s['threshold']:.0%}")
