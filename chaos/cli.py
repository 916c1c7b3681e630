"""``akidb chaos proxy``: serve the Toxiproxy HTTP API until interrupted."""

from __future__ import annotations

import signal
import sys
import threading
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
    click.echo(f"chaos proxy API on {server.url} (Toxiproxy HTTP API)", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


@chaos.command(name="run")
@click.argument("experiment")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for result.json and result.md (default reports/chaos/NAME).")
def run_experiment(experiment: str, out: Path | None) -> None:
    """Run EXPERIMENT (a TOML file or a built-in name); exit 1 if its hypothesis fails."""
    from akidb.chaos import experiment as experiments

    try:
        exp = experiments.load(experiment)
    except experiments.ExperimentError as exc:
        raise click.UsageError(str(exc)) from None
    out = out or Path("reports") / "chaos" / Path(experiment).stem
    click.echo(f"running {exp.name!r}: {len(exp.method)} actions over "
               f"{exp.workload.duration_s}s ...", err=True)
    result = experiments.run(exp, out)
    click.echo(experiments.render(result))
    click.echo(f"result: {out / 'result.json'}", err=True)
    sys.exit(0 if result["passed"] else 1)


@chaos.command(name="list")
def list_experiments() -> None:
    """The built-in experiments."""
    from akidb.chaos import experiment as experiments

    for path in sorted(experiments.BUILTIN_DIR.glob("*.toml")):
        exp = experiments.load(path)
        click.echo(f"{path.stem:<16} {exp.description}")
