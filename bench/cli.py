"""``akidb bench``: the regression gate and run trends (the benchmarks themselves are
``python -m akidb.bench.*``)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from akidb.bench import gate


def _first(*values: float | None) -> float:
    return next(v for v in values if v is not None)


@click.group()
def bench() -> None:
    """Benchmarks and the regression gate."""


@bench.command()
@click.argument("baseline", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("current", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Thresholds file (TOML: default, confidence, [thresholds] METRIC = PCT), "
                   "e.g. reports/baselines/thresholds.toml.")
@click.option("--threshold", "thresholds", multiple=True, metavar="METRIC=PCT",
              help="Per-metric minimum effect, e.g. search_latency_ms=10% (overrides --config).")
@click.option("--default-threshold",
              help="For metrics without their own (default: the config's, else 5%).")
@click.option("--confidence", type=click.FloatRange(0.5, 0.9999),
              help="Of the bootstrap interval (default: the config's, else 0.99).")
def compare(baseline: Path, current: Path, config_path: Path | None,
            thresholds: tuple[str, ...], default_threshold: str | None,
            confidence: float | None) -> None:
    """Exit 1 if CURRENT regresses against BASELINE on any metric, beyond noise."""
    try:
        config = gate.load_config(config_path) if config_path else gate.GateConfig({})
        per_metric = dict(config.thresholds)
        for item in thresholds:
            name, sep, value = item.partition("=")
            if not sep:
                raise gate.GateError(f"--threshold takes METRIC=PCT, got {item!r}")
            per_metric[name] = gate.parse_threshold(value)
        default = (gate.parse_threshold(default_threshold) if default_threshold
                   else _first(config.default_threshold, gate.DEFAULT_THRESHOLD))
        verdicts = gate.compare(gate.load_metrics(baseline), gate.load_metrics(current),
                                per_metric, default,
                                _first(confidence, config.confidence, gate.DEFAULT_CONFIDENCE))
    except gate.GateError as exc:
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
@click.option("--write-config", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the suggested thresholds as a file for compare --config.")
def calibrate(runs: int, vectors: int, out: Path, write_config: Path | None) -> None:
    """Measure this machine's noise: RUNS A/A runs of the server baseline, then the drift
    of each metric between runs and a threshold to use with ``compare``."""
    from akidb.bench import server_baseline

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
    if write_config:
        gate.write_config(write_config, {n: s["threshold"] for n, s in suggestion.items()},
                          f"From `akidb bench calibrate --runs {runs} --vectors {vectors}`:\n"
                          "twice the largest drift of each median between A/A runs.")
        click.echo(f"thresholds written to {write_config}", err=True)


@bench.command()
@click.argument("paths", nargs=-1, required=True,
                type=click.Path(exists=True, path_type=Path))
@click.option("--metric", "metrics", multiple=True, help="Only these metrics (default: all).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports/trend"), show_default=True)
def trend(paths: tuple[Path, ...], metrics: tuple[str, ...], out: Path) -> None:
    """Plot each metric across stored runs (result JSON files, or folders searched for
    them), oldest first: median with the P5-P95 band, and a Markdown/HTML report."""
    from akidb.bench import trend as trend_mod

    try:
        runs = trend_mod.collect(paths)
        report = trend_mod.render(runs, out, set(metrics) or None)
    except trend_mod.TrendError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"report: {report}")
