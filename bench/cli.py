"""``akidb bench``: the regression gate and run trends (the benchmarks themselves are
``python -m akidb.bench.*``)."""

from __future__ import annotations

import signal
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
@click.option("--fail-on-change", is_flag=True,
              help="Exit 1 when the newest run is where a metric moved for the worse "
                   "(the nightly mode).")
def trend(paths: tuple[Path, ...], metrics: tuple[str, ...], out: Path,
          fail_on_change: bool) -> None:
    """Plot each metric across stored runs (result JSON files, or folders searched for
    them, testkube's history included), oldest first: median with the P5-P95 band, the
    runs where a metric moved, with their commits, and a Markdown/HTML report."""
    from akidb.bench import trend as trend_mod

    try:
        runs = trend_mod.collect(paths)
        report, moved = trend_mod.render(runs, out, set(metrics) or None)
    except trend_mod.TrendError as exc:
        raise click.UsageError(str(exc)) from None
    for m in moved:
        click.echo(f"{m['metric']} moved {'worse' if m['worse'] else 'better'} "
                   f"x{m['ratio']:.3f} at {m['run']} (commit {m['git_sha'] or 'unknown'})")
    click.echo(f"report: {report}")
    newest_worse = [m["metric"] for m in moved if m["worse"] and m["latest"]]
    if fail_on_change and newest_worse:
        click.echo(f"the newest run moved for the worse: {', '.join(newest_worse)}", err=True)
        sys.exit(1)


@bench.command()
@click.argument("baseline")
@click.argument("candidate")
@click.option("--scenario", "scenarios", multiple=True,
              help="search, filtered, throughput, ingest, recall, memory (default: all).")
@click.option("--rounds", default=8, show_default=True, type=click.IntRange(2, 200),
              help="Rounds (even: AB|BA pairs), each measuring both sides, after a warm-up.")
@click.option("--baseline-env", multiple=True, metavar="K=V",
              help="Environment for the baseline's server processes.")
@click.option("--candidate-env", multiple=True, metavar="K=V",
              help="Environment for the candidate's server processes, e.g. "
                   "AKIDB_TEST_SEARCH_DELAY_MS=0.1 to measure the gate's power.")
@click.option("--vectors", default=5000, show_default=True, type=click.IntRange(100, 10**8))
@click.option("--dim", default=128, show_default=True, type=click.IntRange(2, 4096))
@click.option("--queries", default=200, show_default=True, type=click.IntRange(10, 10**6))
@click.option("--seed", default=0, show_default=True, type=int,
              help="Round order and bootstrap.")
@click.option("--threshold", "thresholds", multiple=True, metavar="METRIC=PCT",
              help="Per-metric smallest regression that counts, e.g. search_p50_ms=10% "
                   "(defaults: 5%; recall: twice its sampling error).")
@click.option("--ignore-accepted", is_flag=True,
              help="Fail on a regression even when the candidate's commit accepts it.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports/ab"), show_default=True)
def ab(baseline: str, candidate: str, scenarios: tuple[str, ...], rounds: int,
       baseline_env: tuple[str, ...], candidate_env: tuple[str, ...], vectors: int, dim: int,
       queries: int, seed: int, thresholds: tuple[str, ...], ignore_accepted: bool,
       out: Path) -> None:
    """Run BASELINE and CANDIDATE (git revisions or checkout paths) interleaved on this
    machine; exit 1 if the candidate regresses on any metric beyond noise and threshold."""
    from akidb.bench import ab as ab_mod
    from akidb.bench import ab_report
    from akidb.bench.ab_sides import ACCEPT_TRAILER, SideError, Sides, parse_env

    unknown = sorted(set(scenarios) - set(ab_mod.SCENARIOS))
    if unknown:
        raise click.UsageError(f"unknown scenario(s) {', '.join(unknown)}; known: "
                               f"{', '.join(ab_mod.SCENARIOS)}")
    if rounds % 2:
        raise click.UsageError(f"--rounds must be even (ABBA blocks), got {rounds}")
    per_metric: dict[str, float] = {}
    names = {m.name for m in ab_mod.METRICS}
    for item in thresholds:
        name, sep, value = item.partition("=")
        if not sep or name not in names:
            raise click.UsageError(f"--threshold takes METRIC=PCT with METRIC one of "
                                   f"{', '.join(sorted(names))}; got {item!r}")
        try:
            per_metric[name] = gate.parse_threshold(value)
        except gate.GateError as exc:
            raise click.UsageError(str(exc)) from None
    # SIGTERM (a CI runner cancelling the job) unwinds like Ctrl-C, so both sides'
    # servers are stopped and the worktrees removed.
    signal.signal(signal.SIGTERM, lambda *_a: sys.exit(143))
    try:
        envs = (parse_env(baseline_env, "--baseline-env"),
                parse_env(candidate_env, "--candidate-env"))
        sides = Sides(baseline, candidate, *envs)
        with sides as (base_side, cand_side):
            click.echo(f"A/B: {base_side.describe()} vs {cand_side.describe()}", err=True)
            if base_side.dependencies() != cand_side.dependencies():
                click.echo("note: the two sides declare different dependencies; both run "
                           "in this venv", err=True)
            result = ab_mod.run(base_side, cand_side, list(scenarios or ab_mod.SCENARIOS),
                                rounds, ab_mod.Workload(vectors, dim, queries, seed=seed),
                                seed, lambda m: click.echo(f"  .. {m}", err=True),
                                per_metric)
            result["accepted"] = cand_side.accepted_regression()
    except SideError as exc:
        raise click.UsageError(str(exc)) from None
    path = ab_report.write(result, out)
    click.echo("\n".join(ab_report.markdown(result)))
    click.echo(f"report: {path} (and ab.md, ab.html)", err=True)
    if result["regressions"]:
        if result["accepted"] and not ignore_accepted:
            click.echo(f"regression accepted by the candidate's {ACCEPT_TRAILER} trailer: "
                       f"{result['accepted']}", err=True)
            return
        sys.exit(1)


def _counts(option: str, text: str, high: int) -> list[int]:
    """``1,2,4`` for ``option``, each between 1 and ``high``, else a usage error."""
    import argparse

    from akidb.bench.common import count_list

    try:
        values = count_list(text)
    except argparse.ArgumentTypeError as exc:
        raise click.UsageError(f"{option}: {exc}") from None
    if max(values) > high:
        raise click.UsageError(f"{option}: each value must be at most {high}, got {text!r}")
    return values


@bench.command("list")
def list_() -> None:
    """Scenarios and drivers, with what each supports."""
    from akidb.bench import ab as ab_mod
    from akidb.bench import drivers
    from akidb.bench.scenarios import SCENARIOS

    click.echo("scenarios (akidb bench run SCENARIO):")
    for name, (_fn, what) in SCENARIOS.items():
        click.echo(f"  {name:<10} {what}")
    click.echo("A/B scenarios (akidb bench ab --scenario NAME): " + ", ".join(ab_mod.SCENARIOS))
    click.echo("drivers (--driver NAME):")
    for d in drivers.describe():
        state = ", ".join(d["capabilities"]) if d["available"] else f"not installed: {d['install']}"
        click.echo(f"  {d['name']:<10} {d['what']} [{state}]")


@bench.command()
@click.argument("scenario")
@click.option("--driver", "driver_names", multiple=True, default=("akidb",), show_default=True,
              help="Repeat for a side-by-side run (akidb bench list shows them).")
@click.option("--transport", "transports", multiple=True, default=("rest",), show_default=True,
              type=click.Choice(["rest", "grpc"]), help="For the akidb driver; repeat for both.")
@click.option("--chroma-mode", "chroma_modes", multiple=True, default=("embedded",),
              show_default=True, type=click.Choice(["embedded", "server"]),
              help="For the chroma driver; repeat for both.")
@click.option("--driver-python", metavar="PY",
              help="Run the peers' drivers (not akidb, hnswlib) in this interpreter, e.g. "
                   "a venv with chromadb installed.")
@click.option("--target", metavar="URL", help="An AkiDB server to use instead of starting one.")
@click.option("--qdrant-url", envvar="AKIDB_QDRANT_URL", metavar="URL",
              help="For the qdrant driver: a Qdrant server (http://HOST:6333); without it, "
                   "qdrant-client's local mode, which searches exactly.")
@click.option("--pgvector-url", envvar="AKIDB_PGVECTOR_URL", metavar="URL",
              help="For the pgvector driver: postgresql://USER@HOST:PORT/DB of a PostgreSQL "
                   "with the vector extension (or AKIDB_PGVECTOR_URL).")
@click.option("--api-key", envvar="AKIDB_API_KEY", help="For --target (or AKIDB_API_KEY).")
@click.option("--grpc-target", metavar="HOST:PORT", help="For --target with --transport grpc.")
@click.option("--dataset", default="clustered-5k-64-cosine", show_default=True,
              help="Fixture name, ann-benchmarks .hdf5, VectorDBBench folder or .npy.")
@click.option("--metric", type=click.Choice(["cosine", "l2", "ip"]),
              help="Where the dataset does not say (folders, .npy; default cosine).")
@click.option("--k", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--ef", type=click.IntRange(1, 10000), help="Search ef (default: the index's).")
@click.option("--m", default=16, show_default=True, type=click.IntRange(2, 128))
@click.option("--ef-construction", default=200, show_default=True, type=click.IntRange(1, 4096))
@click.option("--concurrency", default="1,2,4,8", show_default=True,
              help="For qps: comma-separated client counts.")
@click.option("--seconds", default=5.0, show_default=True, type=click.FloatRange(0.5, 3600),
              help="For qps: each concurrency's run.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0),
              help="For capacity: the generated vectors.")
@click.option("--insert-rate", default=1000.0, show_default=True,
              type=click.FloatRange(1, 1_000_000), help="For streaming: rows per second.")
@click.option("--max-vectors", default=200_000, show_default=True,
              type=click.IntRange(1, 1_000_000_000), help="For capacity: stop there at most.")
@click.option("--budget", "budget_s", default=60.0, show_default=True,
              type=click.FloatRange(1, 86_400), help="For capacity: or after this many s.")
@click.option("--ef-sweep", default="10,20,40,80,160,320", show_default=True,
              help="For sweep: the search ef values.")
@click.option("--probes", default=100, show_default=True, type=click.IntRange(1, 100_000),
              help="For freshness: new documents to look for.")
@click.option("--traces", default=0, show_default=True, type=click.IntRange(0, 1000),
              help="Trace the self-started akidb server and report its N slowest requests "
                   "with their steps (tracing adds its own cost to the figures).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports/run"), show_default=True)
def run(scenario: str, driver_names: tuple[str, ...], transports: tuple[str, ...],
        chroma_modes: tuple[str, ...], driver_python: str | None, target: str | None,
        qdrant_url: str | None, pgvector_url: str | None,
        api_key: str | None, grpc_target: str | None, dataset: str,
        metric: str | None, k: int, ef: int | None, m: int, ef_construction: int,
        concurrency: str, seconds: float, seed: int, insert_rate: float, max_vectors: int,
        budget_s: float, ef_sweep: str, probes: int, traces: int, out: Path) -> None:
    """Run SCENARIO on each --driver with the same data; one side-by-side table."""
    from akidb.bench import datasets, drivers
    from akidb.bench import run as run_mod
    from akidb.bench.scenarios import SCENARIOS, Options
    from akidb.datagen.io import DatasetError

    if scenario not in SCENARIOS:
        raise click.UsageError(f"unknown scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    unknown = [d for d in driver_names if d not in drivers.REGISTRY]
    if unknown:
        raise click.UsageError(f"unknown driver(s) {', '.join(unknown)}; available here: "
                               f"{', '.join(drivers.names())}")
    clients = _counts("--concurrency", concurrency, 1024)
    efs = _counts("--ef-sweep", ef_sweep, 10000)
    try:
        data = datasets.load(dataset, metric)
    except DatasetError as exc:
        raise click.UsageError(str(exc)) from None
    specs: list[tuple[str, dict[str, object]]] = []
    for name in driver_names:
        if name == "akidb":
            specs += [(name, {"target": target, "api_key": api_key,
                              "grpc_target": grpc_target, "transport": t,
                              "traces": traces > 0}) for t in transports]
        elif name == "chroma":
            specs += [(name, {"mode": m, "python": driver_python}) for m in chroma_modes]
        elif name == "pgvector":
            if not pgvector_url:
                raise click.UsageError("--driver pgvector needs --pgvector-url "
                                       "postgresql://USER@HOST:PORT/DB (or AKIDB_PGVECTOR_URL)")
            specs.append((name, {"url": pgvector_url, "python": driver_python}))
        elif name == "qdrant":
            specs.append((name, {"url": qdrant_url, "python": driver_python}))
        else:
            specs.append((name, {} if name == "hnswlib" else {"python": driver_python}))
    opts = Options(k=k, ef=ef, concurrency=clients, seconds=seconds,
                   params=drivers.IndexParams(data.metric, m, ef_construction, ef or 64),
                   seed=seed, insert_rate=insert_rate, max_vectors=max_vectors,
                   budget_s=budget_s, probes=probes, ef_sweep=efs)
    click.echo(f"{scenario} on {data.name}: {len(data.train)} x {data.dimension}, "
               f"{len(data.test)} queries", err=True)
    try:
        record = run_mod.run(scenario, specs, data, opts,
                             lambda msg: click.echo(f"  .. {msg}", err=True), traces=traces)
    except drivers.DriverError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(run_mod.report(record, out))
    click.echo(f"report: {out / (record['benchmark'] + '.md')} (and .html, .json)", err=True)
