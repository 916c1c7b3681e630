"""``akidb cluster up|status|down``: test clusters that outlive the command that started them.

``up`` writes ``DIR/cluster.json`` with each node's pid and kernel start time;
``down`` stops exactly those processes — a pid reused by another program since
then has a different start time and is left alone.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from akidb.harness.cluster import Cluster
from akidb.harness.node import NodeError
from akidb.harness.process import process_start_time, stop_group
from akidb.server.client import Client

CLUSTER_FILE = "cluster.json"
DEFAULT_DIR = Path("akidb-cluster")


def _read(directory: Path) -> dict[str, Any]:
    path = directory / CLUSTER_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise click.UsageError(f"no cluster at {directory} ({path} not found); "
                               "start one with `akidb cluster up`") from None
    except ValueError as exc:
        raise click.UsageError(f"{path} is not valid JSON: {exc}") from None


def _ours(node: dict[str, Any]) -> bool:
    """Is the process behind this record still the one ``up`` started?"""
    return process_start_time(node["pid"]) == node["start_time"]


@click.group()
def cluster() -> None:
    """Start, inspect and stop local test clusters."""


@cluster.command()
@click.option("--nodes", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--dir", "directory", default=DEFAULT_DIR, show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Where node data dirs, logs and cluster.json go.")
@click.option("--fsync", default="always", show_default=True,
              type=click.Choice(["always", "batch", "none"]))
@click.option("--timeout", default=30.0, show_default=True, help="Ready wait per node (s).")
@click.option("--embed-service", is_flag=True,
              help="Run the embedding model as its own process that every node calls.")
def up(nodes: int, directory: Path, fsync: str, timeout: float, embed_service: bool) -> None:
    """Start NODES servers on free loopback ports and print their endpoints and keys."""
    if (directory / CLUSTER_FILE).exists():
        existing = _read(directory)
        if any(_ours(n) for n in existing["nodes"]):
            raise click.UsageError(f"a cluster is already running from {directory}; "
                                   "`akidb cluster down` first")
    directory.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    c = Cluster(nodes=nodes, base_dir=directory.resolve(), fsync=fsync, ready_timeout=timeout,
                detach=True, embed_service=embed_service)
    try:
        c.start()
    except NodeError as exc:
        click.echo(f"akidb cluster up: {exc}", err=True)
        sys.exit(1)
    record = {"created_at": time.time(), "nodes": [
        {"name": n.name, "pid": n.pid, "start_time": n.start_time, "data_dir": str(n.data_dir),
         "rest_url": n.rest_url, "grpc_target": n.grpc_target, "log": str(n.log_path)}
        for n in c.nodes]}
    svc = c.embed_service
    if svc is not None:
        record["embed_service"] = {"name": svc.name, "pid": svc.pid,
                                   "start_time": svc.start_time, "grpc_target": svc.grpc_target,
                                   "log": str(svc.log_path)}
    tmp = directory / (CLUSTER_FILE + ".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, directory / CLUSTER_FILE)
    click.echo(f"cluster of {nodes} ready in {time.perf_counter() - started:.2f}s "
               f"({directory / CLUSTER_FILE})")
    for n in c.nodes:
        click.echo(f"{n.name}  {n.rest_url}  pid {n.pid}  api key {n.admin_key}")
    if svc is not None:
        click.echo(f"{svc.name}  {svc.target}  pid {svc.pid}  (embedding service)")


@cluster.command()
@click.option("--dir", "directory", default=DEFAULT_DIR, show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
def status(directory: Path) -> None:
    """Show each node's process and readiness; exit 1 if any node is down."""
    record = _read(directory)
    healthy = True
    for n in record["nodes"]:
        if not _ours(n):
            state = "stopped"
        else:
            client = Client(n["rest_url"], timeout=2.0)
            try:
                state = "ready" if client.is_ready() else "recovering"
            except Exception:
                state = "unreachable"
            finally:
                client.close()
        healthy &= state == "ready"
        click.echo(f"{n['name']}  {n['rest_url']}  pid {n['pid']}  {state}")
    svc = record.get("embed_service")
    if svc is not None:
        healthy &= _ours(svc)
        click.echo(f"{svc['name']}  grpc://{svc['grpc_target']}  pid {svc['pid']}  "
                   f"{'running' if _ours(svc) else 'stopped'}")
    sys.exit(0 if healthy else 1)


@cluster.command()
@click.option("--dir", "directory", default=DEFAULT_DIR, show_default=True,
              type=click.Path(file_okay=False, path_type=Path))
@click.option("--grace", default=10.0, show_default=True,
              help="Seconds between SIGTERM and SIGKILL.")
def down(directory: Path, grace: float) -> None:
    """Stop the cluster's processes (and only those); data dirs are kept. With nothing
    running it says so and succeeds, as ``docker compose down`` does."""
    if not (directory / CLUSTER_FILE).exists():
        click.echo(f"nothing running at {directory}")
        return
    record = _read(directory)
    processes = [*record["nodes"], *([record["embed_service"]]
                                     if "embed_service" in record else [])]
    targets = [n for n in processes if _ours(n)]
    for n in targets:
        stop_group(n["pid"], n["start_time"], grace)
        click.echo(f"{n['name']}  pid {n['pid']}  stopped")
    (directory / CLUSTER_FILE).unlink()
    click.echo(f"cluster at {directory} is down ({len(targets)} processes stopped)")
