"""Declarative chaos experiments: steady state → faults → verification → rollback.

An experiment is a TOML file (see ``chaos/experiments/``). The runner starts a
cluster (with fault proxies when the method uses network faults), runs
concurrent writers through the proxies, applies the method's actions on a
schedule, rolls back, checks the steady-state probes again and runs the
durability checker. The result is JSON + Markdown; ``passed`` is false when any
hypothesis fails.
"""

from __future__ import annotations

import json
import threading
import time
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from akidb.chaos.durability import History, check, run_writers
from akidb.harness import Cluster
from akidb.server.client import Client

BUILTIN_DIR = Path(__file__).resolve().parent / "experiments"
COLLECTION = "chaos/db/data"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ClusterSpec(_Model):
    nodes: int = Field(1, ge=1, le=8)
    fsync: Literal["always", "batch", "none"] = "always"
    embed_service: bool = False  # the embedding model as its own process


class WorkloadSpec(_Model):
    writers: int = Field(3, ge=1, le=64)
    batch: int = Field(20, ge=1, le=1000)
    dimension: int = Field(16, ge=1, le=4096)
    duration_s: float = Field(3.0, gt=0, le=3600)


class Action(_Model):
    action: Literal["kill", "terminate", "pause", "resume", "restart", "partition", "heal",
                    "toxic", "clear_toxics", "fault", "clear_faults", "kill_embedder",
                    "restart_embedder"]
    at_s: float = Field(ge=0)
    node: int = Field(0, ge=0)
    type: str | None = None  # toxic type
    stream: Literal["upstream", "downstream"] = "downstream"
    attributes: dict[str, int] = Field(default_factory=dict)


class Hypothesis(_Model):
    durability: bool = True
    min_availability: float = Field(0.0, ge=0, le=1)
    healthy_after: bool = True
    embedder_healthy_after: bool = False  # /v1/embed answers again after the rollback


class Experiment(_Model):
    name: str
    description: str = ""
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    workload: WorkloadSpec = Field(default_factory=WorkloadSpec)
    method: list[Action] = Field(default_factory=list)
    hypothesis: Hypothesis = Field(default_factory=Hypothesis)

    @property
    def failpoints(self) -> bool:
        return any(a.action in ("fault", "clear_faults") for a in self.method)

    @property
    def network(self) -> bool:
        return any(a.action in ("partition", "heal", "toxic", "clear_toxics")
                   for a in self.method)


class ExperimentError(ValueError):
    """The experiment file is missing or invalid (a usage error, exit 2)."""


def load(source: str | Path) -> Experiment:
    """A file path, or the name of a built-in experiment (``kill9-ingest``)."""
    path = Path(source)
    if not path.exists() and (BUILTIN_DIR / f"{source}.toml").exists():
        path = BUILTIN_DIR / f"{source}.toml"
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        names = ", ".join(sorted(p.stem for p in BUILTIN_DIR.glob("*.toml")))
        raise ExperimentError(f"no experiment {source!r} (a file, or one of: {names})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ExperimentError(f"{path}: invalid TOML: {exc}") from None
    try:
        exp = Experiment.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ExperimentError(f"{path}: {problems}") from None
    for action in exp.method:
        if action.node >= exp.cluster.nodes:
            raise ExperimentError(f"{path}: action {action.action} names node {action.node} but "
                                  f"the cluster has {exp.cluster.nodes}")
        if action.action == "toxic" and not action.type:
            raise ExperimentError(f"{path}: a toxic action needs a type")
        if action.action == "fault" and not action.attributes:
            raise ExperimentError(f"{path}: a fault action needs attributes, e.g. "
                                  "{ authz_delay_ms = 200 } or { disk_full = 1 }")
        if action.action.endswith("_embedder") and not exp.cluster.embed_service:
            raise ExperimentError(f"{path}: {action.action} needs [cluster] embed_service = "
                                  "true")
    return exp


def _apply(action: Action, cluster: Cluster) -> None:
    node = cluster.nodes[action.node]
    if action.action == "kill":
        node.kill()
    elif action.action == "terminate":
        node.stop()
    elif action.action == "pause":
        node.pause()
    elif action.action == "resume":
        node.resume()
    elif action.action == "restart":
        if not node.is_running():
            node.start()
    elif action.action == "partition":
        node.proxy.disable()
    elif action.action == "heal":
        node.proxy.enable()
    elif action.action == "toxic":
        node.proxy.add_toxic(type=action.type, stream=action.stream,
                             name=f"{action.type}_{action.stream}",
                             attributes=action.attributes)
    elif action.action == "clear_toxics":
        for name in node.proxy.toxics():
            node.proxy.destroy_toxic(name)
    elif action.action in ("fault", "clear_faults"):
        with node.admin_client(retries=0, timeout=5) as admin:
            values = action.attributes if action.action == "fault" else dict.fromkeys(
                admin.request("GET", "/v1/admin/faults")["faults"], 0)
            admin.set_faults(**values)
    elif action.action == "kill_embedder":
        cluster.embed_service.kill()  # type: ignore[union-attr]
    elif action.action == "restart_embedder":
        if not cluster.embed_service.is_running():  # type: ignore[union-attr]
            cluster.embed_service.start()  # type: ignore[union-attr]


def _embedder_recovers(admin: Client, within_s: float = 20.0) -> bool:
    """The breaker's half-open probe closes it once the service is back."""
    from akidb.server.errors import AkiError

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            admin.embed(["steady-state probe"])
            return True
        except AkiError:
            time.sleep(0.3)
    return False


def run(exp: Experiment, out_dir: Path | None = None) -> dict[str, Any]:
    log: list[dict[str, Any]] = []
    env = {"AKIDB_FAULT_INJECTION": "1"} if exp.failpoints else None
    with Cluster(nodes=exp.cluster.nodes, fsync=exp.cluster.fsync, fault_proxy=exp.network,
                 env=env, embed_service=exp.cluster.embed_service,
                 embed_backend="numpy") as cluster:
        node0 = cluster.nodes[0]
        with node0.admin_client() as admin:
            admin.create_collection(COLLECTION, dimension=exp.workload.dimension, metric="l2",
                                    create_parents=True)
            steady_before = admin.is_ready()
        url = node0.proxy_url if exp.network else node0.rest_url
        history = History()
        stop = threading.Event()
        started = time.monotonic()
        threads = run_writers(lambda: Client(url, node0.admin_key, timeout=2, retries=0),
                              COLLECTION, exp.workload.dimension, exp.workload.writers,
                              exp.workload.batch, stop, history)
        for action in sorted(exp.method, key=lambda a: a.at_s):
            delay = started + action.at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            _apply(action, cluster)
            log.append({"at_s": round(time.monotonic() - started, 3), **action.model_dump()})
        remaining = started + exp.workload.duration_s - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        stop.set()
        for t in threads:
            t.join(30)
        # Rollback: every node running and reachable, proxies healed, faults off.
        for node in cluster.nodes:
            node.resume()
            if not node.is_running():
                node.start()
            if exp.failpoints:
                _apply(Action(action="clear_faults", at_s=0, node=cluster.nodes.index(node)),
                       cluster)
        if cluster.embed_service is not None and not cluster.embed_service.is_running():
            cluster.embed_service.start()
        if exp.network:
            cluster.toxiproxy_endpoint.toxiproxy().reset()
        with node0.admin_client() as admin:
            healthy_after = admin.is_ready()
            durability = check(admin, COLLECTION, history)
            embedder_after = _embedder_recovers(admin) if \
                exp.hypothesis.embedder_healthy_after else True
    h = exp.hypothesis
    checks = {
        "steady_state_before": steady_before,
        "healthy_after": healthy_after or not h.healthy_after,
        "durability": durability.ok or not h.durability,
        "availability": durability.availability >= h.min_availability,
        "embedder_healthy_after": embedder_after,
    }
    result = {"experiment": exp.name, "description": exp.description,
              "passed": all(checks.values()), "checks": checks,
              "durability": durability.to_dict(), "actions": log,
              "operations": len(history.ops)}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "result.json").write_text(json.dumps(result, indent=2))
        (out_dir / "result.md").write_text(render(result))
    return result


def render(result: dict[str, Any]) -> str:
    d = result["durability"]
    lines = [f"# Chaos experiment: {result['experiment']} — "
             f"{'PASSED' if result['passed'] else 'FAILED'}", "", result["description"], "",
             "| check | result |", "|---|---|"]
    lines += [f"| {k} | {'ok' if v else 'FAILED'} |" for k, v in result["checks"].items()]
    lines += ["", f"operations {result['operations']}: acknowledged docs {d['acknowledged']}, "
              f"indeterminate {d['indeterminate']}, failed {d['failed']}; lost {len(d['lost'])},"
              f" corrupted {len(d['corrupted'])}, phantoms {d['phantoms']}; availability "
              f"{d['availability']:.1%}", "", "Actions:"]
    lines += [f"- t={a['at_s']}s {a['action']} node{a['node']}" for a in result["actions"]]
    return "\n".join(lines) + "\n"
