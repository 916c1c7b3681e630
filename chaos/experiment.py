"""Declarative chaos experiments: steady state → workload under faults → rollback →
read-back → the checker's verdict, with performance per phase.

An experiment is a TOML file (see ``chaos/experiments/``): ``[cluster]``,
``[workload]`` (a seeded mix of upserts, deletes, gets and searches; see
``chaos.workload``), faults as windows (``[[fault]]`` entries, and/or ``[nemesis]``
for a random schedule drawn from the seed), raw ``[[method]]`` actions, and
``[hypothesis]``. The runner records every operation, applies the schedule,
rolls everything back, reads every document back and checks the history against
a model of the collection (``chaos.checker``). ``passed`` is false when any
hypothesis fails; a failing run names its seed and the command that replays it.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from akidb.chaos import injectors, nemesis, objectstore, phases, workload
from akidb.chaos.checker import Checker
from akidb.chaos.history import History
from akidb.harness import Cluster
from akidb.harness.node import Node, NodeError
from akidb.server.client import Client
from akidb.server.errors import AkiError

BUILTIN_DIR = Path(__file__).resolve().parent / "experiments"
TENANT, COLLECTION = "chaos", "chaos/db/data"
FAILPOINT_KINDS = ("disk_full", "slow_authz")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ClusterSpec(_Model):
    nodes: int = Field(1, ge=1, le=8)
    fsync: Literal["always", "batch", "none"] = "always"
    embed_service: bool = False  # the embedding model as its own process
    # server settings as AKIDB_* variables, e.g. { AKIDB_AUTHZ_DEADLINE_MS = "100" }
    env: dict[str, str] = Field(default_factory=dict)
    # ship to an S3 API behind a fault proxy: AKIDB_CHAOS_S3_ENDPOINT (with the bucket
    # "akidb-chaos" and AWS_* credentials set), else an in-process moto server
    object_store: bool = False


class WorkloadSpec(_Model):
    clients: int = Field(3, ge=1, le=64, validation_alias=AliasChoices("clients", "writers"))
    batch: int = Field(20, ge=1, le=1000)
    dimension: int = Field(16, ge=1, le=4096)
    duration_s: float = Field(3.0, gt=0, le=3600)
    keys: int = Field(0, ge=0, le=1_000_000)
    mix: dict[Literal[workload.OPERATIONS], float] = Field(  # type: ignore[valid-type]
        default_factory=lambda: {"upsert": 1.0})
    rate: float = Field(0.0, ge=0, le=100_000)
    k: int = Field(10, ge=1, le=100)
    transport: Literal["rest", "grpc", "both"] = "rest"
    timeout_s: float = Field(2.0, gt=0, le=120)
    # clients holding a viewer key that keep trying to upsert: every one must be refused
    denied_clients: int = Field(0, ge=0, le=16)


class FaultSpec(_Model):
    kind: Literal[tuple(nemesis.KINDS)]  # type: ignore[valid-type]
    at_s: float = Field(ge=0)
    for_s: float = Field(gt=0)
    node: int = Field(0, ge=0)
    attributes: dict[str, int] = Field(default_factory=dict)


class NemesisSpec(_Model):
    kinds: list[Literal[tuple(nemesis.KINDS)]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(nemesis.DEFAULT_RANDOM_KINDS), min_length=1)
    count: int = Field(3, ge=1, le=100)
    min_s: float = Field(0.3, gt=0)
    max_s: float = Field(1.2, gt=0)


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
    valid: bool = Field(True, validation_alias=AliasChoices("valid", "durability"))
    min_availability: float = Field(0.0, ge=0, le=1)
    min_recall: float = Field(0.0, ge=0, le=1)
    healthy_after: bool = True
    embedder_healthy_after: bool = False  # /v1/embed answers again after the rollback


class Experiment(_Model):
    name: str
    description: str = ""
    seed: int | None = None
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    workload: WorkloadSpec = Field(default_factory=WorkloadSpec)
    fault: list[FaultSpec] = Field(default_factory=list)
    nemesis: NemesisSpec | None = None
    method: list[Action] = Field(default_factory=list)
    hypothesis: Hypothesis = Field(default_factory=Hypothesis)

    def schedule(self, seed: int) -> list[nemesis.Fault]:
        """The fixed faults, plus the random schedule the seed draws (if any)."""
        faults = [nemesis.Fault(**f.model_dump()) for f in self.fault]
        if self.nemesis is not None:
            n = self.nemesis
            faults += nemesis.random_schedule(seed, self.workload.duration_s, kinds=n.kinds,
                                              count=n.count, nodes=self.cluster.nodes,
                                              min_s=n.min_s, max_s=n.max_s)
        return sorted(faults, key=lambda f: f.at_s)

    def failpoints(self, faults: list[nemesis.Fault]) -> bool:
        return any(f.kind in FAILPOINT_KINDS for f in faults) or any(
            a.action in ("fault", "clear_faults") for a in self.method)


class ExperimentError(ValueError):
    """The experiment file is missing or invalid (a usage error, exit 2)."""


def load(source: str | Path) -> Experiment:
    """A file path, or the name of a built-in experiment (``mixed-kill9``)."""
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
    bad = sorted(k for k in exp.cluster.env if not k.startswith("AKIDB_"))
    if bad:
        raise ExperimentError(f"{path}: cluster.env takes AKIDB_* settings only, not {bad}")
    if exp.cluster.object_store and exp.cluster.nodes > 1:
        raise ExperimentError(f"{path}: object_store experiments run one node (each node "
                              "would need a bucket prefix of its own)")
    if exp.nemesis is not None and exp.nemesis.min_s > exp.nemesis.max_s:
        raise ExperimentError(f"{path}: nemesis.min_s is above nemesis.max_s")
    if exp.workload.mix.get("delete") or exp.workload.mix.get("get"):
        if not exp.workload.keys:
            raise ExperimentError(f"{path}: deletes and gets need a shared key space: set "
                                  "[workload] keys = N")
    try:
        validate_schedule(exp, exp.schedule(exp.seed or 0))
    except ValueError as exc:
        raise ExperimentError(f"{path}: {exc}") from None
    return exp


def validate_schedule(exp: Experiment, faults: list[nemesis.Fault]) -> None:
    needs = {"proxy": True, "failpoints": True, "embed_service": exp.cluster.embed_service,
             "object_store": exp.cluster.object_store}
    nemesis.check_schedule(faults, exp.workload.duration_s, exp.cluster.nodes,
                           lambda need: needs[need])


# -- applying faults ------------------------------------------------------------------


def _proxies(node: Node) -> list[Any]:
    return [p for p in (node.proxy, node.grpc_proxy) if p is not None]


def _reachable(node: Node, yes: bool) -> None:
    """Heal (True) or partition (False) the node's REST and gRPC proxies."""
    for proxy in _proxies(node):
        proxy.enable() if yes else proxy.disable()


def _ensure_running(node: Node) -> None:
    if not node.is_running():
        node.start()


def _set_faults(node: Node, **values: float) -> None:
    with node.admin_client(retries=0, timeout=5) as admin:
        admin.set_faults(**values)


def _start_fault(f: nemesis.Fault, cluster: Cluster, seed: int) -> dict[str, Any]:
    """Begin fault ``f``; what it did goes in the action log."""
    node = cluster.nodes[f.node]
    kind = f.kind
    if kind in ("kill", "torn_tail", "corrupt_log"):
        node.kill()
    if kind == "terminate":
        node.stop()
    elif kind == "pause":
        node.pause()
    elif kind == "partition":
        _reachable(node, False)
    elif kind == "latency":
        for proxy in _proxies(node):
            proxy.add_toxic(type="latency", stream="downstream", name="nemesis_latency",
                            attributes=f.attributes or nemesis.default_attributes(kind))
    elif kind == "disk_full":
        _set_faults(node, disk_full=1)
    elif kind == "slow_authz":
        attrs = f.attributes or nemesis.default_attributes(kind)
        _set_faults(node, authz_delay_ms=attrs.get("authz_delay_ms", 400))
    elif kind == "torn_tail":
        return {"segment": injectors.tear_wal(node, seed).name}
    elif kind == "corrupt_log":
        damage = injectors.corrupt_wal_before_tail(node, seed)
        if damage is None:
            return {"skipped": "the log has no frame before its tail yet"}
        node.chaos_damage = damage  # type: ignore[attr-defined]
        return {"segment": damage[0].name, "offset": damage[1]}
    elif kind == "embedder_outage":
        cluster.embed_service.kill()  # type: ignore[union-attr]
    elif kind == "object_store_outage":
        cluster.s3_proxy.disable()  # type: ignore[attr-defined]
    return {}


def _end_fault(f: nemesis.Fault, cluster: Cluster) -> dict[str, Any]:
    node = cluster.nodes[f.node]
    kind = f.kind
    if kind in ("kill", "terminate", "torn_tail"):
        _ensure_running(node)
        if kind == "torn_tail":
            return {"torn_tail_reported": "torn tail" in node.log_tail(200)}
    elif kind == "corrupt_log":
        damage = getattr(node, "chaos_damage", None)
        if damage is None:
            _ensure_running(node)
            return {}
        del node.chaos_damage  # type: ignore[attr-defined]
        try:
            node.start()
            detected = False  # it started on a damaged log: the damage went unnoticed
        except NodeError as exc:
            detected = "WAL corruption" in str(exc) or "WAL corruption" in node.log_tail(200)
            injectors.restore_byte(*damage)  # the operator restores the file from backup
            node.start()
        return {"corruption_detected": detected}
    elif kind == "pause":
        node.resume()
    elif kind == "partition":
        _reachable(node, True)
    elif kind == "latency":
        for proxy in _proxies(node):
            proxy.destroy_toxic("nemesis_latency")
    elif kind == "disk_full":
        _set_faults(node, disk_full=0)
    elif kind == "slow_authz":
        _set_faults(node, authz_delay_ms=0)
    elif kind == "embedder_outage" and not cluster.embed_service.is_running():  # type: ignore
        cluster.embed_service.start()  # type: ignore[union-attr]
    elif kind == "object_store_outage":
        with node.admin_client(retries=0, timeout=5) as admin:
            felt = admin.request("GET", "/ready")["object_store"]
        cluster.s3_proxy.enable()  # type: ignore[attr-defined]
        return {"shipping_state": felt["state"], "backlog_objects": felt["backlog_objects"]}
    return {}


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
        _ensure_running(node)
    elif action.action in ("partition", "heal"):
        _reachable(node, action.action == "heal")
    elif action.action == "toxic":
        node.proxy.add_toxic(type=action.type, stream=action.stream,
                             name=f"{action.type}_{action.stream}",
                             attributes=action.attributes)
    elif action.action == "clear_toxics":
        for proxy in _proxies(node):
            for name in proxy.toxics():
                proxy.destroy_toxic(name)
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
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            admin.embed(["steady-state probe"])
            return True
        except AkiError:
            time.sleep(0.3)
    return False


def _timeline(exp: Experiment, faults: list[nemesis.Fault], cluster: Cluster, seed: int
              ) -> list[tuple[float, str, Callable[[], dict[str, Any]]]]:
    steps: list[tuple[float, str, Callable[[], dict[str, Any]]]] = []
    for f in faults:
        steps.append((f.at_s, f"start {f.kind} node{f.node}",
                      lambda f=f: _start_fault(f, cluster, seed)))
        steps.append((f.end_s, f"end {f.kind} node{f.node}", lambda f=f: _end_fault(f, cluster)))
    for a in exp.method:
        steps.append((a.at_s, f"{a.action} node{a.node}",
                      lambda a=a: (_apply(a, cluster), {})[1]))
    return sorted(steps, key=lambda s: s[0])


def _user_keys(admin: Client) -> tuple[str, str]:
    """Keys of a developer and a viewer of the chaos tenant: the workload's calls go
    through Cedar, and the viewer may not write."""
    admin.create_tenant(TENANT)
    admin.create_user(TENANT, "worker", "developer")
    admin.create_user(TENANT, "onlooker", "viewer")
    return (admin.create_key(TENANT, "worker")["api_key"],
            admin.create_key(TENANT, "onlooker")["api_key"])


def run(exp: Experiment, out_dir: Path | None = None, *, seed: int | None = None,
        name: str | None = None, faults: list[nemesis.Fault] | None = None,
        source: str | None = None) -> dict[str, Any]:
    """Run the experiment once; ``faults`` overrides the seed's schedule (shrinking)."""
    seed = seed if seed is not None else exp.seed if exp.seed is not None else 0
    faults = exp.schedule(seed) if faults is None else faults
    validate_schedule(exp, faults)
    name = name or (Path(source).stem if source else exp.name.replace(" ", "-"))
    w = exp.workload
    failpoints = exp.failpoints(faults)
    env = {**exp.cluster.env, **({"AKIDB_FAULT_INJECTION": "1"} if failpoints else {})} or None
    log: list[dict[str, Any]] = []
    history = History()
    with contextlib.ExitStack() as stack:
        extra: list[str] = []
        s3_proxy = None
        if exp.cluster.object_store:
            endpoint, s3_env = stack.enter_context(objectstore.s3_endpoint())
            s3_proxy = stack.enter_context(objectstore.proxied(endpoint))
            env = {**(env or {}), **s3_env, **objectstore.SHIPPING_ENV}
            extra = ["--object-store", f"s3://{objectstore.BUCKET}/{name}",
                     "--s3-endpoint", f"http://{s3_proxy.listen}"]
        cluster = stack.enter_context(Cluster(
            nodes=exp.cluster.nodes, fsync=exp.cluster.fsync, fault_proxy=True, env=env,
            extra_args=extra, embed_service=exp.cluster.embed_service, embed_backend="numpy"))
        cluster.s3_proxy = s3_proxy  # type: ignore[attr-defined]
        node0 = cluster.nodes[0]
        with node0.admin_client() as admin:
            key, viewer_key = _user_keys(admin)
            admin.create_collection(COLLECTION, dimension=w.dimension, metric="l2",
                                    create_parents=True)
            steady_before = admin.is_ready()

        def make_client(process: int) -> Client:
            grpc = w.transport == "grpc" or (w.transport == "both" and process % 2 == 1)
            return Client(node0.proxy_url, key if process < w.clients else viewer_key,
                          node0.grpc_proxy_target if grpc else None,
                          data_plane="grpc" if grpc else "rest", timeout=w.timeout_s,
                          retries=0)

        spec = workload.Workload(clients=w.clients, batch=w.batch, dimension=w.dimension,
                                 keys=w.keys, mix=w.mix, rate=w.rate, k=w.k, seed=seed)
        stop = threading.Event()
        t0 = time.monotonic()
        threads = workload.start(make_client, COLLECTION, spec, history, stop, t0)
        if w.denied_clients:
            denied = workload.Workload(clients=w.denied_clients, batch=w.batch,
                                       dimension=w.dimension, keys=w.keys,
                                       mix={"upsert": 1.0}, rate=w.rate, seed=seed)
            threads += workload.start(make_client, COLLECTION, denied, history, stop, t0,
                                      first=w.clients)
        for at_s, label, step in _timeline(exp, faults, cluster, seed):
            delay = t0 + at_s - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            entry: dict[str, Any] = {"at_s": round(time.monotonic() - t0, 3), "action": label}
            entry.update(step())
            entry["done_s"] = round(time.monotonic() - t0, 3)
            log.append(entry)
        remaining = t0 + w.duration_s - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        stop.set()
        for t in threads:
            t.join(w.timeout_s + 30)
        # Rollback: every node running and reachable, proxies healed, faults off.
        for i, node in enumerate(cluster.nodes):
            node.resume()
            _ensure_running(node)
            if failpoints:
                _apply(Action(action="clear_faults", at_s=0, node=i), cluster)
        if cluster.embed_service is not None and not cluster.embed_service.is_running():
            cluster.embed_service.start()
        cluster.toxiproxy_endpoint.toxiproxy().reset()  # type: ignore[union-attr]
        with node0.admin_client() as admin:
            healthy_after = admin.is_ready()
            workload.final_read(admin, COLLECTION, history, t0)
            embedder_after = _embedder_recovers(admin) if \
                exp.hypothesis.embedder_healthy_after else True
            shipped = objectstore.drained(admin) if exp.cluster.object_store else None
    result = judge(exp, history, faults, log, seed=seed, name=name, source=source,
                   steady_before=steady_before, healthy_after=healthy_after,
                   embedder_after=embedder_after)
    if shipped is not None:
        result["object_store"] = shipped
        result["checks"]["shipping_caught_up"] = shipped["backlog_objects"] == 0
        result["passed"] = all(result["checks"].values())
    if out_dir is not None:
        save(result, history, out_dir)
    return result


def judge(exp: Experiment, history: History, faults: list[nemesis.Fault],
          log: list[dict[str, Any]], *, seed: int, name: str, source: str | None,
          steady_before: bool, healthy_after: bool, embedder_after: bool
          ) -> dict[str, Any]:
    """The run's result: the checker's verdict, the hypotheses, phases and metrics."""
    checker = Checker(history)
    verdict = checker.check()
    planned, faults = faults, as_applied(faults, log)
    # performance is the workload's; the denied clients are reported on their own
    served = History(ops=[o for o in history.ops if o.process < exp.workload.clients],
                     values=history.values)
    duration = exp.workload.duration_s
    h = exp.hypothesis
    live = [o for o in history.ops if not o.final]
    allowed = [o for o in live if o.process >= exp.workload.clients]
    availability = history.availability(processes=range(exp.workload.clients))
    detected = [e["corruption_detected"] for e in log if "corruption_detected" in e]
    checks = {
        "steady_state_before": steady_before,
        "healthy_after": healthy_after or not h.healthy_after,
        "checker": verdict.valid or not h.valid,
        "availability": availability >= h.min_availability,
        "recall": verdict.recall is None or verdict.recall >= h.min_recall,
        "embedder_healthy_after": embedder_after,
        "corruption_detected": all(detected),
        "no_wrongful_allow": not any(o.status == "ok" for o in allowed),
    }
    counts = Counter((o.f, o.status) for o in live)
    result = {
        "experiment": exp.name, "name": name, "description": exp.description, "seed": seed,
        "replay": f"akidb chaos run {source or name} --seed {seed}",
        "passed": all(checks.values()), "checks": checks, "checker": verdict.to_dict(),
        "availability": round(availability, 4),
        "denied_clients": {"attempts": len(allowed),
                           "allowed": sum(o.status == "ok" for o in allowed),
                           "refused": dict(Counter((o.error or "?").split(":")[0]
                                                   for o in allowed if o.status != "ok"))},
        "phases": phases.phases(served, faults, duration, checker.recalls),
        "recovery_s": phases.recovery_times(served, faults),
        "schedule": [f.to_dict() for f in planned],
        "faults": [f.to_dict() for f in faults], "actions": log,
        "operations": {f: {s: counts[(f, s)] for s in ("ok", "fail", "info")}
                       for f in sorted({o.f for o in live})},
        "metrics": phases.metrics(served, faults, duration, checker.recalls),
    }
    return result


def save(result: dict[str, Any], history: History, out_dir: Path) -> None:
    """``NAME.json``, ``NAME.md``, ``NAME.html`` (timeline) and ``NAME.history.jsonl``."""
    from akidb.chaos import report

    name = result["name"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2))
    history.save(out_dir / f"{name}.history.jsonl")
    (out_dir / f"{name}.md").write_text(render(result))
    (out_dir / f"{name}.html").write_text(report.html(result, history))


def as_applied(faults: list[nemesis.Fault], log: list[dict[str, Any]]) -> list[nemesis.Fault]:
    """The faults with the times they really started and ended (a step waits for the
    one before it, e.g. a restart), which phases and the timeline use."""
    starts = [e["at_s"] for e in log if e["action"].startswith("start ")]
    ends = [e["at_s"] for e in log if e["action"].startswith("end ")]
    if len(starts) != len(faults) or len(ends) != len(faults):
        return faults
    return [nemesis.Fault(f.kind, a, max(b - a, 0.001), f.node, f.attributes)
            for f, a, b in zip(faults, starts, ends, strict=True)]


def random_seed() -> int:
    return secrets.randbelow(2**31)


def render(result: dict[str, Any]) -> str:
    c = result["checker"]
    lines = [f"# Chaos experiment: {result['experiment']} — "
             f"{'PASSED' if result['passed'] else 'FAILED'}", "", result["description"], "",
             f"Seed {result['seed']}; replay: `{result['replay']}`", "",
             "| check | result |", "|---|---|"]
    lines += [f"| {k} | {'ok' if v else 'FAILED'} |" for k, v in result["checks"].items()]
    ops = sum(sum(v.values()) for v in result["operations"].values())
    recall = "n/a" if c["recall"] is None else f"{c['recall']:.3f}"
    lines += ["", f"Checker: {'valid' if c['valid'] else 'INVALID'} over {ops} operations "
              f"({c['acknowledged']} acknowledged writes, {c['indeterminate']} indeterminate, "
              f"{c['failed']} failed, {c['reads']} reads, {c['searches']} searches; recall "
              f"{recall}): lost {c['lost']}, stale reads {c['stale_reads']}, resurrected "
              f"{c['resurrected']}, phantoms {c['phantoms']}, search mismatches "
              f"{c['search_mismatches']}. Availability {result['availability']:.1%}.", ""]
    for a in c["anomalies"][:10]:
        lines.append(f"- **{a['kind']}** `{a['key']}` op {a['op']} (writes {a['writes']}): "
                     f"{a['detail']}")
    lines += ["", "| phase | ops | ok | fail | info | avail | P50 ms | P95 ms | P99 ms | "
              "recall |", "|---|---|---|---|---|---|---|---|---|---|"]

    def fmt(v: Any) -> str:
        return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    for p in result["phases"]:
        lines.append(f"| {p['phase']} ({p['start_s']:g}-{p['end_s']:g}s) | {p['operations']} "
                     f"| {p['ok']} | {p['failed']} | {p['indeterminate']} | "
                     f"{fmt(p['availability'])} | {fmt(p['p50_ms'])} | {fmt(p['p95_ms'])} | "
                     f"{fmt(p['p99_ms'])} | {fmt(p['recall'])} |")
    if result["recovery_s"]:
        lines += ["", "Recovery (fault end → first acknowledged write): " + ", ".join(
            f"{k} {fmt(v)}s" for k, v in result["recovery_s"].items())]
    lines += ["", "Actions:"]
    lines += [f"- t={a['at_s']}s {a['action']}" + "".join(
        f", {k}={v}" for k, v in a.items() if k not in ("at_s", "action"))
        for a in result["actions"]]
    return "\n".join(lines) + "\n"
