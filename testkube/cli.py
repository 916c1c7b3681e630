"""``akidb testkube run|report|history|matrix``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from akidb.testkube.config import DEFAULT_CONFIG, ConfigError, expand, load
from akidb.testkube.pytest_plugin import parse_shard

DEFAULT_REPORTS = Path("reports")
HISTORY_FILE = "testkube.db"


def _suites(config: Path) -> dict:
    try:
        return load(config)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _history(reports: Path):  # noqa: ANN202
    from akidb.testkube.history import History

    return History(reports / HISTORY_FILE)


_config_option = click.option("--config", type=click.Path(dir_okay=False, path_type=Path),
                              default=DEFAULT_CONFIG, show_default=True)
_reports_option = click.option("--reports", type=click.Path(file_okay=False, path_type=Path),
                               default=DEFAULT_REPORTS, show_default=True,
                               help="History database and runs/ID/ artifacts go here.")


@click.group()
def testkube() -> None:
    """Run declared test suites, keep their history, report and shard them for CI."""


@testkube.command()
@click.option("--suite", required=True)
@click.option("--shard", help="i/n: run the i-th of n slices of the suite's tests.")
@click.option("--no-rerun", is_flag=True, help="Do not rerun failures to detect flaky tests.")
@_config_option
@_reports_option
def run(suite: str, shard: str | None, no_rerun: bool, config: Path, reports: Path) -> None:
    """Run SUITE; exit 0 green, 1 on a failure, regression or failed hypothesis."""
    from akidb.testkube import report
    from akidb.testkube.runner import run_suite

    suites = _suites(config)
    try:
        expand(suites, suite)
        if shard:
            parse_shard(shard)
    except (ConfigError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    record = run_suite(suites, suite, reports, shard=shard, rerun=not no_rerun)
    history = _history(reports)
    try:
        history.add(record)
        md_path, html_path = report.write(history, history.run(record["id"]),
                                          Path(record["artifacts"]))
    finally:
        history.close()
    counts = ", ".join(f"{v} {k}" for k, v in sorted(record["counts"].items()))
    for step in record["steps"]:
        note = f" ({step['message']})" if step.get("message") else ""
        click.echo(f"  {step['kind']:<6} {step['name']:<40} {step['outcome']}{note}")
    click.echo(f"run {record['id']}: {record['outcome']} ({counts or 'no results'}); "
               f"report {md_path} / {html_path}")
    sys.exit(record["exit_code"])


@testkube.command()
@click.argument("run_id", required=False)
@_reports_option
def report(run_id: str | None, reports: Path) -> None:
    """Write and print the report of RUN (default: the latest)."""
    from akidb.testkube import report as reporting

    history = _history(reports)
    try:
        rec = history.run(run_id)
        if rec is None:
            raise click.UsageError(f"no run {run_id!r} in {reports / HISTORY_FILE}"
                                   if run_id else f"no runs yet in {reports / HISTORY_FILE}")
        md_path, html_path = reporting.write(history, rec, reports / "runs" / rec["id"])
    finally:
        history.close()
    click.echo(md_path.read_text())
    click.echo(f"(also {html_path})", err=True)


@testkube.command()
@click.option("--suite")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@_reports_option
def history(suite: str | None, limit: int, reports: Path) -> None:
    """List recent runs."""
    import time

    h = _history(reports)
    try:
        runs = h.runs(suite, limit)
    finally:
        h.close()
    for r in runs:
        counts = ", ".join(f"{v} {k}" for k, v in sorted(r["counts"].items()))
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r["started_at"]))
        shard = f" shard {r['shard']}" if r["shard"] else ""
        click.echo(f"{r['id']}  {started}  {r['suite']}{shard}  {r['outcome']:<7} "
                   f"{r['finished_at'] - r['started_at']:7.1f}s  {counts}")


@testkube.command()
@click.option("--suite", required=True)
@click.option("--shards", default=2, show_default=True, type=click.IntRange(1, 256))
@_config_option
def matrix(suite: str, shards: int, config: Path) -> None:
    """Print a CI matrix (JSON) that splits SUITE into SHARDS jobs."""
    try:
        expand(_suites(config), suite)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(json.dumps({"include": [{"suite": suite, "shard": f"{i}/{shards}",
                                        "command": f"akidb testkube run --suite {suite} "
                                                   f"--shard {i}/{shards}"}
                                       for i in range(1, shards + 1)]}))
