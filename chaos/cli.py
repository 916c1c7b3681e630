"""``akidb chaos proxy``: serve the Toxiproxy HTTP API until interrupted."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import click

from akidb.chaos.api import ChaosProxy


@click.group()
def chaos() -> None:
    """Fault injection."""


@chaos.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8474, show_default=True, type=click.IntRange(0, 65535))
def proxy(host: str, port: int) -> None:
    """Run the Toxiproxy-compatible proxy (drive it with toxiproxy-python)."""
    try:
        server = ChaosProxy(host, port).start()
    except OSError as exc:
        raise click.UsageError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    # The handler only sets a flag: setting a threading.Event from a signal handler can
    # deadlock when the signal lands while the main thread holds the Event's lock.
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    click.echo(f"chaos proxy API on {server.url} (Toxiproxy HTTP API)", err=True)
    try:
        while not stopping:
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


@chaos.command(name="run")
@click.argument("experiment")
@click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=None,
              help="Seed of the workload and of a random fault schedule (default: the "
                   "experiment's, else random for a [nemesis] schedule, else 0).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("reports/chaos"), show_default=True,
              help="Directory for NAME.json, NAME.md, NAME.html and NAME.history.jsonl.")
@click.option("--shrink", "shrink_runs", type=click.IntRange(0, 1000), default=0,
              help="On failure, rerun up to N times with faults removed to find a smaller "
                   "schedule that still fails.")
def run_experiment(experiment: str, seed: int | None, out: Path, shrink_runs: int) -> None:
    """Run EXPERIMENT (a TOML file or a built-in name); exit 1 if its hypothesis fails."""
    from akidb.chaos import experiment as experiments
    from akidb.chaos import nemesis
    from akidb.chaos.objectstore import ObjectStoreUnavailable

    try:
        exp = experiments.load(experiment)
        if seed is None:
            seed = exp.seed if exp.seed is not None else (
                experiments.random_seed() if exp.nemesis else 0)
        faults = exp.schedule(seed)
        experiments.validate_schedule(exp, faults)
    except (experiments.ExperimentError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    name = Path(experiment).stem
    click.echo(f"running {exp.name!r} (seed {seed}): {len(faults)} faults "
               f"[{', '.join(f.label for f in faults)}] and {len(exp.method)} actions over "
               f"{exp.workload.duration_s}s ...", err=True)
    try:
        result = experiments.run(exp, out, seed=seed, name=name, source=experiment)
    except ObjectStoreUnavailable as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(experiments.render(result))
    if not result["passed"]:
        click.echo(f"FAILED with seed {seed}; replay: {result['replay']}", err=True)
        if shrink_runs and faults:
            def fails(candidate: list[nemesis.Fault]) -> bool:
                return not experiments.run(exp, None, seed=seed, name=name, faults=candidate,
                                           source=experiment)["passed"]

            smaller, runs = nemesis.shrink(faults, fails, shrink_runs,
                                           lambda m: click.echo(m, err=True))
            result["shrunk"] = {"runs": runs, "schedule": [f.to_dict() for f in smaller]}
            (out / f"{name}.json").write_text(json.dumps(result, indent=2))
            click.echo(f"smallest failing schedule after {runs} runs: "
                       f"{', '.join(f.label for f in smaller) or 'no faults at all'}; as "
                       "[[fault]] entries:\n" + nemesis.to_toml(smaller), err=True)
    click.echo(f"result: {out / (name + '.json')}", err=True)
    sys.exit(0 if result["passed"] else 1)


@chaos.command(name="list")
def list_experiments() -> None:
    """The built-in experiments."""
    from akidb.chaos import experiment as experiments

    for path in sorted(experiments.BUILTIN_DIR.glob("*.toml")):
        try:
            click.echo(f"{path.stem:<16} {experiments.load(path).description}")
        except experiments.ExperimentError as exc:
            click.echo(f"{path.stem:<16} (invalid: {exc})")
